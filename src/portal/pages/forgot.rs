//! "Forgot your password?": the form, and the page that says to check the inbox.

use chrono::TimeDelta;
use poem::{Request, Response, http::StatusCode};
use serde::Serialize;

use super::{Base, render, render_form};
use crate::{
    entities::shop,
    links,
    portal::{PortalContext, cookies::with_cookies, form::csrf_for},
};

#[derive(Serialize)]
struct ForgotPage {
    #[serde(flatten)]
    base: Base,
    action: String,
    csrf: String,
    email: String,
    email_error: Option<&'static str>,
}

#[derive(Serialize)]
struct ForgotSentPage {
    #[serde(flatten)]
    base: Base,
    email: String,
    valid_for: String,
}

/// The form, with the address typed so far and an error under it.
pub fn forgot_page(
    portal: &PortalContext,
    request: &Request,
    shop: &shop::Model,
    status: StatusCode,
    email: &str,
    error: Option<&'static str>,
) -> Response {
    let (csrf, cookie) = csrf_for(portal, request);
    let page = |csrf: &str| ForgotPage {
        base: Base::shop(portal, shop, "Forgot your password?"),
        action: links::portal_path(&portal.public_url, &shop.id, "forgot"),
        csrf: csrf.to_owned(),
        email: email.to_owned(),
        email_error: error,
    };
    // A typed email makes the page one visitor's own.
    let shared = email.is_empty();
    with_cookies(render_form(portal, "pages/forgot.html", status, &csrf, shared, page), cookie)
}

/// "Check your email": the same page whether or not `email` has an account, with how long a link
/// works.
pub fn forgot_sent_page(portal: &PortalContext, shop: &shop::Model, email: String) -> Response {
    let ttl = TimeDelta::from_std(portal.settings.reset_ttl).unwrap_or(TimeDelta::hours(1));
    let minutes = ttl.num_minutes();
    let valid_for = if minutes % 60 == 0 {
        let hours = minutes / 60;
        if hours == 1 { "1 hour".to_owned() } else { format!("{hours} hours") }
    } else {
        format!("{minutes} minutes")
    };
    let context = ForgotSentPage { base: Base::shop(portal, shop, "Check your email"), email, valid_for };
    render(portal, "pages/forgot_sent.html", StatusCode::OK, &context)
}
