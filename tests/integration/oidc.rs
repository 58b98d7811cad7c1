//! The plugin as each shop's OpenID Provider (contract §8), tested from the host's side with a
//! certified relying-party library (`host`) and a browser that follows only our own redirects.
//!
//! Here: a whole sign-in, what `email_verified` says, and where our own pages send a customer.
//! The refusals, the entitlement, logout and key rotation have their own files.

mod entitlement;
mod fixtures;
mod host;
mod keys;
mod logout;
mod prompts;
mod refusals;

use chrono::TimeDelta;
use openidconnect::{JsonWebKey, OAuth2TokenResponse, TokenResponse};

use self::{
    fixtures::*,
    host::{Host, HostIds, IdTokenClaims, PORTAL_BASE, UserInfo},
};
use crate::{helpers::*, web::*};

crate::on_both_databases!(
    a_host_signs_a_customer_in_through_the_login_page,
    a_customer_with_a_session_is_signed_in_at_once_as_the_same_subject,
    userinfo_takes_the_token_in_a_form_body_too,
    email_verified_says_whether_a_link_to_the_current_address_was_used,
    our_own_pages_send_the_customer_on_to_the_hosts_portal,
);

/// What a sign-in says about the customer, read the same way from the ID token and from userinfo.
#[derive(Debug, PartialEq, Eq)]
struct Said {
    sub: String,
    ids: HostIds,
    email: Option<String>,
    email_verified: Option<bool>,
    name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    locale: Option<String>,
}

macro_rules! said {
    ($claims:expr) => {{
        let c = $claims;
        Said {
            sub: c.subject().to_string(),
            ids: c.additional_claims().clone(),
            email: c.email().map(|e| e.to_string()),
            email_verified: c.email_verified(),
            name: c.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
            given_name: c.given_name().and_then(|n| n.get(None)).map(|n| n.to_string()),
            family_name: c.family_name().and_then(|n| n.get(None)).map(|n| n.to_string()),
            locale: c.locale().map(|l| l.to_string()),
        }
    }};
}

fn in_id_token(claims: &IdTokenClaims) -> Said {
    said!(claims)
}

fn at_userinfo(claims: &UserInfo) -> Said {
    said!(claims)
}

/// Signs in by `web` (which has a session at the shop) and returns what the ID token and userinfo
/// said, after checking they agree.
async fn what_a_sign_in_says(host: &Host, web: &mut Web) -> Said {
    let (tokens, claims, _) = signed_in(host, web).await;
    let userinfo = host.userinfo(tokens.access_token(), Some(claims.subject())).await.unwrap();
    assert_eq!(at_userinfo(&userinfo), in_id_token(&claims), "userinfo and the ID token disagree");
    in_id_token(&claims)
}

async fn a_host_signs_a_customer_in_through_the_login_page(app: TestApp) {
    jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;

    // The host sends the browser to us; without a session it lands on our login page, whose form
    // carries the request on, and after the login the browser goes back to the host with a code.
    let request = host.authorization(None);
    let mut browser = Web::new(&app);
    let handle = login_handle(&browser.get(request.url.as_str()).await, "shop_1");
    let back = log_in_and_continue(&mut browser, "shop_1", &handle, EMAIL, PASSWORD).await;
    let code = Callback::of(&back).code_for(&host, &request);

    let tokens = host.redeem(&code, Some(request.verifier())).await.expect("the code is redeemed");
    assert_eq!(*tokens.token_type(), openidconnect::core::CoreTokenType::Bearer);
    assert!(tokens.refresh_token().is_none(), "no refresh tokens: the host asks again with prompt=none");
    let claims = host.verify(&tokens, &request.nonce);
    assert_eq!(claims.issuer().as_str(), host.issuer);
    assert_eq!(
        claims.audiences().iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        ["customer-portal-invitations"]
    );
    assert_eq!(claims.authorized_party().map(|p| p.as_str()), Some("customer-portal-invitations"));
    assert_eq!(claims.issue_time(), app.clock.now());
    assert_eq!(claims.expiration(), app.clock.now() + TimeDelta::minutes(10));
    assert_eq!(claims.auth_time(), Some(app.clock.now()), "logged in just now");
    let id_token = tokens.id_token().unwrap();
    let kid = Host::kid(id_token);
    assert!(
        host.metadata.jwks().keys().iter().any(|k| k.key_id().map(|id| id.as_str()) == Some(kid.as_str()))
    );

    let said = in_id_token(&claims);
    let expected = Said {
        sub: account_id(&app, "cus_1").await,
        ids: HostIds { shop_id: "shop_1".into(), customer_id: "cus_1".into() },
        email: Some(EMAIL.into()),
        // The password was set with the link emailed to this address.
        email_verified: Some(true),
        name: Some("Jana Kowalski".into()),
        given_name: Some("Jana".into()),
        family_name: Some("Kowalski".into()),
        locale: Some("en-AU".into()),
    };
    assert_eq!(said, expected);
    let userinfo = host.userinfo(tokens.access_token(), Some(claims.subject())).await.expect("userinfo");
    assert_eq!(at_userinfo(&userinfo), expected);

    // The ID token is good for ten minutes, not a second more.
    app.advance(TimeDelta::minutes(10) - TimeDelta::seconds(1));
    host.verify_id_token(id_token, &request.nonce, None);
    app.advance(TimeDelta::seconds(1));
    let expired = id_token.claims(&host.verifier(), &request.nonce).unwrap_err();
    assert!(matches!(expired, openidconnect::ClaimsVerificationError::Expired(_)), "{expired:?}");
}

