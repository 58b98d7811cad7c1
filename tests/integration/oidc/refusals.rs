//! What the provider refuses, as RFC 6749, RFC 7636 and contract §8 say: a code used twice (and what
//! the first use gave), PKCE, the client's credentials, an untrusted client or return address, an
//! expired code, and `prompt=none` without a session.

use chrono::TimeDelta;
use openidconnect::{
    OAuth2TokenResponse, PkceCodeVerifier,
    core::{CoreAuthPrompt, CoreErrorResponseType},
};
use portal_invites::signature::WebhookSecret;
use serde_json::Value;

use super::{
    fixtures::*,
    host::{CALLBACK, Host, error_of, status_of},
};
use crate::{helpers::*, web::*};

crate::on_both_databases!(
    a_code_works_once_and_a_second_use_revokes_what_the_first_gave,
    the_code_verifier_must_match_the_challenge,
    only_s256_challenges_are_accepted,
    an_unknown_client_or_return_address_gets_a_page_and_no_redirect,
    the_client_authenticates_with_the_signing_secret_encoded_or_not,
    a_code_lives_sixty_seconds,
    prompt_none_without_a_session_answers_login_required,
);

/// `GET {issuer}/oidc/userinfo` with `authorization`: the status and the `WWW-Authenticate` header.
async fn userinfo_raw(app: &TestApp, host: &Host, authorization: Option<String>) -> (u16, Option<String>) {
    let mut request = app.client.get(format!("{}/oidc/userinfo", host.issuer));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), challenge)
}

async fn a_code_works_once_and_a_second_use_revokes_what_the_first_gave(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    let (code, request) = a_code(&host, &mut web, None).await;
    let tokens = host.redeem(&code, Some(request.verifier())).await.unwrap();
    let access = tokens.access_token();
    assert!(host.userinfo(access, None).await.is_ok());

    let again = host.redeem(&code, Some(request.verifier())).await.unwrap_err();
    assert_eq!(error_of(&again), Some(&CoreErrorResponseType::InvalidGrant), "{again:?}");
    // Whoever replayed the code may have stolen it: the first redemption's token is dead too.
    let refused = host.userinfo(access, None).await.unwrap_err();
    assert_eq!(status_of(&refused), Some(401), "{refused:?}");
    let (status, challenge) = userinfo_raw(&app, &host, Some(format!("Bearer {}", access.secret()))).await;
    assert_eq!(status, 401);
    let challenge = challenge.expect("WWW-Authenticate");
    assert!(challenge.starts_with(&format!("Bearer realm=\"{}\"", host.issuer)), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    // No token at all: a challenge without an error code (RFC 6750 §3.1).
    let (status, challenge) = userinfo_raw(&app, &host, None).await;
    assert_eq!((status, challenge), (401, Some(format!("Bearer realm=\"{}\"", host.issuer))));
    assert_eq!(app.logs.count("code_replayed"), 1);
}

async fn the_code_verifier_must_match_the_challenge(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    let (code, request) = a_code(&host, &mut web, None).await;

    let missing = host.redeem(&code, None).await.unwrap_err();
    assert_eq!(error_of(&missing), Some(&CoreErrorResponseType::InvalidRequest), "{missing:?}");
    let someone_elses = PkceCodeVerifier::new("x".repeat(43));
    let wrong = host.redeem(&code, Some(someone_elses)).await.unwrap_err();
    assert_eq!(error_of(&wrong), Some(&CoreErrorResponseType::InvalidGrant), "{wrong:?}");
    // A wrong verifier uses the code up, so verifiers cannot be tried one after another.
    let right = host.redeem(&code, Some(request.verifier())).await.unwrap_err();
    assert_eq!(error_of(&right), Some(&CoreErrorResponseType::InvalidGrant), "{right:?}");

    // A fresh code with its own verifier works.
    let (code, request) = a_code(&host, &mut web, None).await;
    assert!(host.redeem(&code, Some(request.verifier())).await.is_ok());
}

async fn only_s256_challenges_are_accepted(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    let request = host.authorization(None);
    for method in [Some("plain"), None, Some("S512")] {
        let url = request.with_param("code_challenge_method", method);
        let refused = Callback::of(&web.get(&url).await);
        assert_eq!(refused.error_for(&host, &request), "invalid_request", "code_challenge_method={method:?}");
    }
    let without_challenge = request.with_param("code_challenge", None);
    assert_eq!(
        Callback::of(&web.get(&without_challenge).await).error_for(&host, &request),
        "invalid_request"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM oidc_grants").await, 0, "no code was issued");
}

async fn an_unknown_client_or_return_address_gets_a_page_and_no_redirect(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    let request = host.authorization(None);
    for (name, value, says) in [
        ("redirect_uri", Some("https://attacker.example/callback"), "an address this portal does not know"),
        ("redirect_uri", Some(&format!("{CALLBACK}/")[..]), "an address this portal does not know"),
        ("redirect_uri", None, "an address this portal does not know"),
        ("client_id", Some("someone-else"), "an application this portal does not know"),
        ("client_id", None, "an application this portal does not know"),
    ] {
        let page = web.get(&request.with_param(name, value)).await;
        assert_eq!(page.status, 400, "{name}={value:?}: {}", page.body);
        assert_eq!(page.header("location"), None, "{name}={value:?}");
        assert!(page.body.contains(says), "{name}={value:?}: {}", page.body);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM oidc_grants").await, 0, "no code was issued");
}

/// `POST {issuer}/oidc/token` with Basic credentials sent as given (not form-encoded).
async fn token_raw(
    app: &TestApp,
    host: &Host,
    secret: &str,
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier),
    ];
    app.client
        .post(format!("{}/oidc/token", host.issuer))
        .basic_auth("customer-portal-invitations", Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&fields))
        .send()
        .await
        .unwrap()
}

