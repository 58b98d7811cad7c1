//! The token endpoint's exchange (RFC 6749 §4.1.3, RFC 7636 §4.6), the ID token (OIDC Core §2,
//! §3.1.3.6) and the claims the ID token and userinfo carry (contract §8).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use sea_orm::EntityTrait;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{
    ACCESS_TOKEN_LIFETIME, ID_TOKEN_LIFETIME, Identity, IdentityError,
    client::ClientRefusal,
    grants::{self, Presented, Redeemed},
    request::Parameters,
};
use crate::{
    clock::from_millis,
    domain::RawToken,
    entities::{customer, oidc_grant, portal_account, shop},
};

/// A token request refused (RFC 6749 §5.2).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid_client")]
    InvalidClient(ClientRefusal),
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    #[error("invalid_grant: {0}")]
    InvalidGrant(&'static str),
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    #[error(transparent)]
    Internal(#[from] IdentityError),
}

impl From<sea_orm::DbErr> for TokenError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Internal(e.into())
    }
}

/// A successful token response.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub id_token: String,
    pub scope: String,
}

/// Who the customer is, as the ID token and userinfo say it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    /// The host's own ids.
    pub shop_id: String,
    pub customer_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

#[derive(Serialize)]
struct IdToken<'a> {
    iss: &'a str,
    aud: &'a str,
    azp: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    at_hash: String,
    #[serde(flatten)]
    claims: &'a Claims,
}

/// The userinfo endpoint's refusals (RFC 6750 §3.1).
#[derive(Debug, thiserror::Error)]
pub enum UserinfoError {
    /// No bearer token at all: the answer names no error code.
    #[error("no access token")]
    Missing,
    #[error("invalid_token")]
    InvalidToken,
    #[error(transparent)]
    Internal(#[from] IdentityError),
}

impl From<sea_orm::DbErr> for UserinfoError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Internal(e.into())
    }
}

/// The account behind a grant, while its customer may still sign in (§8's entitlement).
pub struct Entitled {
    pub account: portal_account::Model,
    pub customer: customer::Model,
}

impl Identity {
    /// Whether `shop` serves its portal, has a client, and `account_id`'s customer still exists.
    pub async fn entitled(
        &self,
        shop: &shop::Model,
        account_id: &str,
    ) -> Result<Option<Entitled>, IdentityError> {
        if !shop.serves_portal() || !Self::has_client(shop) {
            return Ok(None);
        }
        let conn = self.db.conn();
        let Some(account) = portal_account::Entity::find_by_id(account_id).one(conn).await? else {
            return Ok(None);
        };
        if account.shop_id != shop.id || account.password_hash.is_none() {
            return Ok(None);
        }
        let customer = customer::Entity::find_by_id((account.shop_id.clone(), account.customer_id.clone()))
            .one(conn)
            .await?;
        Ok(customer.filter(|c| c.deleted_at.is_none()).map(|customer| Entitled { account, customer }))
    }

    /// `POST {issuer}/oidc/token`: a code for tokens.
    pub async fn exchange(
        &self,
        shop: &shop::Model,
        authorization: Option<&str>,
        form: &Parameters,
    ) -> Result<TokenResponse, TokenError> {
        self.client.authenticate(authorization).map_err(TokenError::InvalidClient)?;
        let field = |name| {
            form.one(name).map_err(|n| TokenError::InvalidRequest(format!("{n} was sent more than once")))
        };
        if field("client_id")?.is_some_and(|id| !self.client.is(id)) {
            return Err(TokenError::InvalidClient(ClientRefusal::Mismatch));
        }
        match field("grant_type")? {
            Some("authorization_code") => {}
            None => return Err(TokenError::InvalidRequest("grant_type is missing".into())),
            Some(_) => return Err(TokenError::UnsupportedGrantType),
        }
        let code = field("code")?.ok_or_else(|| TokenError::InvalidRequest("code is missing".into()))?;
        let redirect_uri = field("redirect_uri")?
            .ok_or_else(|| TokenError::InvalidRequest("redirect_uri is missing".into()))?;
        let verifier = field("code_verifier")?
            .ok_or_else(|| TokenError::InvalidRequest("code_verifier is missing (PKCE)".into()))?;
        if !is_verifier(verifier) {
            return Err(TokenError::InvalidRequest(
                "code_verifier is not 43 to 128 unreserved characters".into(),
            ));
        }

        let now = self.clock.now();
        let grant = grants::grant_of_code(self.db.conn(), code)
            .await?
            .ok_or(TokenError::InvalidGrant("unknown code"))?;
        let entitled = self.entitled(shop, &grant.account_id).await?;
        let access_token = RawToken::generate();
        let (stored, has_right, token) = (grant.clone(), entitled.is_some(), access_token.clone());
        let (shop_id, client_id) = (shop.shop_id(), self.client.id().to_owned());
        let (redirect_uri, challenge) = (redirect_uri.to_owned(), s256(verifier));
        let outcome = self
            .db
            .write(move |txn| {
                Box::pin(async move {
                    let presented = Presented {
                        shop_id: &shop_id,
                        client_id: &client_id,
                        redirect_uri: &redirect_uri,
                        challenge_of_verifier: &challenge,
                    };
                    let outcome = grants::redeem(txn, &stored, &presented, &token, now).await?;
                    // A customer who may no longer sign in gets nothing, and the code is spent.
                    if outcome == Redeemed::Granted && !has_right {
                        grants::revoke(txn, &stored.id, now).await?;
                    }
                    Ok::<_, sea_orm::DbErr>(outcome)
                })
            })
            .await?;
        match outcome {
            Redeemed::Granted => {}
            Redeemed::Replayed => {
                tracing::warn!(
                    target: "portal_invites::security",
                    event = "code_replayed", shop_id = %shop.id, grant_id = %grant.id,
                    "an authorization code was presented again; what it gave is revoked"
                );
                return Err(TokenError::InvalidGrant("the code was already used"));
            }
            Redeemed::Refused => {
                return Err(TokenError::InvalidGrant(
                    "the code is expired or was issued for another request",
                ));
            }
        }
        let entitled = entitled.ok_or(TokenError::InvalidGrant("the customer can no longer sign in"))?;
        let id_token = self.id_token(shop, &grant, &entitled, &access_token, now).await?;
        tracing::info!(shop_id = %shop.id, account_id = %grant.account_id, "signed in to the host's portal");
        Ok(TokenResponse {
            access_token: access_token.as_str().to_owned(),
            token_type: "Bearer",
            expires_in: ACCESS_TOKEN_LIFETIME.num_seconds(),
            id_token,
            scope: grant.scope.clone(),
        })
    }

