//! `GET /p/{shop}`, the portal home, and `POST /p/{shop}/logout`.

use poem::{
    Request, Response, handler,
    http::HeaderValue,
    web::{Data, Path},
};
use serde::Deserialize;

use super::{
    PortalContext,
    context::require_available,
    cookies,
    form::{AnyShopForm, CsrfForm},
    pages, respond,
};
use crate::links;

#[derive(Deserialize)]
pub(super) struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

impl CsrfForm for LogoutForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `GET /p/{shop}`: the customer's home, for a logged-in customer of this shop.
#[handler]
pub async fn home(
    request: &Request,
    Path(shop_id): Path<String>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    let result = async {
        let shop = portal.find_shop(&shop_id).await?;
        let names = portal.cookie_names();
        let login = links::login(&portal.public_url, &shop.id);
        let Some(cookie) = cookies::read_cookie(request, names.session()) else {
            return Ok(pages::see_other(&login));
        };
        let Some(active) = portal.accounts.find_session(cookie, &shop.shop_id()).await? else {
            return Ok(cookies::with_cookies(pages::see_other(&login), [names.clear(names.session())]));
        };
        let shop = require_available(shop)?;
        let Some(holder) = portal.accounts.visit(&active).await? else {
            return Ok(pages::see_other(&login));
        };
        Ok(pages::home_page(portal, request, &shop, holder))
    }
    .await;
    respond(portal, result)
}

/// `POST /p/{shop}/logout`: ends the session on the server, not only in the browser.
#[handler]
pub async fn logout(
    request: &Request,
    AnyShopForm { shop, .. }: AnyShopForm<LogoutForm>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    let result = async {
        let names = portal.cookie_names();
        if let Some(cookie) = cookies::read_cookie(request, names.session()) {
            portal.accounts.end_session(cookie).await?;
        }
        let target = format!("{}?notice=logged-out", links::login(&portal.public_url, &shop.id));
        let mut response = cookies::with_cookies(pages::see_other(&target), [names.clear(names.session())]);
        // The browser forgets what it kept for us too (a shared computer), not only the session.
        response.headers_mut().insert("clear-site-data", HeaderValue::from_static(pages::CLEAR_SITE_DATA));
        Ok(response)
    }
    .await;
    respond(portal, result)
}
