//! The portal home (who you are, where you are, log out) and logging out.

use poem::{
    Body, Request, Response, handler,
    http::{HeaderValue, StatusCode},
    web::{Data, Path},
};
use sea_orm::EntityTrait;
use serde::{Deserialize, Serialize};

use super::{
    PortalError, check_form, cookie_names, csrf_for, find_shop,
    pages::{self, Base},
    portal_available, read_form, respond, session, with_cookies,
};
use crate::{
    app::AppState,
    entities::{customer, portal_account},
    links,
};

/// What the browser is asked to forget at log-out.
pub const CLEAR_SITE_DATA: &str = "\"cookies\", \"storage\"";

#[derive(Serialize)]
struct HomePage {
    #[serde(flatten)]
    base: Base,
    first_name: Option<String>,
    full_name: String,
    username: String,
    csrf: String,
    logout_action: String,
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// `GET /p/{shop}`: the customer's home, for a logged-in customer of this shop.
#[handler]
pub async fn home(request: &Request, Path(shop_id): Path<String>, Data(state): Data<&AppState>) -> Response {
    let result = async {
        let shop = find_shop(state, &shop_id).await?;
        let names = cookie_names(state);
        let now = state.clock.now();
        let conn = state.db.conn();
        let login = links::login(&state.settings.public_url, &shop.id);
        let Some(cookie) = session::read_cookie(request, names.session()) else {
            return Ok(pages::see_other(&login));
        };
        let Some(active) =
            session::find(conn, cookie, &shop.id, state.settings.portal.session_idle, now).await?
        else {
            return Ok(with_cookies(pages::see_other(&login), [names.clear(names.session())]));
        };
        if !portal_available(&shop) {
            return Err(PortalError::Unavailable(Box::new(shop)));
        }
        let Some(account) = portal_account::Entity::find_by_id(active.account_id.as_str()).one(conn).await?
        else {
            return Ok(pages::see_other(&login));
        };
        let customer = customer::Entity::find_by_id((account.shop_id.clone(), account.customer_id.clone()))
            .one(conn)
            .await?;
        let first_name = customer.as_ref().and_then(|c| c.first_name.clone());
        let full_name = customer
            .as_ref()
            .map(|c| {
                [c.first_name.clone(), c.last_name.clone()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| account.username.clone());
        let state_for_touch = state.clone();
        let touched = active.clone();
        state_for_touch
            .db
            .write(move |txn| Box::pin(async move { session::touch(txn, &touched, now).await }))
            .await?;
        let (csrf, cookie) = csrf_for(state, request);
        let context = HomePage {
            base: Base::shop(state, &shop, format!("{}'s Customer Portal", shop.name)),
            first_name,
            full_name,
            username: account.username,
            csrf,
            logout_action: links::portal_path(&state.settings.public_url, &shop.id, "logout"),
        };
        Ok(with_cookies(pages::render(state, "pages/home.html", StatusCode::OK, &context), cookie))
    }
    .await;
    respond(state, result)
}

/// `POST /p/{shop}/logout`: ends the session on the server, not only in the browser.
#[handler]
pub async fn logout(
    request: &Request,
    Path(shop_id): Path<String>,
    body: Body,
    Data(state): Data<&AppState>,
) -> Response {
    let result = async {
        let form: LogoutForm = read_form(body).await?;
        let shop = find_shop(state, &shop_id).await?;
        check_form(state, request, &form.csrf, Some(&shop))?;
        let names = cookie_names(state);
        if let Some(cookie) = session::read_cookie(request, names.session()).map(str::to_owned) {
            state.db.write(move |txn| Box::pin(async move { session::end(txn, &cookie).await })).await?;
        }
        let target = format!("{}?notice=logged-out", links::login(&state.settings.public_url, &shop.id));
        let mut response = with_cookies(pages::see_other(&target), [names.clear(names.session())]);
        // The browser forgets what it kept for us too (a shared computer), not only the session.
        response.headers_mut().insert("clear-site-data", HeaderValue::from_static(CLEAR_SITE_DATA));
        Ok(response)
    }
    .await;
    respond(state, result)
}
