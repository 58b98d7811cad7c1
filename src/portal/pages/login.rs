//! The login page.

use poem::{Request, Response, http::StatusCode};
use serde::Serialize;

use super::{Base, render_form};
use crate::{
    entities::shop,
    links,
    portal::{PortalContext, cookies::with_cookies, form::csrf_for},
};

/// The one message for every failed login.
pub const FAILED: &str =
    "That email address and password don't match. Check them and try again, or reset your password.";

#[derive(Serialize)]
struct LoginPage {
    #[serde(flatten)]
    base: Base,
    action: String,
    csrf: String,
    email: String,
    notice: Option<&'static str>,
    error: Option<&'static str>,
    /// The handle of a sign-in that waits for this login (see `oidc`).
    #[serde(rename = "continue")]
    continue_with: Option<String>,
}

/// What a login form carries besides the fields: a notice above it or an error under it, and the
/// sign-in it continues.
#[derive(Default)]
pub struct LoginExtras<'a> {
    pub notice: Option<&'static str>,
    pub error: Option<&'static str>,
    pub continue_with: Option<&'a str>,
}

/// The login form, with the email typed so far.
pub fn login_page(
    portal: &PortalContext,
    request: &Request,
    shop: &shop::Model,
    status: StatusCode,
    email: &str,
    extras: LoginExtras<'_>,
) -> Response {
    let (csrf, cookie) = csrf_for(portal, request);
    let page = |csrf: &str| LoginPage {
        base: Base::shop(portal, shop, format!("Log in to {}", shop.name)),
        action: links::portal_path(&portal.public_url, &shop.id, "login"),
        csrf: csrf.to_owned(),
        email: email.to_owned(),
        notice: extras.notice,
        error: extras.error,
        continue_with: extras.continue_with.map(str::to_owned),
    };
    // A typed email or a sign-in's handle makes the page one visitor's own.
    let shared = email.is_empty() && extras.continue_with.is_none();
    with_cookies(render_form(portal, "pages/login.html", status, &csrf, shared, page), cookie)
}
