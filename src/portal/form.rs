//! The forms' way in. Every POST of the portal reads the same way: the body (a form of at most
//! 16 KiB), the shop of the address, and the CSRF check; [`ShopForm`] does all three before the
//! handler runs, and answers with the error's page when one fails. Showing a form issues its
//! CSRF token ([`csrf_for`]).

use poem::{Body, FromRequest, Request, RequestBody};
use serde::de::DeserializeOwned;

use super::{PortalContext, cookies, csrf, errors::PortalError};
use crate::{entities::shop, tokens::RawToken};

/// The largest form we read.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// A form that carries a CSRF token.
pub trait CsrfForm: DeserializeOwned {
    fn csrf(&self) -> &str;
}

/// A verified POST to a page of a shop: its form and the shop. With `AVAILABLE`, the shop must serve
/// its portal now; without, the handler decides (logging out always works; a link is judged before
/// the shop is).
pub struct ShopForm<T, const AVAILABLE: bool> {
    pub shop: shop::Model,
    pub form: T,
}

/// A form of a page that needs the shop's portal to be available (log in, forgot password).
pub type AvailableShopForm<T> = ShopForm<T, true>;
/// A form of any installed shop's page (log out, set-up and reset links).
pub type AnyShopForm<T> = ShopForm<T, false>;

impl<'a, T: CsrfForm + Send, const AVAILABLE: bool> FromRequest<'a> for ShopForm<T, AVAILABLE> {
    async fn from_request(request: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        let portal = request.data::<PortalContext>().expect("the portal's routes are given a PortalContext");
        let read = async {
            let form: T = read_form(body.take().map_err(|_| PortalError::BadRequest)?).await?;
            let shop_id = request.raw_path_param("shop").unwrap_or_default();
            let shop = if AVAILABLE {
                portal.available_shop(shop_id).await?
            } else {
                portal.find_shop(shop_id).await?
            };
            check_form(portal, request, form.csrf(), &shop)?;
            Ok(Self { shop, form })
        };
        read.await.map_err(|error: PortalError| poem::Error::from_response(error.page(portal)))
    }
}

/// Reads an `application/x-www-form-urlencoded` body of at most 16 KiB.
async fn read_form<T: DeserializeOwned>(body: Body) -> Result<T, PortalError> {
    let bytes = body.into_bytes_limit(MAX_FORM_BYTES).await.map_err(|_| PortalError::BadRequest)?;
    serde_urlencoded::from_bytes(&bytes).map_err(|_| PortalError::BadRequest)
}

/// What a form's CSRF token is bound to: the session cookie when there is one, else the pre-session
/// cookie, created (with its `Set-Cookie`) when missing.
fn form_binding(request: &Request, names: cookies::CookieNames) -> (String, Option<String>) {
    if let Some(session) = cookies::read_cookie(request, names.session()) {
        return (session.to_owned(), None);
    }
    if let Some(pre) = cookies::read_cookie(request, names.presession()) {
        return (pre.to_owned(), None);
    }
    let fresh = RawToken::generate();
    let cookie = names.set(names.presession(), fresh.as_str(), std::time::Duration::from_secs(2 * 3600));
    (fresh.as_str().to_owned(), Some(cookie))
}

/// The CSRF token for the forms of this page, and the cookie to set with it if any.
pub fn csrf_for(portal: &PortalContext, request: &Request) -> (String, Option<String>) {
    let (binding, cookie) = form_binding(request, portal.cookie_names());
    (csrf::token(portal.cookie_key.bytes(), &binding), cookie)
}

/// Refuses a POST from another site, or one whose token matches neither the session nor the
/// pre-session cookie.
fn check_form(
    portal: &PortalContext,
    request: &Request,
    submitted: &str,
    shop: &shop::Model,
) -> Result<(), PortalError> {
    let rejected = |reason: &str| {
        // Which check failed, never the token or cookie values: enough for an operator to see a
        // misconfigured PORTAL_PUBLIC_URL or a proxy that drops cookies, or a forging site.
        // The path is not logged: set-up and reset paths carry tokens.
        tracing::warn!(
            target: "portal_invites::security",
            event = "form_rejected",
            shop_id = shop.id.as_str(),
            reason,
            "form refused"
        );
        PortalError::FormRejected(Some(Box::new(shop.clone())))
    };
    if !csrf::same_site(request, &crate::links::origin(&portal.public_url)) {
        return Err(rejected(
            "cross-site request (Sec-Fetch-Site, or an Origin other than PORTAL_PUBLIC_URL's)",
        ));
    }
    let names = portal.cookie_names();
    let key = portal.cookie_key.bytes();
    let cookies: Vec<&str> = [names.session(), names.presession()]
        .iter()
        .filter_map(|name| cookies::read_cookie(request, name))
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
