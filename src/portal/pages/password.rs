//! The page for choosing a password with a set-up or reset link.

use poem::{Request, Response, http::StatusCode};
use serde::Serialize;

use super::{Base, render};
use crate::{
    accounts::{Link, passwords::PasswordProblem},
    entities::shop,
    links,
    portal::{PortalContext, cookies::with_cookies, form::csrf_for},
    tokens::Purpose,
};

#[derive(Serialize)]
struct PasswordPage {
    #[serde(flatten)]
    base: Base,
    heading: String,
    intro: String,
    submit: &'static str,
    action: String,
    csrf: String,
    username: String,
    min_length: usize,
    password_error: Option<String>,
    confirmation_error: Option<String>,
}

/// The password form of `link` (presented as `raw`), with the reason the last password was refused.
pub fn password_page(
    portal: &PortalContext,
    request: &Request,
    shop: &shop::Model,
    link: &Link,
    raw: &str,
    status: StatusCode,
    problem: Option<PasswordProblem>,
) -> Response {
    let (heading, intro, submit, segment) = match link.purpose {
        Purpose::Setup => (
            "Set up your password".to_owned(),
            format!(
                "Choose the password for your {} Customer Portal login. You'll log in with your email address and this password.",
                shop.name
            ),
            "Save password and log in",
            "setup",
        ),
        Purpose::Reset => (
            "Choose a new password".to_owned(),
            format!(
                "Choose a new password for your {} Customer Portal login. You'll be logged out everywhere else.",
                shop.name
            ),
            "Save new password and log in",
            "reset",
        ),
    };
    let (password_error, confirmation_error) = match problem {
        Some(PasswordProblem::Mismatch) => (None, Some(PasswordProblem::Mismatch.to_string())),
        Some(other) => (Some(other.to_string()), None),
        None => (None, None),
    };
    let (csrf, cookie) = csrf_for(portal, request);
    let context = PasswordPage {
        base: Base::shop(portal, shop, heading.clone()),
        heading,
        intro,
        submit,
        action: links::portal_path(&portal.public_url, &shop.id, &format!("{segment}/{raw}")),
        csrf,
        username: link.account.username.clone(),
        min_length: portal.settings.password_min_length,
        password_error,
        confirmation_error,
    };
    with_cookies(render(portal, "pages/password.html", status, &context), cookie)
}
