//! The host's side of sign-in, built the way a host would build it: the `openidconnect` crate (a
//! certified relying-party library) configured from discovery alone, over a back channel of our own
//! on reqwest that follows no redirect. The browser's part is `Web`'s, one step at a time.

use std::{future::Future, io, pin::Pin};

use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalClaims, AsyncHttpClient, AuthenticationFlow, AuthorizationCode,
    Client, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, HttpRequest, HttpResponse, IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, ProviderMetadataWithLogout, RedirectUrl, RequestTokenError, Scope,
    StandardErrorResponse, StandardTokenResponse, SubjectIdentifier, TokenResponse, UserInfoError,
    core::{
        CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreIdTokenVerifier,
        CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreResponseType,
        CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
    },
};
use portal_invites::{
    clock::Clock,
    domain::ShopId,
    manifest::{EMBEDDED, Manifest},
};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::helpers::TestApp;

/// The host's own ids, which every ID token and userinfo answer carries (contract §8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostIds {
    pub shop_id: String,
    pub customer_id: String,
}

impl AdditionalClaims for HostIds {}

pub type IdToken = openidconnect::IdToken<
    HostIds,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
pub type IdTokenClaims = openidconnect::IdTokenClaims<HostIds, CoreGenderClaim>;
pub type UserInfo = openidconnect::UserInfoClaims<HostIds, CoreGenderClaim>;
pub type Tokens = StandardTokenResponse<
    IdTokenFields<
        HostIds,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;
pub type TokenError = RequestTokenError<io::Error, StandardErrorResponse<CoreErrorResponseType>>;

type HostClient = Client<
    HostIds,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Where every test host's portal lives; `Portal::at` registers its callback and signed-out pages.
pub const PORTAL_BASE: &str = "https://my.workshop.example/portal";
/// The callback the host registered (one for all its shops, told apart by `iss`).
pub const CALLBACK: &str = "https://my.workshop.example/portal/oidc/callback";

/// The host's back channel: a token endpoint's redirect must not be followed with the client's
/// credentials, so nothing is followed.
pub struct BackChannel(reqwest::Client);

impl BackChannel {
    pub fn new() -> Self {
        Self(reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap())
    }
}

impl<'c> AsyncHttpClient<'c> for BackChannel {
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, io::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let sent = self.0.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body);
            let response = sent.send().await.map_err(io::Error::other)?;
            let mut answer = openidconnect::http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            let body = response.bytes().await.map_err(io::Error::other)?;
            answer.body(body.to_vec()).map_err(io::Error::other)
        })
    }
}

/// An authorization request the host sent the browser off with, and what it keeps to check the
/// answer.
pub struct Authorization {
    pub url: Url,
    pub state: CsrfToken,
    pub nonce: Nonce,
    pub verifier: String,
}

impl Authorization {
    pub fn verifier(&self) -> PkceCodeVerifier {
        PkceCodeVerifier::new(self.verifier.clone())
    }

    /// The same request with one parameter replaced (`None`: left out), as a broken client would
    /// send it.
    pub fn with_param(&self, name: &str, value: Option<&str>) -> String {
        let mut url = self.url.clone();
        let kept: Vec<(String, String)> = url.query_pairs().into_owned().filter(|(k, _)| k != name).collect();
        {
            let mut query = url.query_pairs_mut();
            query.clear().extend_pairs(kept);
            if let Some(value) = value {
                query.append_pair(name, value);
            }
        }
        url.into()
    }
}

/// The host, signing customers of one shop in.
pub struct Host {
    /// The issuer as the host builds it from our manifest.
    pub issuer: String,
    pub metadata: ProviderMetadataWithLogout,
    pub client: HostClient,
    pub http: BackChannel,
    clock: Clock,
}

impl Host {
    /// The host of `shop_id`, with the client secret the service is configured with.
    pub async fn discover(app: &TestApp, shop_id: &str) -> Self {
        Self::with_secret(app, shop_id, &app.secret_text).await
    }

