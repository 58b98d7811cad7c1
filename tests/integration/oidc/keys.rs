//! Rotating the ID token signing key (`portal-invites keys rotate`, `KeyRing::rotate`): the new key is
//! published before it signs, long enough that a relying party's cached JWKS lists it when its first
//! token arrives, and the old key stays published while a token it signed may still be valid.

use chrono::TimeDelta;
use openidconnect::TokenResponse;
use portal_invites::identity::{KeyRing, keys::PUBLISH_LEAD};
use serde_json::Value;

use super::{
    fixtures::*,
    host::{Host, IdToken},
};
use crate::{helpers::*, web::*};

crate::on_both_databases!(
    a_rotated_key_is_published_before_it_signs_and_the_old_one_after,
    keys_rotate_on_the_command_line_publishes_a_new_key,
);

/// The JWKS as a relying party fetches it: the key ids, and how long it may keep the copy.
async fn jwks(app: &TestApp) -> (Vec<String>, TimeDelta) {
    let response = app.get("/p/shop_1/oidc/jwks").await;
    assert_eq!(response.status(), 200);
    let cache = response.headers().get("cache-control").unwrap().to_str().unwrap().to_owned();
    let max_age = cache
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no max-age in {cache}"));
    let body: Value = response.json().await.unwrap();
    let kids =
        body["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
    (kids, TimeDelta::seconds(max_age))
}

/// A fresh ID token, as `host` receives it after a sign-in by `web`.
async fn an_id_token(host: &Host, web: &mut Web) -> (IdToken, openidconnect::Nonce) {
    let (tokens, _, request) = signed_in(host, web).await;
    (tokens.id_token().unwrap().clone(), request.nonce)
}

async fn a_rotated_key_is_published_before_it_signs_and_the_old_one_after(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    let (before, before_nonce) = an_id_token(&host, &mut web).await;
    let old = Host::kid(&before);
    assert_eq!(jwks(&app).await.0, std::slice::from_ref(&old));

    // The rotation runs elsewhere (the command line, another instance), on the same database. The
    // service read its keys just now, so it is as late as it can be in noticing.
    app.advance(TimeDelta::minutes(1));
    jwks(&app).await;
    let rotated_at = app.clock.now();
    let ring = KeyRing::open(app.db.clone(), rotated_at).await.unwrap();
    let (new, signs_from) = ring.rotate(rotated_at).await.unwrap();
    assert_eq!(signs_from, rotated_at + PUBLISH_LEAD);
    assert_eq!(Host::kid(&an_id_token(&host, &mut web).await.0), old, "the new key does not sign yet");

    // A relying party that fetched the JWKS at any moment after the rotation, and keeps its copy as
    // long as it was told, verifies every ID token it receives meanwhile with that copy. (Each
    // relying party fetches first, then uses its copy until it expires: the clock only moves on.)
    let mut relying_parties = Vec::new();
    for fetched_after in [0, 29, 30].map(TimeDelta::seconds) {
        app.clock.set(rotated_at + fetched_after);
        let (_, max_age) = jwks(&app).await;
        relying_parties.push((fetched_after + max_age, Host::discover(&app, "shop_1").await));
    }
    for (copy_expires, relying_party) in relying_parties {
        app.clock.set(rotated_at + copy_expires - TimeDelta::seconds(1));
        an_id_token(&relying_party, &mut web).await;
    }
    assert_eq!(jwks(&app).await.0, [old.clone(), new.clone()], "both published once the service noticed");

    // From its time the new key signs; a relying party with a fresh copy verifies tokens of either.
    app.clock.set(signs_from);
    let refreshed = Host::discover(&app, "shop_1").await;
    let (after, _) = an_id_token(&refreshed, &mut web).await;
    assert_eq!(Host::kid(&after), new);
    refreshed.verify_id_token(&before, &before_nonce, None);

    // The last token the old key signed (just before `signs_from`) is valid for ten minutes; the old
    // key is published that long and a little longer, then no more.
    app.clock.set(signs_from + TimeDelta::minutes(10));
    assert_eq!(jwks(&app).await.0, [old.clone(), new.clone()]);
    app.clock.set(signs_from + TimeDelta::minutes(12) + TimeDelta::seconds(30));
    assert_eq!(jwks(&app).await.0, [new]);
}

async fn keys_rotate_on_the_command_line_publishes_a_new_key(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    let old = Host::kid(&an_id_token(&host, &mut web).await.0);

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal-invites"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PORTAL_")) {
        command.env_remove(key);
    }
    let output = command
        .args(["keys", "rotate"])
        .env("PORTAL_DATABASE_URL", app.database_url())
        .env("PORTAL_PUBLIC_URL", &app.url)
        .env("PORTAL_WEBHOOK_SECRETS", &app.secret_text)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let new = stdout
        .split_whitespace()
        .find(|w| w.starts_with("key_"))
        .unwrap_or_else(|| panic!("no key id in {stdout}"))
        .trim_end_matches(';')
        .to_owned();
    assert!(stdout.contains("signs ID tokens from"), "{stdout}");

    // The running service notices by itself within its refresh interval.
    app.advance(TimeDelta::seconds(30));
    assert_eq!(jwks(&app).await.0, [old.clone(), new]);
    // The command line ran on the wall clock, ahead of this test's: its key does not sign yet.
    assert_eq!(Host::kid(&an_id_token(&host, &mut web).await.0), old);
}