async fn the_client_authenticates_with_the_signing_secret_encoded_or_not(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    // The library form-encodes the secret before Basic encoding (RFC 6749 §2.3.1), as every other
    // sign-in here does; a whsec_ secret always ends in `=`, so the two spellings differ.
    assert!(app.secret_text.ends_with('='));
    let (code, request) = a_code(&host, &mut web, None).await;

    let stranger = Host::with_secret(&app, "shop_1", &WebhookSecret::generate()).await;
    let refused = stranger.redeem(&code, Some(request.verifier())).await.unwrap_err();
    assert_eq!(error_of(&refused), Some(&CoreErrorResponseType::InvalidClient), "{refused:?}");
    let wrong = token_raw(&app, &host, &WebhookSecret::generate(), &code, &request.verifier).await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("www-authenticate").is_some(), "401 invalid_client names its scheme");
    assert_eq!(wrong.json::<Value>().await.unwrap()["error"], "invalid_client");

    // The secret as-is, the way many libraries send it, is accepted as well; the code was not spent
    // by the unauthenticated attempts.
    let accepted = token_raw(&app, &host, &app.secret_text, &code, &request.verifier).await;
    assert_eq!(accepted.status(), 200);
    let headers = accepted.headers().clone();
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    assert_eq!(headers.get("pragma").unwrap(), "no-cache");
    let body: Value = accepted.json().await.unwrap();
    assert_eq!(
        (body["token_type"].as_str(), body["scope"].as_str()),
        (Some("Bearer"), Some("openid email profile"))
    );
    assert!(body["id_token"].is_string() && body["access_token"].is_string(), "{body}");
}

async fn a_code_lives_sixty_seconds(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    let (code, request) = a_code(&host, &mut web, None).await;
    app.advance(TimeDelta::seconds(59));
    assert!(host.redeem(&code, Some(request.verifier())).await.is_ok(), "good for a minute");

    let (code, request) = a_code(&host, &mut web, None).await;
    app.advance(TimeDelta::seconds(61));
    let expired = host.redeem(&code, Some(request.verifier())).await.unwrap_err();
    assert_eq!(error_of(&expired), Some(&CoreErrorResponseType::InvalidGrant), "{expired:?}");
}

async fn prompt_none_without_a_session_answers_login_required(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    let request = host.authorization(Some(CoreAuthPrompt::None));
    let mut stranger = Web::new(&app);
    let answer = Callback::of(&stranger.get(request.url.as_str()).await);
    assert_eq!(answer.error_for(&host, &request), "login_required");
    // With the session, the same kind of request gets a code without showing anything.
    let (code, request) = a_code(&host, &mut web, Some(CoreAuthPrompt::None)).await;
    assert!(host.redeem(&code, Some(request.verifier())).await.is_ok());
}
