//! The customer's side, as a customer meets it: set up the password from the invitation, the home
//! page, logging in and out, a forgotten password, and the portal of a shop that stopped serving it.

use chrono::TimeDelta;
use serde_json::json;

use crate::{helpers::*, web::*};

crate::on_both_databases!(
    opening_the_set_up_link_shows_the_form_and_uses_nothing,
    setting_the_password_logs_the_customer_in,
    a_refused_password_says_why_and_keeps_the_link,
    a_used_expired_or_unknown_link_gets_a_friendly_page,
    the_link_expires_exactly_at_its_deadline,
    of_twenty_simultaneous_submissions_exactly_one_wins,
    logging_in_and_out,
    a_forgotten_password_is_reset_through_the_emailed_link,
    an_invited_customer_who_never_set_a_password_can_use_forgot_password,
    reset_links_are_capped_per_hour,
    the_portal_of_a_shop_that_stopped_serving_it_says_whom_to_contact,
    each_shop_has_its_own_portal,
);

async fn wait_for_emails(app: &TestApp, count: usize) -> Vec<(String, String)> {
    let enough = poll(200, std::time::Duration::from_millis(50), || {
        let all = emails(app);
        async move { (all.len() >= count).then_some(all) }
    });
    enough.await.unwrap_or_else(|| panic!("expected {count} emails, got {}", emails(app).len()))
}

async fn opening_the_set_up_link_shows_the_form_and_uses_nothing(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut scanner = Web::new(&app);
    for _ in 0..3 {
        let page = scanner.get(&link).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("Set up your password"));
        assert!(page.body.contains(&format!("value=\"{EMAIL}\" readonly")), "the username, read-only");
        assert!(page.body.contains("At least 8 characters"), "the rules up front");
        assert!(!page.body.contains("<script"), "nothing on the page submits by itself");
        assert_eq!(scanner.head(&link).await.status, 200);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM tokens WHERE used_at IS NULL AND purpose = 'setup'").await, 1);
    // The customer, after the scanner, can still use it.
    let web = set_up(&app, &link).await;
    assert!(web.cookies.contains_key("portal_session"));
}

async fn setting_the_password_logs_the_customer_in(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut web = Web::new(&app);
    let done = web.submit(&link, &[("password", PASSWORD), ("confirmation", PASSWORD)]).await;
    assert_eq!((done.status, done.location().as_deref()), (303, Some("/p/shop_1")));
    let home = web.get("/p/shop_1").await;
    assert_eq!(home.status, 200);
    for expected in ["Hello, Jana", "Jana Kowalski", "Southside Auto Care", EMAIL, "Log out"] {
        assert!(home.body.contains(expected), "{expected} missing");
    }
    let rows = app.rows("SELECT password_hash FROM portal_accounts").await;
    let hash: String = rows[0].try_get("", "password_hash").unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1);
}

async fn a_refused_password_says_why_and_keeps_the_link(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut web = Web::new(&app);
    for (password, confirmation, reason) in [
        ("short", "short", "at least 8 characters"),
        ("password123", "password123", "most common passwords"),
        ("jana rides a bike", "jana rides a bike", "email address"),
        ("Southside Auto Care 1", "Southside Auto Care 1", "shop's name"),
        ("blue tractor seven", "blue tractor eight", "don't match"),
    ] {
        let page = web.submit(&link, &[("password", password), ("confirmation", confirmation)]).await;
        assert_eq!(page.status, 422, "{password}");
        assert!(
            page.body.replace("&#39;", "'").contains(reason),
            "{password}: {reason} not in\n{}",
            page.body
        );
        assert!(page.body.contains("aria-invalid=\"true\""), "the error is tied to its field");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM tokens WHERE used_at IS NULL").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM portal_accounts WHERE password_hash IS NULL").await, 1);
}

