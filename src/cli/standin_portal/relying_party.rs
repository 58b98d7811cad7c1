//! The host's side of sign-in (contract §8), done by hand the way a careful relying party does it:
//! discovery from the shop's issuer, the authorization code flow with PKCE S256, `state` and `nonce`
//! kept on the server, the response's `iss` checked (RFC 9207), the code redeemed with HTTP Basic
//! (`client_secret_basic`, both parts form-encoded as RFC 6749 §2.3.1 asks), the ID token verified
//! ([`super::id_token`]), and userinfo read for the same subject.

use std::{collections::HashMap, sync::RwLock, time::Duration};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use url::Url;

use super::{
    HostRegistration,
    flows::{Flow, Flows},
    id_token::{self, Expected},
};
use crate::{cli::host_messages::Portal, clock::Clock, domain::ShopId};

/// Why a sign-in did not complete, in words a person at the stand-in can act on.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("this portal does not know the shop {0}")]
    UnknownShop(String),
    #[error("the provider's discovery document could not be used: {0}")]
    Discovery(String),
    #[error("this sign-in is unknown, already finished or expired")]
    UnknownState,
    #[error("the answer came from the issuer {got:?}, but the sign-in was started with {expected}")]
    WrongIssuer { expected: String, got: Option<String> },
    #[error("the provider answered {error}")]
    Refused { error: String, description: Option<String> },
    #[error("redeeming the code failed: {0}")]
    Token(String),
    #[error("the ID token was refused: {0}")]
    IdToken(String),
    #[error("the userinfo endpoint: {0}")]
    Userinfo(String),
}

