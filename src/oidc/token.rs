//! `POST {issuer}/oidc/token` and `GET|POST {issuer}/oidc/userinfo`.

use std::sync::Arc;

use poem::{
    Body, Request, Response, handler,
    http::{StatusCode, header::AUTHORIZATION},
    web::{Data, Path},
};

use super::{
    errors::{OidcError, json},
    params,
};
use crate::{
    identity::{Identity, tokens::TokenError},
    portal::PortalContext,
};

#[handler]
pub async fn token(
    request: &Request,
    body: Body,
    Path(shop_id): Path<String>,
    Data(identity): Data<&Arc<Identity>>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    let result = async {
        let shop = portal.find_shop(&shop_id).await.map_err(|_| OidcError::NotFound)?;
        let form = params::form(body)
            .await
            .ok_or_else(|| TokenError::InvalidRequest("the body must be a form of at most 16 KiB".into()))?;
        let authorization = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let tokens = identity.exchange(&shop, authorization, &form).await?;
        Ok::<_, OidcError>(json(StatusCode::OK, &tokens))
    }
    .await;
    result.unwrap_or_else(|e| e.respond(portal))
}

#[handler]
pub async fn userinfo(
    request: &Request,
    body: Body,
    Path(shop_id): Path<String>,
    Data(identity): Data<&Arc<Identity>>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    let result = async {
        let shop = portal.find_shop(&shop_id).await.map_err(|_| OidcError::NotFound)?;
        let issuer = identity.issuer(&shop.id);
        let header = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let bearer = match header.and_then(|h| h.split_once(' ')) {
            Some((scheme, value)) if scheme.eq_ignore_ascii_case("bearer") => Some(value.trim().to_owned()),
            // RFC 6750 §2.2: a form body may carry it instead.
            _ if request.method() == poem::http::Method::POST => {
                params::form(body).await.and_then(|f| f.one("access_token").ok().flatten().map(str::to_owned))
            }
            _ => None,
        };
        match identity.userinfo(&shop, bearer.as_deref()).await {
            Ok(claims) => Ok(json(StatusCode::OK, &claims)),
            Err(error) => Err(OidcError::Userinfo { issuer, error }),
        }
    }
    .await;
    result.unwrap_or_else(|e: OidcError| e.respond(portal))
}