async fn a_used_expired_or_unknown_link_gets_a_friendly_page(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;
    let mut web = Web::new(&app);
    let used = web.get(&link).await;
    assert_eq!(used.status, 404);
    for expected in
        ["This link no longer works", "Southside Auto Care", "/p/shop_1/login", "/p/shop_1/forgot"]
    {
        assert!(used.body.contains(expected), "{expected} missing");
    }
    let unknown = web.get("/p/shop_1/setup/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("Southside Auto Care"));
    let garbage = web.get("/p/shop_1/setup/not-a-token").await;
    assert_eq!(garbage.status, 404);
    let nowhere = web.get("/p/no_such_shop/setup/not-a-token").await;
    assert_eq!(nowhere.status, 404);
    assert!(nowhere.body.contains("Page not found"));

    let second = invite(&app, "shop_1", "cus_2", "ola@example.com").await;
    app.advance(TimeDelta::days(8));
    let expired = web.get(&second).await;
    assert_eq!(expired.status, 404);
    assert!(expired.body.contains("Forgot your password?"));
}

async fn the_link_expires_exactly_at_its_deadline(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut web = Web::new(&app);
    app.advance(TimeDelta::days(7) - TimeDelta::seconds(1));
    assert_eq!(web.get(&link).await.status, 200, "one second before");
    app.advance(TimeDelta::seconds(1));
    assert_eq!(web.get(&link).await.status, 404, "at the deadline");
}

async fn of_twenty_simultaneous_submissions_exactly_one_wins(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut web = Web::new(&app);
    let csrf = web.get(&link).await.csrf();
    let fields = [("csrf", csrf.as_str()), ("password", PASSWORD), ("confirmation", PASSWORD)];
    let statuses: Vec<u16> =
        web.post_at_once(&link, &fields, 20).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 303).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| [303, 404, 503].contains(s)), "{statuses:?}");
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1);
}

async fn logging_in_and_out(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;
    let mut web = Web::new(&app);
    assert_eq!(
        web.get("/p/shop_1").await.location().as_deref(),
        Some("/p/shop_1/login"),
        "home needs a login"
    );
    let login = web.get("/p/shop_1/login").await;
    assert!(
        login.body.contains("autocomplete=\"username\"")
            && login.body.contains("autocomplete=\"current-password\"")
    );
    // Usernames are compared normalised.
    let done =
        web.submit("/p/shop_1/login", &[("email", " Jana@Example.COM "), ("password", PASSWORD)]).await;
    assert_eq!((done.status, done.location().as_deref()), (303, Some("/p/shop_1")));
    assert_eq!(web.get("/p/shop_1").await.status, 200);
    // The login page sends a logged-in customer home.
    assert_eq!(web.get("/p/shop_1/login").await.location().as_deref(), Some("/p/shop_1"));

    let session_cookie = web.cookies["portal_session"].clone();
    let home = web.get("/p/shop_1").await;
    let out = web.post("/p/shop_1/logout", &[("csrf", &home.csrf())]).await;
    assert_eq!((out.status, out.location().as_deref()), (303, Some("/p/shop_1/login?notice=logged-out")));
    assert!(web.get("/p/shop_1/login?notice=logged-out").await.body.contains("You&#39;re logged out"));
    // The session ended on the server: the old cookie is worthless.
    let mut replay = Web::new(&app);
    replay.cookies.insert("portal_session".into(), session_cookie);
    assert_eq!(replay.get("/p/shop_1").await.status, 303);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1, "only the set-up session remains");
}

async fn a_forgotten_password_is_reset_through_the_emailed_link(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut elsewhere = set_up(&app, &link).await;
    let mut web = Web::new(&app);
    let sent = web.submit("/p/shop_1/forgot", &[("email", EMAIL)]).await;
    assert_eq!(sent.status, 200);
    assert!(sent.body.contains("Check your email") && sent.body.contains("1 hour"));

    let all = wait_for_emails(&app, 2).await;
    let (subject, text) = &all[1];
    assert_eq!(subject, "Southside Auto Care: reset your Customer Portal password");
    let reset = link_in(text, "/p/shop_1/reset/").expect("a reset link");
    assert!(text.contains("AEST (Australia/Brisbane)"));
    let page = web.get(&reset).await;
    assert!(page.body.contains("Choose a new password"));
    let done = web
        .submit(&reset, &[("password", "green bicycle ninety"), ("confirmation", "green bicycle ninety")])
        .await;
    assert_eq!(done.status, 303);
    assert_eq!(web.get("/p/shop_1").await.status, 200);

    // Every other session ended, and a "password changed" email went out.
    assert_eq!(elsewhere.get("/p/shop_1").await.status, 303);
    let all = wait_for_emails(&app, 3).await;
    assert_eq!(all[2].0, "Southside Auto Care: your Customer Portal password was changed");
    // The old password no longer works; the new one does.
    let mut fresh = Web::new(&app);
    assert_eq!(
        fresh.submit("/p/shop_1/login", &[("email", EMAIL), ("password", PASSWORD)]).await.status,
        422
    );
    assert_eq!(
        fresh
            .submit("/p/shop_1/login", &[("email", EMAIL), ("password", "green bicycle ninety")])
            .await
            .status,
        303
    );
    // The reset link works once.
    assert_eq!(Web::new(&app).get(&reset).await.status, 404);
}