/// The query of an authorization response (RFC 6749 §4.1.2, §4.1.2.1; RFC 9207).
#[derive(Debug, Default, Deserialize)]
pub struct Reply {
    pub state: Option<String>,
    pub code: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A completed sign-in: what the host's portal now knows about the customer.
pub struct SignedIn {
    pub shop_name: String,
    pub name: String,
    pub customer_id: String,
    pub id_token_claims: Map<String, Value>,
    pub userinfo: Map<String, Value>,
    /// RP-initiated logout at the provider, back to the shop's signed-out page.
    pub sign_out: String,
}

/// The provider metadata the flow uses (OpenID Connect Discovery 1.0 §3).
#[derive(Debug, Deserialize)]
struct Provider {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: String,
    jwks_uri: String,
    end_session_endpoint: Option<String>,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    token_type: String,
    id_token: Option<String>,
}

pub struct RelyingParty {
    registration: HostRegistration,
    /// The stand-in's portal base: every shop's addresses are [`Portal::at`] it.
    base: String,
    clock: Clock,
    http: reqwest::Client,
    /// The shops this portal serves, by id, with their names (a host knows its own shops).
    shops: RwLock<HashMap<String, String>>,
    flows: Flows,
}

impl RelyingParty {
    pub fn new(registration: HostRegistration, base: String, clock: Clock) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self { registration, base, clock, http, shops: RwLock::default(), flows: Flows::default() })
    }

    pub fn portal(&self, shop_id: &str) -> Portal {
        Portal::at(&self.base, shop_id)
    }

    pub fn add_shop(&self, shop_id: &str, name: &str) {
        self.shops.write().unwrap_or_else(|p| p.into_inner()).insert(shop_id.to_owned(), name.to_owned());
    }

    pub fn shop_name(&self, shop_id: &str) -> Option<String> {
        self.shops.read().unwrap_or_else(|p| p.into_inner()).get(shop_id).cloned()
    }

    /// Starts a sign-in to `shop_id`'s portal: the provider's authorization URL to send the browser to.
    pub async fn begin(&self, shop_id: &str) -> Result<String, SignInError> {
        let unknown = || SignInError::UnknownShop(shop_id.to_owned());
        let shop = ShopId::parse(shop_id).map_err(|_| unknown())?;
        self.shop_name(shop_id).ok_or_else(unknown)?;
        let issuer = self.registration.identity.issuer_for(&self.registration.public_url, &shop);
        let provider = self.discover(&issuer).await?;
        let flow = Flow { shop_id: shop_id.to_owned(), nonce: random(), verifier: random(), issuer };
        let state = random();
        let mut url = Url::parse(&provider.authorization_endpoint)
            .map_err(|e| SignInError::Discovery(format!("authorization_endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.registration.client_id)
            .append_pair("redirect_uri", &self.redirect_uri(shop_id))
            .append_pair("scope", "openid email profile")
            .append_pair("state", &state)
            .append_pair("nonce", &flow.nonce)
            .append_pair("code_challenge", &URL_SAFE_NO_PAD.encode(Sha256::digest(flow.verifier.as_bytes())))
            .append_pair("code_challenge_method", "S256");
        self.flows.insert(state, flow, self.clock.now());
        Ok(url.into())
    }

    /// Finishes the sign-in the provider answered with `reply`.
    pub async fn complete(&self, reply: &Reply) -> Result<SignedIn, SignInError> {
        let state = reply.state.as_deref().ok_or(SignInError::UnknownState)?;
        let flow = self.flows.take(state, self.clock.now()).ok_or(SignInError::UnknownState)?;
        // Checked before anything else, errors included: the callback URL is shared by every shop,
        // so only `iss` says which provider answered (RFC 9207 §2.4).
        if reply.iss.as_deref() != Some(flow.issuer.as_str()) {
            return Err(SignInError::WrongIssuer { expected: flow.issuer, got: reply.iss.clone() });
        }
        if let Some(error) = &reply.error {
            return Err(SignInError::Refused {
                error: error.clone(),
                description: reply.error_description.clone(),
            });
        }
        let code =
            reply.code.as_deref().ok_or_else(|| SignInError::Token("the answer has no code".into()))?;
        let provider = self.discover(&flow.issuer).await?;
        let tokens = self.redeem(&provider, &flow, code).await?;
        let id_token = tokens.id_token.ok_or_else(|| SignInError::Token("no id_token came back".into()))?;
        let keys: JwkSet = self.get_json(&provider.jwks_uri, None).await.map_err(SignInError::IdToken)?;
        let expected = Expected {
            issuer: &flow.issuer,
            client_id: &self.registration.client_id,
            nonce: &flow.nonce,
            access_token: &tokens.access_token,
            now: self.clock.now(),
        };
        let claims = id_token::verify(&id_token, &keys, &expected).map_err(SignInError::IdToken)?;
        // The issuer is per shop already; the host's own id is checked too, as a host maps it.
        if claims.get("shop_id").and_then(Value::as_str) != Some(flow.shop_id.as_str()) {
            return Err(SignInError::IdToken(format!("it is not for the shop {}", flow.shop_id)));
        }
        let userinfo: Map<String, Value> = self
            .get_json(&provider.userinfo_endpoint, Some(&tokens.access_token))
            .await
            .map_err(SignInError::Userinfo)?;
        if userinfo.get("sub") != claims.get("sub") {
            return Err(SignInError::Userinfo("it describes another subject than the ID token".into()));
        }
        let sign_out = self.sign_out_url(&provider, &flow.shop_id, &id_token);
        Ok(SignedIn {
            shop_name: self.shop_name(&flow.shop_id).unwrap_or_else(|| flow.shop_id.clone()),
            name: display_name(&claims),
            customer_id: text_claim(&claims, "customer_id").unwrap_or_else(|| "unknown".into()),
            id_token_claims: claims,
            userinfo,
            sign_out,
        })
    }

    fn redirect_uri(&self, shop_id: &str) -> String {
        self.portal(shop_id).redirect_uris.swap_remove(0)
    }

    async fn discover(&self, issuer: &str) -> Result<Provider, SignInError> {
        let url = format!("{issuer}/.well-known/openid-configuration");
        let provider: Provider =
            self.get_json(&url, None).await.map_err(|why| SignInError::Discovery(format!("{url}: {why}")))?;
        // OpenID Connect Discovery §4.3: the document must name the issuer it was fetched from.
        if provider.issuer != issuer {
            return Err(SignInError::Discovery(format!("{url} names the issuer {}", provider.issuer)));
        }
        if !provider.code_challenge_methods_supported.iter().any(|m| m == "S256") {
            return Err(SignInError::Discovery(format!("{url} does not offer PKCE with S256")));
        }
        Ok(provider)
    }

    async fn redeem(&self, provider: &Provider, flow: &Flow, code: &str) -> Result<Tokens, SignInError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri(&flow.shop_id)),
            ("code_verifier", &flow.verifier),
        ];
        let response = self
            .http
            .post(&provider.token_endpoint)
            .header(reqwest::header::AUTHORIZATION, self.basic_credentials())
            .form(&form)
            .send()
            .await
            .map_err(|e| SignInError::Token(format!("cannot reach {}: {e}", provider.token_endpoint)))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            let said = |field: &str| body[field].as_str().unwrap_or("").to_owned();
            return Err(SignInError::Token(format!(
                "{status}: {} {}",
                said("error"),
                said("error_description")
            )));
        }
        let tokens: Tokens =
            serde_json::from_value(body).map_err(|e| SignInError::Token(format!("the answer: {e}")))?;
        if !tokens.token_type.eq_ignore_ascii_case("bearer") {
            return Err(SignInError::Token(format!("the token type is {}", tokens.token_type)));
        }
        Ok(tokens)
    }

    /// `client_secret_basic`: RFC 6749 §2.3.1 form-encodes both parts before base64.
    fn basic_credentials(&self) -> String {
        let encode = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
        let pair =
            format!("{}:{}", encode(&self.registration.client_id), encode(&self.registration.client_secret));
        format!("Basic {}", STANDARD.encode(pair))
    }

    fn sign_out_url(&self, provider: &Provider, shop_id: &str, id_token: &str) -> String {
        let portal = self.portal(shop_id);
        let Some(Ok(mut url)) = provider.end_session_endpoint.as_deref().map(Url::parse) else {
            return portal.url;
        };
        url.query_pairs_mut()
            .append_pair("id_token_hint", id_token)
            .append_pair("client_id", &self.registration.client_id)
            .append_pair("post_logout_redirect_uri", &portal.post_logout_redirect_uris[0]);
        url.into()
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &str, bearer: Option<&str>) -> Result<T, String> {
        let mut request = self.http.get(url).header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| format!("cannot reach it: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let challenge = response
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            return Err(format!("it answered {status}{challenge}"));
        }
        response.json().await.map_err(|e| format!("its answer is not what was expected: {e}"))
    }
}