    async fn id_token(
        &self,
        shop: &shop::Model,
        grant: &oidc_grant::Model,
        entitled: &Entitled,
        access_token: &RawToken,
        now: DateTime<Utc>,
    ) -> Result<String, IdentityError> {
        let issuer = self.issuer(&shop.id);
        let claims = claims(shop, entitled, &grant.scope);
        let body = IdToken {
            iss: &issuer,
            aud: self.client.id(),
            azp: self.client.id(),
            exp: (now + ID_TOKEN_LIFETIME).timestamp(),
            iat: now.timestamp(),
            auth_time: from_millis(grant.auth_time).timestamp(),
            nonce: grant.nonce.as_deref(),
            at_hash: at_hash(access_token.as_str()),
            claims: &claims,
        };
        self.keys.with_signer(now, |key| key.sign_jwt(&body)).await?
    }

    /// `GET|POST {issuer}/oidc/userinfo`: the claims an access token stands for.
    pub async fn userinfo(&self, shop: &shop::Model, bearer: Option<&str>) -> Result<Claims, UserinfoError> {
        let token = bearer.ok_or(UserinfoError::Missing)?;
        let now = self.clock.now();
        let grant = grants::grant_of_access_token(self.db.conn(), &shop.shop_id(), token, now)
            .await?
            .ok_or(UserinfoError::InvalidToken)?;
        let entitled = self.entitled(shop, &grant.account_id).await?.ok_or(UserinfoError::InvalidToken)?;
        Ok(claims(shop, &entitled, &grant.scope))
    }
}

/// The claims for the granted scopes: the host's ids always, `email` and `profile` when granted.
pub fn claims(shop: &shop::Model, entitled: &Entitled, scope: &str) -> Claims {
    let Entitled { account, customer } = entitled;
    let granted = |s: &str| scope.split(' ').any(|g| g == s);
    let email = customer.email.clone().unwrap_or_else(|| account.username.clone());
    let verified = account.verified_email.as_deref() == Some(email.to_lowercase().as_str());
    let name = [customer.first_name.as_deref(), customer.last_name.as_deref()]
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let profile = granted("profile");
    Claims {
        sub: account.id.clone(),
        shop_id: shop.id.clone(),
        customer_id: customer.id.clone(),
        email: granted("email").then(|| email.clone()),
        email_verified: granted("email").then_some(verified),
        name: (profile && !name.is_empty()).then_some(name),
        given_name: customer.first_name.clone().filter(|_| profile),
        family_name: customer.last_name.clone().filter(|_| profile),
        locale: profile.then(|| shop.locale.clone()),
    }
}

/// BASE64URL(SHA-256(text)), no padding: a PKCE challenge from its verifier.
pub fn s256(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes()))
}

/// The left half of the access token's SHA-256, base64url (OIDC Core §3.1.3.6).
fn at_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(access_token.as_bytes())[..16])
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn is_verifier(text: &str) -> bool {
    (43..=128).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_and_at_hash_follow_the_rfc_examples() {
        // RFC 7636 Appendix B.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        // OIDC Core's example access token (Appendix A.3) and its at_hash.
        assert_eq!(at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"), "77QmUPtjPfzWtF2AnpK9RQ");
        assert!(is_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert!(!is_verifier("short"));
        assert!(!is_verifier(&"a".repeat(129)));
        assert!(!is_verifier(&format!("{}+", "a".repeat(43))));
    }
}
