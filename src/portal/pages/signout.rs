//! "Sign out?": asked when a logout request cannot show it came from the shop's portal.

use poem::{Request, Response, http::StatusCode};
use serde::Serialize;

use super::{Base, render};
use crate::{
    entities::shop,
    links,
    portal::{PortalContext, cookies::with_cookies, form::csrf_for},
};

#[derive(Serialize)]
struct SignOutPage {
    #[serde(flatten)]
    base: Base,
    action: String,
    csrf: String,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
}

/// The question, with where to go afterwards (already checked against the shop's registration).
pub fn sign_out_page(
    portal: &PortalContext,
    request: &Request,
    shop: &shop::Model,
    post_logout_redirect_uri: Option<&str>,
    state: Option<&str>,
) -> Response {
    let (csrf, cookie) = csrf_for(portal, request);
    let context = SignOutPage {
        base: Base::shop(portal, shop, format!("Sign out of {}", shop.name)),
        action: links::portal_path(&portal.public_url, &shop.id, "oidc/logout/confirm"),
        csrf,
        post_logout_redirect_uri: post_logout_redirect_uri.map(str::to_owned),
        state: state.map(str::to_owned),
    };
    with_cookies(render(portal, "pages/signout.html", StatusCode::OK, &context), cookie)
}
