//! The portal home: who you are, where you are, log out.

use poem::{Request, Response, http::StatusCode};
use serde::Serialize;

use super::{Base, render};
use crate::{
    accounts::sessions::Holder,
    entities::shop,
    links,
    portal::{PortalContext, cookies::with_cookies, form::csrf_for},
};

/// What the browser is asked to forget at log-out.
pub const CLEAR_SITE_DATA: &str = "\"cookies\", \"storage\"";

#[derive(Serialize)]
struct HomePage {
    #[serde(flatten)]
    base: Base,
    first_name: Option<String>,
    full_name: String,
    username: String,
    csrf: String,
    logout_action: String,
}

/// The home of `holder`, greeted by the name on their customer profile, else by their username.
pub fn home_page(portal: &PortalContext, request: &Request, shop: &shop::Model, holder: Holder) -> Response {
    let Holder { account, customer } = holder;
    let first_name = customer.as_ref().and_then(|c| c.first_name.clone());
    let full_name = customer
        .as_ref()
        .map(|c| {
            [c.first_name.clone(), c.last_name.clone()].into_iter().flatten().collect::<Vec<_>>().join(" ")
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| account.username.clone());
    let (csrf, cookie) = csrf_for(portal, request);
    let context = HomePage {
        base: Base::shop(portal, shop, format!("{}'s Customer Portal", shop.name)),
        first_name,
        full_name,
        username: account.username,
        csrf,
        logout_action: links::portal_path(&portal.public_url, &shop.id, "logout"),
    };
    with_cookies(render(portal, "pages/home.html", StatusCode::OK, &context), cookie)
}