async fn a_customer_with_a_session_is_signed_in_at_once_as_the_same_subject(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    let first = what_a_sign_in_says(&host, &mut web).await;
    app.advance(TimeDelta::minutes(20));
    let (_, claims, _) = signed_in(&host, &mut web).await;
    assert_eq!(in_id_token(&claims), first, "the same customer, the same claims");
    assert_eq!(claims.auth_time(), Some(start_time()), "auth_time is when they logged in, not now");
}

async fn email_verified_says_whether_a_link_to_the_current_address_was_used(app: TestApp) {
    install_with_portal(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;

    // Invited by SMS: the set-up link proves the phone, not the mailbox.
    let ola = customer("cus_2", Some("ola@example.com"), Some(MOBILE), 1);
    assert_eq!(code(&app.submit("shop_1", &ola, "int_ola", "sms").await), "invitation_sent");
    let text =
        std::fs::read_to_string(app.outbox_files().iter().find(|p| p.extension().unwrap() == "sms").unwrap())
            .unwrap();
    let link = link_in(&text, "/p/shop_1/setup/").expect("a set-up link in the SMS");
    let mut by_sms = set_up(&app, &link).await;
    let said = what_a_sign_in_says(&host, &mut by_sms).await;
    assert_eq!((said.email.as_deref(), said.email_verified), (Some("ola@example.com"), Some(false)));

    // Invited by email: the set-up link went to the address.
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut jana = set_up(&app, &link).await;
    let before = what_a_sign_in_says(&host, &mut jana).await;
    assert_eq!((before.email.as_deref(), before.email_verified), (Some(EMAIL), Some(true)));

    // The host changes her email: the new address is unproven, and she is still the same subject.
    let new_email = "jana.k@example.com";
    app.deliver(&customer_updated("shop_1", "cus_1", 2, new_email)).await;
    let mut again = Web::new(&app);
    let request = host.authorization(None);
    let handle = login_handle(&again.get(request.url.as_str()).await, "shop_1");
    let back = log_in_and_continue(&mut again, "shop_1", &handle, new_email, PASSWORD).await;
    let tokens =
        host.redeem(&Callback::of(&back).code_for(&host, &request), Some(request.verifier())).await.unwrap();
    let after = in_id_token(&host.verify(&tokens, &request.nonce));
    assert_eq!((after.email.as_deref(), after.email_verified), (Some(new_email), Some(false)));
    assert_eq!(after.sub, before.sub, "sub survives an email change");

    // A reset link sent to the new address, used, proves it.
    let sent = again.submit("/p/shop_1/forgot", &[("email", new_email)]).await;
    assert_eq!(sent.status, 200);
    let reset = reset_link_emailed(&app, "shop_1").await;
    let done = again
        .submit(&reset, &[("password", "green bicycle ninety"), ("confirmation", "green bicycle ninety")])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let proven = what_a_sign_in_says(&host, &mut again).await;
    assert_eq!((proven.email_verified, proven.sub), (Some(true), before.sub));
}

async fn our_own_pages_send_the_customer_on_to_the_hosts_portal(app: TestApp) {
    let portal_url = format!("{PORTAL_BASE}/shop_1");
    install_with_portal(&app, "shop_1").await;
    // shop_2's host runs no portal: it has no client, and customers stay on our pages.
    app.deliver(&installed("shop_2", 1)).await;
    for path in ["/p/shop_2/.well-known/openid-configuration", "/p/shop_2/oidc/jwks"] {
        assert_eq!(app.get(path).await.status(), 404, "{path}");
    }

    let fields = [("password", PASSWORD), ("confirmation", PASSWORD)];
    let our_home = format!("{}/p/shop_2", app.url);
    for (shop_id, landing) in [("shop_1", portal_url.as_str()), ("shop_2", our_home.as_str())] {
        let link = invite(&app, shop_id, "cus_1", EMAIL).await;
        let mut web = Web::new(&app);
        let set = web.submit(&link, &fields).await;
        assert_eq!(
            (set.status, set.header("location").as_deref()),
            (303, Some(landing)),
            "set-up at {shop_id}"
        );
        // A logged-in customer who opens the login page goes on as well.
        assert_eq!(
            web.get(&format!("/p/{shop_id}/login")).await.header("location").as_deref(),
            Some(landing)
        );

        let mut fresh = Web::new(&app);
        let login =
            fresh.submit(&format!("/p/{shop_id}/login"), &[("email", EMAIL), ("password", PASSWORD)]).await;
        assert_eq!(
            (login.status, login.header("location").as_deref()),
            (303, Some(landing)),
            "login at {shop_id}"
        );
    }

    let mut web = Web::new(&app);
    assert_eq!(web.submit("/p/shop_1/forgot", &[("email", EMAIL)]).await.status, 200);
    let reset = reset_link_emailed(&app, "shop_1").await;
    let done = web
        .submit(&reset, &[("password", "green bicycle ninety"), ("confirmation", "green bicycle ninety")])
        .await;
    assert_eq!((done.status, done.header("location")), (303, Some(portal_url)), "reset at shop_1");
}

async fn userinfo_takes_the_token_in_a_form_body_too(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    let (tokens, claims, _) = signed_in(&host, &mut web).await;
    let userinfo = format!("{}/oidc/userinfo", host.issuer);
    let http = reqwest::Client::new();
    // RFC 6750 §2.2: a POST may carry the token as the form field `access_token`.
    let answer = http
        .post(&userinfo)
        .form(&[("access_token", tokens.access_token().secret().as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["cache-control"], "no-store");
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["sub"], claims.subject().as_str());
    // A GET carries it only in the header: a query string would end up in logs and histories.
    let in_query =
        http.get(format!("{userinfo}?access_token={}", tokens.access_token().secret())).send().await.unwrap();
    assert_eq!(in_query.status(), 401);
}