async fn an_invited_customer_who_never_set_a_password_can_use_forgot_password(app: TestApp) {
    invite(&app, "shop_1", "cus_1", EMAIL).await;
    app.advance(TimeDelta::days(10)); // the invitation's link has expired
    let mut web = Web::new(&app);
    web.submit("/p/shop_1/forgot", &[("email", EMAIL)]).await;
    let all = wait_for_emails(&app, 2).await;
    let reset = link_in(&all[1].1, "/p/shop_1/reset/").unwrap();
    assert_eq!(web.submit(&reset, &[("password", PASSWORD), ("confirmation", PASSWORD)]).await.status, 303);
    assert_eq!(web.get("/p/shop_1").await.status, 200);
}

async fn reset_links_are_capped_per_hour(app: TestApp) {
    invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut web = Web::new(&app);
    for _ in 0..5 {
        assert_eq!(web.submit("/p/shop_1/forgot", &[("email", EMAIL)]).await.status, 200);
    }
    wait_for_emails(&app, 4).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(emails(&app).len(), 1 + 3, "the invitation and three reset links");
    app.advance(TimeDelta::minutes(61));
    assert_eq!(web.submit("/p/shop_1/forgot", &[("email", EMAIL)]).await.status, 200);
    wait_for_emails(&app, 5).await;
}

async fn the_portal_of_a_shop_that_stopped_serving_it_says_whom_to_contact(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut web = set_up(&app, &link).await;
    let mut inactive = shop("shop_1", 2);
    inactive["customer_portal_active"] = json!(false);
    app.deliver(&shop_updated("shop_1", inactive)).await;
    for path in ["/p/shop_1", "/p/shop_1/login", "/p/shop_1/forgot"] {
        let page = web.get(path).await;
        assert_eq!(page.status, 503, "{path}");
        for expected in ["not available", "+61 7 3000 0000", "service@southside.example"] {
            assert!(page.body.contains(expected), "{path}: {expected}");
        }
    }
    let mut gold = shop("shop_1", 3);
    gold["subscription_tier"] = json!("platinum");
    app.deliver(&shop_updated("shop_1", gold)).await;
    assert_eq!(web.get("/p/shop_1").await.status, 200);
    app.deliver(&uninstalled("shop_1", SOMEONE, 60)).await;
    assert_eq!(web.get("/p/shop_1").await.status, 503);
    assert_eq!(Web::new(&app).get("/p/shop_1/login").await.status, 503);
}

async fn each_shop_has_its_own_portal(app: TestApp) {
    let first = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let second = invite(&app, "shop_2", "cus_1", EMAIL).await;
    // A link of one shop does not work under the other.
    let token = first.rsplit('/').next().unwrap();
    assert_eq!(Web::new(&app).get(&format!("/p/shop_2/setup/{token}")).await.status, 404);
    let mut web = set_up(&app, &first).await;
    let mut other = Web::new(&app);
    assert_eq!(other.submit(&second, &[("password", "a different secret")]).await.status, 422);
    assert_eq!(
        other
            .submit(
                &second,
                &[("password", "quiet harbour lights"), ("confirmation", "quiet harbour lights")]
            )
            .await
            .status,
        303
    );
    // Shop 1's session does not open shop 2's portal.
    assert_eq!(web.get("/p/shop_2").await.status, 303);
    // Each password works only at its own shop.
    let mut login = Web::new(&app);
    assert_eq!(
        login.submit("/p/shop_2/login", &[("email", EMAIL), ("password", PASSWORD)]).await.status,
        422
    );
    assert_eq!(
        login.submit("/p/shop_1/login", &[("email", EMAIL), ("password", PASSWORD)]).await.status,
        303
    );
}
