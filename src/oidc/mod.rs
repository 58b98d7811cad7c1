//! The OpenID Provider's HTTP side (contract §8): per shop, under its issuer `/p/{shop_id}`,
//! discovery, the JWKS, and the authorization, token, userinfo and end-session endpoints, under
//! `/p/{shop_id}/oidc/…` so they never clash with the portal's pages.
//!
//! Handlers are thin: they read the request, call `identity`, and turn the outcome into a response;
//! `errors::OidcError` is the one place an error becomes HTTP (a page, a redirect, or RFC 6749 /
//! RFC 6750 JSON). Pages (login, errors, the logout question) are the portal's.

mod authorize;
mod discovery;
mod errors;
mod logout;
mod params;
mod token;

use std::sync::Arc;

use poem::{EndpointExt, Route, get, post};

use crate::identity::Identity;

/// Adds the provider's routes to the portal's (both are nested under `/p`). Handlers get the
/// [`Identity`] here and the portal's context from the portal's routes.
pub fn add_routes(routes: Route, identity: Arc<Identity>) -> Route {
    routes
        .at("/:shop/.well-known/openid-configuration", get(discovery::configuration).data(identity.clone()))
        .at("/:shop/oidc/jwks", get(discovery::jwks).data(identity.clone()))
        .at(
            "/:shop/oidc/authorize",
            get(authorize::authorize).post(authorize::authorize).data(identity.clone()),
        )
        .at("/:shop/oidc/continue", get(authorize::resume).data(identity.clone()))
        .at("/:shop/oidc/token", post(token::token).data(identity.clone()))
        .at("/:shop/oidc/userinfo", get(token::userinfo).post(token::userinfo).data(identity.clone()))
        .at("/:shop/oidc/logout", get(logout::end_session).post(logout::end_session).data(identity.clone()))
        .at("/:shop/oidc/logout/confirm", post(logout::confirm).data(identity))
}
