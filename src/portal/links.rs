//! `GET|POST /p/{shop}/setup/{token}` and `/p/{shop}/reset/{token}`: choosing a password with the
//! invitation's set-up link or a reset link.
//!
//! Opening a link (GET or HEAD) only shows the form; it never uses up the token, because mail
//! scanners open every link. Only the customer's POST redeems it (`accounts` owns that rule).

use poem::{
    Request, Response, handler,
    http::StatusCode,
    web::{Data, Path},
};
use serde::Deserialize;

use super::{
    PortalContext,
    context::require_available,
    errors::PortalError,
    form::{AnyShopForm, CsrfForm},
    landing, pages, respond, start_session,
};
use crate::{
    accounts::{Link, PasswordChange, Presented},
    entities::shop,
    tokens::Purpose,
};

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirmation: String,
}

impl CsrfForm for PasswordForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The link's account, or the page that says why not. The link is judged before the shop, so a
/// spent link reads the same whatever the shop's state.
async fn open_link(
    portal: &PortalContext,
    shop: shop::Model,
    purpose: Purpose,
    raw: &str,
    presented: Presented,
) -> Result<(shop::Model, Link), PortalError> {
    let link = portal
        .accounts
        .open_link(&shop.shop_id(), purpose, raw, presented)
        .await
        .map_err(|error| PortalError::from_accounts(error, &shop))?;
    Ok((require_available(shop)?, link))
}

async fn show(
    portal: &PortalContext,
    request: &Request,
    purpose: Purpose,
    shop_id: &str,
    raw: &str,
) -> Response {
    let result = async {
        let shop = portal.find_shop(shop_id).await?;
        let (shop, link) = open_link(portal, shop, purpose, raw, Presented::Opened).await?;
        Ok(pages::password_page(portal, request, &shop, &link, raw, StatusCode::OK, None))
    }
    .await;
    respond(portal, result)
}

async fn save(
    portal: &PortalContext,
    request: &Request,
    purpose: Purpose,
    AnyShopForm { shop, form }: AnyShopForm<PasswordForm>,
    raw: &str,
) -> Response {
    let result = async {
        let (shop, link) = open_link(portal, shop, purpose, raw, Presented::Submitted).await?;
        let change =
            portal.accounts.set_password_by_link(&shop, &link, &form.password, &form.confirmation).await;
        match change.map_err(|error| PortalError::from_accounts(error, &shop))? {
            PasswordChange::Refused(problem) => Ok(pages::password_page(
                portal,
                request,
                &shop,
                &link,
                raw,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(problem),
            )),
            PasswordChange::Set { session, notice_queued } => {
                if notice_queued {
                    portal.wake_sender.notify_one();
                }
                Ok(start_session(portal, &landing(portal, &shop, None), &session, None))
            }
        }
    }
    .await;
    respond(portal, result)
}

/// `GET|HEAD /p/{shop}/setup/{token}`.
#[handler]
pub async fn setup_form(
    request: &Request,
    Path((shop_id, raw)): Path<(String, String)>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    show(portal, request, Purpose::Setup, &shop_id, &raw).await
}

/// `POST /p/{shop}/setup/{token}`.
#[handler]
pub async fn setup_submit(
    request: &Request,
    Path((_, raw)): Path<(String, String)>,
    form: AnyShopForm<PasswordForm>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    save(portal, request, Purpose::Setup, form, &raw).await
}

/// `GET|HEAD /p/{shop}/reset/{token}`.
#[handler]
pub async fn reset_form(
    request: &Request,
    Path((shop_id, raw)): Path<(String, String)>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    show(portal, request, Purpose::Reset, &shop_id, &raw).await
}

/// `POST /p/{shop}/reset/{token}`.
#[handler]
pub async fn reset_submit(
    request: &Request,
    Path((_, raw)): Path<(String, String)>,
    form: AnyShopForm<PasswordForm>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    save(portal, request, Purpose::Reset, form, &raw).await
}
