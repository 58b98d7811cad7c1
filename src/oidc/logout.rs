//! `GET|POST {issuer}/oidc/logout` (OpenID Connect RP-Initiated Logout 1.0) and the customer's answer
//! to "Sign out?", `POST {issuer}/oidc/logout/confirm`.
//!
//! With a valid `id_token_hint` for the customer this browser is logged in as, the session ends at
//! once and the browser goes to the registered `post_logout_redirect_uri` (with `state`). Without
//! one, anyone could log a customer out with a link, so the customer is asked first. A return
//! address the shop did not register is never redirected to.

use std::sync::Arc;

use poem::{
    Body, Request, Response, handler,
    http::HeaderValue,
    web::{Data, Path},
};
use serde::Deserialize;

use super::{
    errors::{OidcError, untrusted_text},
    params,
};
use crate::{
    entities::shop,
    identity::{Identity, request::Untrusted},
    links,
    portal::{
        PortalContext, cookies,
        errors::PortalError,
        form::{AnyShopForm, CsrfForm},
        pages,
    },
};

#[handler]
pub async fn end_session(
    request: &Request,
    body: Body,
    Path(shop_id): Path<String>,
    Data(identity): Data<&Arc<Identity>>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    let result = async {
        let shop = portal.find_shop(&shop_id).await?;
        let params = params::of_request(request, body).await.ok_or(PortalError::BadRequest)?;
        let one = |name| params.one(name).map_err(|_| refused(&shop, Untrusted::Repeated));
        let (hint, return_to, state) =
            (one("id_token_hint")?, one("post_logout_redirect_uri")?, one("state")?);
        if one("client_id")?.is_some_and(|id| !identity.client.is(id)) {
            return Err(refused(&shop, Untrusted::UnknownClient));
        }
        let return_to = registered_return(&shop, return_to)?;
        let hinted = match hint {
            Some(hint) => identity.hinted_subject(&shop, hint).await?,
            None => None,
        };
        let session = super::authorize::session(request, portal, &shop).await?;
        // Without a session there is nothing to end, and nothing to ask.
        let same_customer = match (&hinted, &session) {
            (Some(sub), Some(session)) => *sub == session.account_id,
            (Some(_), None) => true,
            (None, _) => session.is_none(),
        };
        if !same_customer {
            return Ok(pages::sign_out_page(portal, request, &shop, return_to, state));
        }
        signed_out(portal, request, &shop, return_to, state).await
    }
    .await;
    result.unwrap_or_else(|e: OidcError| e.respond(portal))
}

#[derive(Deserialize)]
pub(super) struct ConfirmForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    post_logout_redirect_uri: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

impl CsrfForm for ConfirmForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[handler]
pub async fn confirm(
    request: &Request,
    AnyShopForm { shop, form }: AnyShopForm<ConfirmForm>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    let result = async {
        let return_to =
            registered_return(&shop, form.post_logout_redirect_uri.as_deref().filter(|u| !u.is_empty()))?;
        signed_out(portal, request, &shop, return_to, form.state.as_deref().filter(|s| !s.is_empty())).await
    }
    .await;
    result.unwrap_or_else(|e: OidcError| e.respond(portal))
}

/// `return_to` if the shop registered it; a page (no redirect) if not.
fn registered_return<'a>(
    shop: &shop::Model,
    return_to: Option<&'a str>,
) -> Result<Option<&'a str>, OidcError> {
    match return_to {
        None => Ok(None),
        Some(uri) if shop.host_portal().is_some_and(|p| p.allows_post_logout_redirect(uri)) => Ok(Some(uri)),
        Some(_) => Err(refused(shop, Untrusted::UnregisteredRedirectUri)),
    }
}

fn refused(shop: &shop::Model, why: Untrusted) -> OidcError {
    PortalError::SignInRefused { shop: Box::new(shop.clone()), reason: untrusted_text(why) }.into()
}

/// Ends the browser's session at the shop and sends it where the client asked, or to our login page.
async fn signed_out(
    portal: &PortalContext,
    request: &Request,
    shop: &shop::Model,
    return_to: Option<&str>,
    state: Option<&str>,
) -> Result<Response, OidcError> {
    let names = portal.cookie_names();
    if let Some(cookie) = cookies::read_cookie(request, names.session()) {
        portal.accounts.end_session(cookie).await?;
    }
    let target = match return_to {
        Some(uri) => {
            let mut url =
                url::Url::parse(uri).map_err(|_| refused(shop, Untrusted::UnregisteredRedirectUri))?;
            if let Some(state) = state {
                url.query_pairs_mut().append_pair("state", state);
            }
            url.to_string()
        }
        None => format!("{}?notice=logged-out", links::login(&portal.public_url, &shop.id)),
    };
    let mut response = cookies::with_cookies(pages::see_other(&target), [names.clear(names.session())]);
    response.headers_mut().insert("clear-site-data", HeaderValue::from_static(pages::CLEAR_SITE_DATA));
    Ok(response)
}
