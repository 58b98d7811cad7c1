//! The customer's side: set up a password from the invitation, log in, reset a forgotten password,
//! the portal home, log out. Server-rendered pages under `/p/{shop_id}/…`, one portal per shop.
//!
//! Every form is protected against cross-site requests (CSRF token bound to the session or a
//! pre-session cookie, plus `Sec-Fetch-Site`/`Origin`); set-up and reset links are only ever consumed
//! by the customer's own POST, never by opening them, because mail scanners open every link.

pub mod client;
pub mod csrf;
pub mod device;
pub mod errors;
mod forgot;
pub mod hasher;
pub mod headers;
mod home;
mod login;
pub mod pages;
mod password_pages;
pub mod passwords;
pub mod session;
pub mod throttle;

use poem::{Body, Request, Response, Route, get, handler};
use serde::de::DeserializeOwned;

use crate::{
    app::AppState,
    domain::{ShopId, SubscriptionTier},
    entities::shop,
    tokens::RawToken,
};
use errors::PortalError;
use session::CookieNames;

/// The stylesheet, built into the binary.
const STYLESHEET: &str = include_str!("../../templates/static/portal.css");
/// The largest form we read.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The customer pages' routes, to be nested under `/p`.
pub fn routes() -> Route {
    Route::new()
        .at("/:shop", get(home::home))
        .at("/:shop/login", get(login::show_login).post(login::submit_login))
        .at("/:shop/logout", poem::post(home::logout))
        .at("/:shop/setup/:token", get(password_pages::setup_form).post(password_pages::setup_submit))
        .at("/:shop/reset/:token", get(password_pages::reset_form).post(password_pages::reset_submit))
        .at("/:shop/forgot", get(forgot::forgot_form).post(forgot::forgot_submit))
}

/// `GET /static/portal.css`: the only stylesheet, ours.
#[handler]
pub fn stylesheet() -> Response {
    Response::builder()
        .content_type("text/css; charset=utf-8")
        .header("cache-control", "public, max-age=3600")
        .body(STYLESHEET)
}

/// The friendly page for any address nothing answers.
pub fn not_found(state: &AppState) -> Response {
    PortalError::NotFound.page(state)
}

/// Turns a page handler's result into the response: the page, or the error's page.
fn respond(state: &AppState, result: Result<Response, PortalError>) -> Response {
    result.unwrap_or_else(|e| e.page(state))
}

/// The shop of a `/p/{shop_id}` address; `NotFound` for an id that is malformed or never installed.
async fn find_shop(state: &AppState, shop_id: &str) -> Result<shop::Model, PortalError> {
    let id = ShopId::parse(shop_id).map_err(|_| PortalError::NotFound)?;
    let shop = state.shops.get(&state.db, id.as_str()).await?.ok_or(PortalError::NotFound)?;
    Ok(shop::Model::clone(&shop))
}

/// Whether the shop serves its portal now: installed, on gold or above, and activated.
pub fn portal_available(shop: &shop::Model) -> bool {
    shop.installed
        && shop.portal_active
        && shop.subscription_tier.parse::<SubscriptionTier>().is_ok_and(SubscriptionTier::includes_portal)
}

/// The shop, if its portal is available; the "not available" page otherwise.
async fn available_shop(state: &AppState, shop_id: &str) -> Result<shop::Model, PortalError> {
    let shop = find_shop(state, shop_id).await?;
    if portal_available(&shop) { Ok(shop) } else { Err(PortalError::Unavailable(Box::new(shop))) }
}

fn cookie_names(state: &AppState) -> CookieNames {
    CookieNames { secure: !state.settings.is_local_http() }
}

/// What a form's CSRF token is bound to: the session cookie when there is one, else the pre-session
/// cookie, created (with its `Set-Cookie`) when missing.
fn form_binding(request: &Request, names: CookieNames) -> (String, Option<String>) {
    if let Some(session) = session::read_cookie(request, names.session()) {
        return (session.to_owned(), None);
    }
    if let Some(pre) = session::read_cookie(request, names.presession()) {
        return (pre.to_owned(), None);
    }
    let fresh = RawToken::generate();
    let cookie = names.set(names.presession(), fresh.as_str(), std::time::Duration::from_secs(2 * 3600));
    (fresh.as_str().to_owned(), Some(cookie))
}

/// The CSRF token for the forms of this page, and the cookie to set with it if any.
fn csrf_for(state: &AppState, request: &Request) -> (String, Option<String>) {
    let (binding, cookie) = form_binding(request, cookie_names(state));
    (csrf::token(state.keys.cookies.bytes(), &binding), cookie)
}

/// Refuses a POST from another site, or one whose token matches neither the session nor the
/// pre-session cookie.
fn check_form(
    state: &AppState,
    request: &Request,
    submitted: &str,
    shop: Option<&shop::Model>,
) -> Result<(), PortalError> {
    let rejected = |reason: &str| {
        // Which check failed, never the token or cookie values: enough for an operator to see a
        // misconfigured PORTAL_PUBLIC_URL or a proxy that drops cookies, or a forging site.
        // The path is not logged: set-up and reset paths carry tokens.
        tracing::warn!(
            target: "portal_invites::security",
            event = "form_rejected",
            shop_id = shop.map(|s| s.id.as_str()),
            reason,
            "form refused"
        );
        PortalError::FormRejected(shop.cloned().map(Box::new))
    };
    if !csrf::same_site(request, &crate::links::origin(&state.settings.public_url)) {
        return Err(rejected(
            "cross-site request (Sec-Fetch-Site, or an Origin other than PORTAL_PUBLIC_URL's)",
        ));
    }
    let names = cookie_names(state);
    let key = state.keys.cookies.bytes();
    let cookies: Vec<&str> = [names.session(), names.presession()]
        .iter()
        .filter_map(|name| session::read_cookie(request, name))
        .collect();
    if cookies.is_empty() {
        return Err(rejected("no session or form cookie"));
    }
    if cookies.iter().any(|binding| csrf::verify(key, binding, submitted)) {
        Ok(())
    } else {
        Err(rejected("the form's token matches no cookie"))
    }
}

/// The names of the throttle's counters, keyed with the service's own key.
fn throttle_keys(state: &AppState) -> &throttle::Keys {
    &state.keys.throttle
}

/// Reads an `application/x-www-form-urlencoded` body of at most 16 KiB.
async fn read_form<T: DeserializeOwned>(body: Body) -> Result<T, PortalError> {
    let bytes = body.into_bytes_limit(MAX_FORM_BYTES).await.map_err(|_| PortalError::BadRequest)?;
    serde_urlencoded::from_bytes(&bytes).map_err(|_| PortalError::BadRequest)
}

/// Adds `Set-Cookie` headers to a response.
fn with_cookies(mut response: Response, cookies: impl IntoIterator<Item = String>) -> Response {
    for cookie in cookies {
        if let Ok(value) = cookie.parse() {
            response.headers_mut().append(poem::http::header::SET_COOKIE, value);
        }
    }
    response
}
