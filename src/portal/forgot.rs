//! `GET|POST /p/{shop}/forgot`: asking for a reset link. The same answer, and the same work, whether
//! or not the address has an account (`accounts` queues the request; the sender decides).

use poem::{
    Request, Response, handler,
    http::StatusCode,
    web::{Data, Path},
};
use serde::Deserialize;

use super::{
    PortalContext, client,
    errors::PortalError,
    form::{AvailableShopForm, CsrfForm},
    pages, respond,
};
use crate::domain::EmailAddress;

#[derive(Deserialize)]
pub(super) struct ForgotForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

impl CsrfForm for ForgotForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `GET /p/{shop}/forgot`.
#[handler]
pub async fn forgot_form(
    request: &Request,
    Path(shop_id): Path<String>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    let result = async {
        let shop = portal.available_shop(&shop_id).await?;
        Ok(pages::forgot_page(portal, request, &shop, StatusCode::OK, "", None))
    }
    .await;
    respond(portal, result)
}

/// `POST /p/{shop}/forgot`: limited per client network.
#[handler]
pub async fn forgot_submit(
    request: &Request,
    AvailableShopForm { shop, form }: AvailableShopForm<ForgotForm>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    let result = async {
        let typed = form.email.trim().to_owned();
        let Ok(email) = EmailAddress::parse(&typed) else {
            return Ok(pages::forgot_page(
                portal,
                request,
                &shop,
                StatusCode::UNPROCESSABLE_ENTITY,
                &typed,
                Some("Enter your email address, like name@example.com."),
            ));
        };
        let client = client::of_request(request, &portal.settings.trusted_proxies);
        portal
            .accounts
            .request_reset(&shop.shop_id(), &email, client)
            .await
            .map_err(|error| PortalError::from_accounts(error, &shop))?;
        portal.wake_sender.notify_one();
        Ok(pages::forgot_sent_page(portal, &shop, typed))
    }
    .await;
    respond(portal, result)
}