/// 256 random bits, base64url: a state, a nonce, or a PKCE verifier (43 characters, RFC 7636 §4.1).
fn random() -> String {
    crate::domain::RawToken::generate().as_str().to_owned()
}

fn text_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// `name`, else the given and family names, else the subject.
fn display_name(claims: &Map<String, Value>) -> String {
    text_claim(claims, "name")
        .or_else(|| {
            let parts: Vec<String> =
                ["given_name", "family_name"].iter().filter_map(|n| text_claim(claims, n)).collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })
        .or_else(|| text_claim(claims, "sub"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_name_shown_falls_back_from_name_to_given_and_family_to_sub() {
        let claims = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            display_name(&claims(json!({"name": "Jana Kowalski", "given_name": "J"}))),
            "Jana Kowalski"
        );
        assert_eq!(
            display_name(&claims(json!({"given_name": "Jana", "family_name": "Kowalski"}))),
            "Jana Kowalski"
        );
        assert_eq!(display_name(&claims(json!({"name": "", "sub": "acc_1"}))), "acc_1");
    }

    #[test]
    fn the_client_secret_is_form_encoded_inside_basic() {
        let registration = HostRegistration {
            public_url: Url::parse("http://127.0.0.1:8080").unwrap(),
            client_id: "customer-portal-invitations".into(),
            client_secret: "whsec_ab+c/d=".into(),
            identity: crate::manifest::Identity {
                protocol: "openid-connect".into(),
                issuer: "/p/{shop_id}".into(),
            },
        };
        let rp =
            RelyingParty::new(registration, "http://127.0.0.1:9/portal".into(), Clock::system()).unwrap();
        let header = rp.basic_credentials();
        let decoded =
            String::from_utf8(STANDARD.decode(header.strip_prefix("Basic ").unwrap()).unwrap()).unwrap();
        assert_eq!(decoded, "customer-portal-invitations:whsec_ab%2Bc%2Fd%3D");
        assert_eq!(rp.redirect_uri("shop_1"), "http://127.0.0.1:9/portal/oidc/callback");
    }
}
