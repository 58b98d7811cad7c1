//! Every way a provider request can fail, and what each becomes: a page for the customer's browser
//! (never a redirect to an address we cannot trust), RFC 6749 §5.2 JSON at the token endpoint,
//! RFC 6750 §3 `WWW-Authenticate` at userinfo. The one place these become HTTP.

use poem::{Response, http::StatusCode};
use serde_json::json;

use crate::{
    identity::{
        IdentityError,
        client::ClientRefusal,
        request::Untrusted,
        tokens::{TokenError, UserinfoError},
    },
    portal::{PortalContext, errors::PortalError},
};

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("not found")]
    NotFound,
    /// A page for the browser.
    #[error(transparent)]
    Page(#[from] PortalError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("userinfo: {error}")]
    Userinfo { issuer: String, error: UserinfoError },
}

impl From<IdentityError> for OidcError {
    fn from(e: IdentityError) -> Self {
        Self::Page(PortalError::Internal(e.to_string()))
    }
}

impl From<sea_orm::DbErr> for OidcError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Page(e.into())
    }
}

/// What the customer reads when a sign-in request cannot be trusted.
pub fn untrusted_text(why: Untrusted) -> &'static str {
    match why {
        Untrusted::UnknownClient => "The sign-in request came from an application this portal does not know.",
        Untrusted::NoClientForShop => "This workshop has not connected a portal that signs in here.",
        Untrusted::UnregisteredRedirectUri => {
            "The sign-in request asked to return to an address this portal does not know."
        }
        Untrusted::Repeated => "The sign-in request is malformed.",
    }
}

impl OidcError {
    pub fn respond(self, portal: &PortalContext) -> Response {
        match self {
            Self::NotFound => PortalError::NotFound.page(portal),
            Self::Page(error) => error.page(portal),
            Self::Token(error) => token_error(error),
            Self::Userinfo { issuer, error } => userinfo_error(&issuer, error),
        }
    }
}

fn token_error(error: TokenError) -> Response {
    let (status, code, description) = match &error {
        TokenError::InvalidClient(refusal) => {
            let why = match refusal {
                ClientRefusal::NoCredentials => "authenticate with HTTP Basic (client_secret_basic)",
                ClientRefusal::Mismatch => "unknown client or wrong client secret",
            };
            let body = json!({"error": "invalid_client", "error_description": why});
            return json(StatusCode::UNAUTHORIZED, &body)
                .with_header("www-authenticate", "Basic realm=\"token\"");
        }
        TokenError::InvalidRequest(why) => (StatusCode::BAD_REQUEST, "invalid_request", why.clone()),
        TokenError::InvalidGrant(why) => (StatusCode::BAD_REQUEST, "invalid_grant", (*why).to_owned()),
        TokenError::UnsupportedGrantType => (
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=authorization_code is supported".to_owned(),
        ),
        TokenError::Internal(cause) => {
            tracing::error!(%cause, "the token endpoint failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "please try again".to_owned())
        }
    };
    json(status, &json!({"error": code, "error_description": description}))
}

fn userinfo_error(issuer: &str, error: UserinfoError) -> Response {
    let challenge = match &error {
        UserinfoError::Missing => format!("Bearer realm=\"{issuer}\""),
        UserinfoError::InvalidToken => format!(
            "Bearer realm=\"{issuer}\", error=\"invalid_token\", error_description=\"the access token is not valid\""
        ),
        UserinfoError::Internal(cause) => {
            tracing::error!(%cause, "the userinfo endpoint failed");
            return json(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": "server_error"}));
        }
    };
    let body = match error {
        UserinfoError::Missing => json!({"error": "invalid_request", "error_description": "no access token"}),
        _ => json!({"error": "invalid_token", "error_description": "the access token is not valid"}),
    };
    json(StatusCode::UNAUTHORIZED, &body).with_header("www-authenticate", challenge)
}

/// A JSON answer that no cache keeps (RFC 6749 §5.1).
pub fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .header("cache-control", "no-store")
        .header("pragma", "no-cache")
        .body(serde_json::to_vec(body).unwrap_or_default())
}

trait WithHeader {
    fn with_header(self, name: &'static str, value: impl AsRef<str>) -> Self;
}

impl WithHeader for Response {
    fn with_header(mut self, name: &'static str, value: impl AsRef<str>) -> Self {
        if let Ok(value) = value.as_ref().parse() {
            self.headers_mut().insert(name, value);
        }
        self
    }
}
