//! `GET|POST /p/{shop}/login`. The rules (throttling, hashing, sessions) are `accounts`'; here the
//! browser is recognised by its device cookie and remembered after a success.

use poem::{
    Request, Response, handler,
    http::StatusCode,
    web::{Data, Path, Query},
};
use serde::Deserialize;

use super::{
    PortalContext, client, cookies, device,
    errors::PortalError,
    form::{AvailableShopForm, CsrfForm},
    landing, pages,
    pages::LoginExtras,
    respond, start_session,
};
use crate::{
    accounts::{Login, LoginAttempt, Username},
    domain::RawToken,
};

#[derive(Deserialize)]
pub(super) struct Notice {
    #[serde(default)]
    notice: Option<String>,
    /// A sign-in waiting for this login (the authorization endpoint sent the customer here).
    #[serde(default, rename = "continue")]
    continue_with: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default, rename = "continue")]
    continue_with: Option<String>,
}

impl CsrfForm for LoginForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `GET /p/{shop}/login`.
#[handler]
pub async fn show_login(
    request: &Request,
    Path(shop_id): Path<String>,
    Query(query): Query<Notice>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    let result = async {
        let shop = portal.available_shop(&shop_id).await?;
        // A sign-in may ask for the password again (`prompt=login`, `max_age`): then the form is
        // shown even to a customer who is logged in.
        let continue_with = query.continue_with.as_deref().filter(|c| RawToken::parse(c).is_some());
        if continue_with.is_none()
            && let Some(cookie) = cookies::read_cookie(request, portal.cookie_names().session())
            && portal.accounts.find_session(cookie, &shop.shop_id()).await?.is_some()
        {
            return Ok(pages::see_other(&landing(portal, &shop, None)));
        }
        let notice = match query.notice.as_deref() {
            Some("logged-out") => Some("You're logged out."),
            _ => None,
        };
        let extras = LoginExtras { notice, error: None, continue_with };
        Ok(pages::login_page(portal, request, &shop, StatusCode::OK, "", extras))
    }
    .await;
    respond(portal, result)
}

/// `POST /p/{shop}/login`.
#[handler]
pub async fn submit_login(
    request: &Request,
    AvailableShopForm { shop, form }: AvailableShopForm<LoginForm>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    let result = async {
        let typed = form.email.trim();
        let continue_with = form.continue_with.as_deref().filter(|c| RawToken::parse(c).is_some());
        let refused = |status, error| {
            let extras = LoginExtras { notice: None, error: Some(error), continue_with };
            Ok(pages::login_page(portal, request, &shop, status, typed, extras))
        };
        if typed.is_empty() || form.password.is_empty() {
            return refused(StatusCode::UNPROCESSABLE_ENTITY, "Enter your email address and password.");
        }
        let names = portal.cookie_names();
        let key = portal.cookie_key.bytes();
        let username = Username::from_typed(typed);
        let device = device::recognise(request, names, key, &shop.id, username.as_str());
        let shop_id = shop.shop_id();
        let attempt = LoginAttempt {
            shop_id: &shop_id,
            username: &username,
            password: &form.password,
            device: device.as_deref(),
            client: client::of_request(request, &portal.settings.trusted_proxies),
            replaced_session: cookies::read_cookie(request, names.session()),
        };
        match portal.accounts.authenticate(attempt).await {
            Ok(Login::LoggedIn(session)) => {
                let remembered = device::remember(request, names, key, &shop.id, username.as_str());
                Ok(start_session(portal, &landing(portal, &shop, continue_with), &session, Some(remembered)))
            }
            Ok(Login::Failed) => refused(StatusCode::UNPROCESSABLE_ENTITY, pages::FAILED),
            Err(error) => Err(PortalError::from_accounts(error, &shop)),
        }
    }
    .await;
    respond(portal, result)
}
