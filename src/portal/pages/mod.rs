//! The views: each page's view model and its rendering from `templates/pages/`, branded with the
//! shop, in the shop's language. Handlers decide which page; what is on it is decided here.

mod forgot;
mod home;
mod login;
mod password;
mod signout;

use poem::{Response, http::StatusCode};
use serde::Serialize;

pub use forgot::{forgot_page, forgot_sent_page};
pub use home::{CLEAR_SITE_DATA, home_page};
pub use login::{FAILED, LoginExtras, login_page};
pub use password::password_page;
pub use signout::sign_out_page;

use super::PortalContext;
use crate::{entities::shop, links};

/// What every page's layout needs.
#[derive(Debug, Clone, Serialize)]
pub struct Base {
    /// `<html lang>`: the shop's locale.
    pub lang: String,
    pub title: String,
    /// The shop's name, if the page belongs to a shop.
    pub shop_name: Option<String>,
    /// The shop's phone, for "contact the shop".
    pub shop_phone: Option<String>,
    /// The shop's email, for "contact the shop".
    pub shop_email: Option<String>,
    pub login_url: Option<String>,
    /// The shop's "forgot password" page.
    pub forgot_url: Option<String>,
}

impl Base {
    /// A page of `shop`'s portal.
    pub fn shop(portal: &PortalContext, shop: &shop::Model, title: impl Into<String>) -> Self {
        let public = &portal.public_url;
        Self {
            lang: shop.locale.clone(),
            title: title.into(),
            shop_name: Some(shop.name.clone()),
            shop_phone: shop.phone.clone(),
            shop_email: shop.email.clone(),
            login_url: Some(links::portal_path(public, &shop.id, "login")),
            forgot_url: Some(links::portal_path(public, &shop.id, "forgot")),
        }
    }

    /// A page that belongs to no shop (an unknown address).
    pub fn plain(title: impl Into<String>) -> Self {
        Self {
            lang: "en".into(),
            title: title.into(),
            shop_name: None,
            shop_phone: None,
            shop_email: None,
            login_url: None,
            forgot_url: None,
        }
    }
}

/// A page with a heading, a paragraph and the layout's links (errors, notices).
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    /// Layout.
    #[serde(flatten)]
    pub base: Base,
    pub heading: String,
    /// What happened and what to do.
    pub text: String,
    /// Show the shop's contact details.
    pub contact: bool,
}

/// Renders `template` with `context` as an HTML response. A template that fails (it cannot, with the
/// built-in ones, which are checked at start-up) degrades to a plain message rather than a blank 500.
pub fn render(
    portal: &PortalContext,
    template: &str,
    status: StatusCode,
    context: &impl Serialize,
) -> Response {
    rendered(status, portal.templates.render(template, context))
}

/// Like [`render`], for a form around the CSRF `token`. A form that is `shared` (the same for every
/// visitor of the shop but for its token) is rendered once and reused (see `templates::reuse`); one
/// that carries what a visitor typed is rendered for them alone.
pub fn render_form<C: Serialize>(
    portal: &PortalContext,
    template: &str,
    status: StatusCode,
    token: &str,
    shared: bool,
    page: impl Fn(&str) -> C,
) -> Response {
    let html = if shared {
        portal.templates.render_with_token(template, token, page)
    } else {
        portal.templates.render(template, page(token))
    };
    rendered(status, html)
}

fn rendered(status: StatusCode, html: Result<String, crate::templates::TemplateError>) -> Response {
    match html {
        Ok(html) => html_response(status, html),
        Err(e) => {
            tracing::error!(error = %e, "a page template failed");
            html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!DOCTYPE html><html lang=\"en\"><title>Error</title><p>Something went wrong on our side. Please try again.</p></html>".into(),
            )
        }
    }
}

fn html_response(status: StatusCode, html: String) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .body(html)
}

/// A redirect after a successful form (303 See Other, so a reload does not post again).
pub fn see_other(location: &str) -> Response {
    Response::builder().status(StatusCode::SEE_OTHER).header("location", location).body(())
}

/// Every page template.
pub const PAGES: [&str; 7] = [
    "pages/signout.html",
    "pages/notice.html",
    "pages/login.html",
    "pages/password.html",
    "pages/forgot.html",
    "pages/forgot_sent.html",
    "pages/home.html",
];

/// Renders every page template with sample values for all the variables pages receive, so an override
/// that names a variable no page has stops the start.
pub fn check_templates(
    templates: &crate::templates::Templates,
) -> Result<(), crate::templates::TemplateError> {
    let sample = serde_json::json!({
        "lang": "en-AU", "title": "Log in", "shop_name": "Southside Auto Care", "shop_phone": "+61 7 3000 0000",
        "shop_email": "service@southside.example", "login_url": "/p/shop/login", "forgot_url": "/p/shop/forgot",
        "heading": "Heading", "text": "Text", "contact": true, "action": "/p/shop/login", "csrf": "token",
        "email": "jana@example.com", "notice": null, "error": null, "intro": "Intro", "submit": "Save",
        "username": "jana@example.com", "min_length": 8, "password_error": null, "confirmation_error": null,
        "email_error": null, "valid_for": "1 hour", "first_name": "Jana", "full_name": "Jana Kowalski",
        "logout_action": "/p/shop/logout", "post_logout_redirect_uri": "https://host.example/signed-out",
        "state": "xyz", "continue": "handle", "portal_url": "https://host.example/portal",
    });
    templates.check(&PAGES, &sample)
}
