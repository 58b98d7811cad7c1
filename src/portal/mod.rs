//! The customer's side: set up a password from the invitation, log in, reset a forgotten password,
//! the portal home, log out. Server-rendered pages under `/p/{shop_id}/…`, one portal per shop.
//!
//! The portal is an edge: handlers parse the request (a form through [`form::ShopForm`]), call one
//! `accounts` function and render the outcome with a view from [`pages`]; every refusal becomes a
//! page in one place, [`errors::PortalError::page`]. The security rules themselves are `accounts`'.
//!
//! Every form is protected against cross-site requests (CSRF token bound to the session or a
//! pre-session cookie, plus `Sec-Fetch-Site`/`Origin`); set-up and reset links are only ever consumed
//! by the customer's own POST, never by opening them, because mail scanners open every link.

pub mod client;
mod context;
pub mod cookies;
pub mod csrf;
pub mod device;
pub mod errors;
mod forgot;
pub mod form;
pub mod headers;
mod home;
mod links;
mod login;
pub mod pages;

use poem::{Response, Route, get, handler};

pub use context::{PortalContext, PortalParts};
use errors::PortalError;

use crate::entities::shop;

/// The stylesheet, built into the binary.
const STYLESHEET: &str = include_str!("../../templates/static/portal.css");

/// The customer pages' routes, to be nested under `/p`; they need a [`PortalContext`] as data.
pub fn routes() -> Route {
    Route::new()
        .at("/:shop", get(home::home))
        .at("/:shop/login", get(login::show_login).post(login::submit_login))
        .at("/:shop/logout", poem::post(home::logout))
        .at("/:shop/setup/:token", get(links::setup_form).post(links::setup_submit))
        .at("/:shop/reset/:token", get(links::reset_form).post(links::reset_submit))
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
pub fn not_found(portal: &PortalContext) -> Response {
    PortalError::NotFound.page(portal)
}

/// The page for a customer request whose handler panicked.
pub fn panic_page(portal: &PortalContext) -> Response {
    PortalError::Internal("a handler panicked".into()).page(portal)
}

/// Turns a page handler's result into the response: the page, or the error's page.
fn respond(portal: &PortalContext, result: Result<Response, PortalError>) -> Response {
    result.unwrap_or_else(|e| e.page(portal))
}

/// Where a customer goes once logged in: back into the sign-in that waited for the login, else the
/// host's portal for the shop when it runs one (which signs them in at once through this session,
/// contract §8), else our own home page.
fn landing(portal: &PortalContext, shop: &shop::Model, continue_with: Option<&str>) -> String {
    if let Some(handle) = continue_with.and_then(crate::tokens::RawToken::parse) {
        let resume = crate::links::portal_path(&portal.public_url, &shop.id, "oidc/continue");
        return format!("{resume}?request={}", handle.as_str());
    }
    match shop.host_portal() {
        Some(host) => host.url,
        None => crate::links::home(&portal.public_url, &shop.id),
    }
}

/// The customer is logged in with a new session: its cookie replaces the pre-session one (and
/// `also`, e.g. the device cookie, is set), and the browser goes on to `landing`.
fn start_session(
    portal: &PortalContext,
    landing: &str,
    session: &crate::tokens::RawToken,
    also: Option<String>,
) -> Response {
    let names = portal.cookie_names();
    let cookies = [
        Some(names.set(names.session(), session.as_str(), portal.settings.session_lifetime)),
        Some(names.clear(names.presession())),
        also,
    ];
    cookies::with_cookies(pages::see_other(landing), cookies.into_iter().flatten())
}
