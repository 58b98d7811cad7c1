//! `GET {issuer}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4) and the JWKS.

use std::sync::Arc;

use poem::{
    Response, handler,
    web::{Data, Path},
};
use serde_json::json;

use super::errors::OidcError;
use crate::{
    entities::shop,
    identity::{Identity, keys},
    links,
    portal::PortalContext,
};

/// The provider metadata of a shop that has a client.
#[handler]
pub async fn configuration(
    Path(shop_id): Path<String>,
    Data(identity): Data<&Arc<Identity>>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    let result = async {
        let shop = shop_with_client(portal, &shop_id).await?;
        let public = &identity.public_url;
        let endpoint = |name| links::oidc_endpoint(public, &shop.id, name);
        let metadata = json!({
            "issuer": identity.issuer(&shop.id),
            "authorization_endpoint": endpoint("authorize"),
            "token_endpoint": endpoint("token"),
            "userinfo_endpoint": endpoint("userinfo"),
            "jwks_uri": endpoint("jwks"),
            "end_session_endpoint": endpoint("logout"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
                "shop_id", "customer_id", "email", "email_verified", "name", "given_name",
                "family_name", "locale"],
            "prompt_values_supported": ["none", "login"],
            "authorization_response_iss_parameter_supported": true,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "claims_parameter_supported": false,
        });
        Ok(json_response(&metadata))
    }
    .await;
    result.unwrap_or_else(|e: OidcError| e.respond(portal))
}

/// `GET {issuer}/oidc/jwks`: the public keys ID tokens are signed with.
#[handler]
pub async fn jwks(
    Path(shop_id): Path<String>,
    Data(identity): Data<&Arc<Identity>>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    let result = async {
        shop_with_client(portal, &shop_id).await?;
        let keys = identity.keys.published(identity.clock.now()).await?;
        Ok(json_response(&keys))
    }
    .await;
    result.unwrap_or_else(|e: OidcError| e.respond(portal))
}

/// Relying parties may cache both for as long as a copy of the JWKS may be kept: a rotated-in key
/// must be in every copy before it signs (`identity::keys::jwks_max_age`).
/// The shop of the address, if it has a client (the host runs a portal for it): a shop without one
/// has no provider to describe.
async fn shop_with_client(portal: &PortalContext, shop_id: &str) -> Result<shop::Model, OidcError> {
    let shop = portal.find_shop(shop_id).await?;
    if Identity::has_client(&shop) { Ok(shop) } else { Err(OidcError::NotFound) }
}

fn json_response(body: &impl serde::Serialize) -> Response {
    let cache = format!("public, max-age={}", keys::jwks_max_age().num_seconds());
    Response::builder()
        .content_type("application/json")
        .header("cache-control", cache)
        .body(serde_json::to_vec(body).unwrap_or_default())
}