    pub async fn with_secret(app: &TestApp, shop_id: &str, secret: &str) -> Self {
        let manifest = Manifest::parse(EMBEDDED).unwrap();
        let public_url = Url::parse(&app.url).unwrap();
        let issuer = manifest.identity().unwrap().issuer_for(&public_url, &ShopId::parse(shop_id).unwrap());
        let http = BackChannel::new();
        // Discovery checks that the document names exactly this issuer, and fetches the JWKS.
        let metadata =
            ProviderMetadataWithLogout::discover_async(IssuerUrl::new(issuer.clone()).unwrap(), &http)
                .await
                .unwrap_or_else(|e| panic!("discovery of {issuer} failed: {e:?}"));
        assert_eq!(metadata.issuer().as_str(), issuer);
        let client = HostClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(manifest.plugin.key.clone()),
            Some(ClientSecret::new(secret.to_owned())),
        )
        .set_redirect_uri(RedirectUrl::new(CALLBACK.to_owned()).unwrap());
        Self { issuer, metadata, client, http, clock: app.clock.clone() }
    }

    /// A request for `openid email profile` with PKCE S256, a nonce and a state, and `prompt`.
    pub fn authorization(&self, prompt: Option<CoreAuthPrompt>) -> Authorization {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self
            .client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge);
        if let Some(prompt) = prompt {
            request = request.add_prompt(prompt);
        }
        let (url, state, nonce) = request.url();
        Authorization { url, state, nonce, verifier: verifier.secret().clone() }
    }

    /// Redeems a code at the token endpoint, with `verifier` (or none).
    pub async fn redeem(&self, code: &str, verifier: Option<PkceCodeVerifier>) -> Result<Tokens, TokenError> {
        let mut request = self.client.exchange_code(AuthorizationCode::new(code.to_owned())).unwrap();
        if let Some(verifier) = verifier {
            request = request.set_pkce_verifier(verifier);
        }
        request.request_async(&self.http).await
    }

    /// The ID token verifier, on the service's clock (the tests' clock is not the wall clock).
    pub fn verifier(&self) -> CoreIdTokenVerifier<'_> {
        let clock = self.clock.clone();
        self.client.id_token_verifier().set_time_fn(move || clock.now())
    }

    /// Verifies the token response as a relying party must (OIDC Core §3.1.3.7): the ID token's
    /// signature against the JWKS, `iss`, `aud`, expiry, `nonce`, and `at_hash` against the access
    /// token.
    pub fn verify(&self, tokens: &Tokens, nonce: &Nonce) -> IdTokenClaims {
        let id_token = tokens.id_token().expect("an ID token");
        self.verify_id_token(id_token, nonce, Some(tokens.access_token()))
    }

    pub fn verify_id_token(
        &self,
        id_token: &IdToken,
        nonce: &Nonce,
        access: Option<&AccessToken>,
    ) -> IdTokenClaims {
        let verifier = self.verifier();
        let claims =
            id_token.claims(&verifier, nonce).unwrap_or_else(|e| panic!("the ID token: {e:?}")).clone();
        if let Some(access) = access {
            let alg = id_token.signing_alg().unwrap();
            let key = id_token.signing_key(&verifier).unwrap();
            let expected = AccessTokenHash::from_token(access, alg, key).unwrap();
            assert_eq!(claims.access_token_hash(), Some(&expected), "at_hash");
        }
        claims
    }

    /// The userinfo endpoint's answer for `access`, which must be about `sub`.
    pub async fn userinfo(
        &self,
        access: &AccessToken,
        sub: Option<&SubjectIdentifier>,
    ) -> Result<UserInfo, UserInfoError<io::Error>> {
        self.client.user_info(access.clone(), sub.cloned()).unwrap().request_async(&self.http).await
    }

    /// Where the host sends the browser to end the session.
    pub fn end_session_url(&self) -> openidconnect::EndSessionUrl {
        self.metadata.additional_metadata().end_session_endpoint.clone().expect("an end_session_endpoint")
    }

    /// The `kid` an ID token was signed with.
    pub fn kid(id_token: &IdToken) -> String {
        let header = id_token.to_string().split('.').next().unwrap().to_owned();
        let header: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
        )
        .unwrap();
        header["kid"].as_str().expect("a kid").to_owned()
    }
}

/// The error code of a refused token request.
pub fn error_of(refused: &TokenError) -> Option<&CoreErrorResponseType> {
    match refused {
        RequestTokenError::ServerResponse(response) => Some(response.error()),
        _ => None,
    }
}

/// The HTTP status of a refused userinfo request.
pub fn status_of(refused: &UserInfoError<io::Error>) -> Option<u16> {
    match refused {
        UserInfoError::Response(status, _, _) => Some(status.as_u16()),
        _ => None,
    }
}
