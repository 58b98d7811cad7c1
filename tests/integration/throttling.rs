//! The throttles under pressure: a burst of guesses the moment a wait ends, a stranger trying to keep
//! the owner out, a hundred failures in a row, a flood of reset requests, what a reset request
//! writes, and clients behind proxies.

use chrono::TimeDelta;
use portal_invites::accounts::throttle::Keys;

use crate::{helpers::*, web::*};

crate::with_each_backend!(
    a_burst_of_guesses_when_a_wait_ends_is_judged_once_not_in_full,
    the_owners_browser_gets_in_while_a_stranger_keeps_the_account_waiting,
    an_account_waits_a_day_after_a_hundred_failures_in_a_row,
    a_flood_of_reset_requests_from_one_client_is_cut_short,
    a_reset_request_for_an_unknown_address_writes_what_a_known_one_does,
    the_reset_limit_reads_every_forwarded_line_and_counts_an_ipv6_network_as_one_client,
);

async fn spawn(backend: Backend, env: &[(&str, &str)]) -> TestApp {
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    TestApp::spawn_with(backend, Options { env, ..Options::default() }).await.expect("backend available")
}

/// The service's throttle key, as the service derives it.
pub async fn throttle_keys(app: &TestApp) -> Keys {
    let key = portal_invites::db::keys::load_or_create(&app.db, "cookies", app.clock.now()).await.unwrap();
    Keys::derive(key.bytes())
}

/// The count on a throttle counter (0 when it has no row).
pub async fn counted(app: &TestApp, key: &str) -> i64 {
    app.count(&format!(
        "SELECT COALESCE(MAX(CAST(failures AS BIGINT)), 0) FROM login_throttles WHERE key = '{key}'"
    ))
    .await
}

/// A login attempt from `web` with the CSRF token it already holds.
async fn log_in(web: &mut Web, csrf: &str, email: &str, password: &str) -> Page {
    web.post("/p/shop_1/login", &[("csrf", csrf), ("email", email), ("password", password)]).await
}

fn retry_after(page: &Page) -> i64 {
    page.header("retry-after").expect("Retry-After").parse().unwrap()
}

async fn reset_rows(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM outbox WHERE kind = 'password_reset'").await
}

async fn a_burst_of_guesses_when_a_wait_ends_is_judged_once_not_in_full(backend: Backend) {
    // Room for the whole burst in the hasher's admission (6 per thread), so nobody gets a 503.
    let app = spawn(backend, &[("PORTAL_HASHING_LIMIT", "4")]).await;
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;
    let mut web = Web::new(&app);
    let csrf = web.get("/p/shop_1/login").await.csrf();
    for _ in 0..5 {
        assert_eq!(log_in(&mut web, &csrf, EMAIL, "not it at all").await.status, 422);
    }
    assert_eq!(log_in(&mut web, &csrf, EMAIL, "not it at all").await.status, 429);
    app.advance(TimeDelta::seconds(2));

    // The wait is over: 24 guesses arrive at once.
    let fields = [("csrf", csrf.as_str()), ("email", EMAIL), ("password", "not it at all")];
    let statuses: Vec<u16> =
        web.post_at_once("/p/shop_1/login", &fields, 24).await.iter().map(|r| r.status().as_u16()).collect();
    let judged = statuses.iter().filter(|s| **s == 422).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((judged, throttled), (1, 23), "one guess judged, the rest told to wait: {statuses:?}");
    let key = throttle_keys(&app).await.account("shop_1", EMAIL);
    assert_eq!(counted(&app, &key).await, 6, "five failures before the wait and one after it");
    assert!(app.logs.count("event=\"login_throttled\"") >= 23, "each refusal is a security event");
}

async fn the_owners_browser_gets_in_while_a_stranger_keeps_the_account_waiting(backend: Backend) {
    let app = spawn(backend, &[]).await;
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;
    // The owner logs in on their phone, which remembers it; later the session ends by itself.
    let mut owner = Web::new(&app);
    let logged_in = owner.submit("/p/shop_1/login", &[("email", EMAIL), ("password", PASSWORD)]).await;
    assert_eq!(logged_in.status, 303);
    cookie_with(
        logged_in.set_cookies(),
        "portal_device=",
        &["; Max-Age=31536000", "; HttpOnly", "; SameSite=Lax", "; Path=/"],
    );
    app.advance(TimeDelta::minutes(31));

    // A stranger guesses until everyone without that cookie must wait.
    let mut stranger = Web::new(&app);
    let csrf = stranger.get("/p/shop_1/login").await.csrf();
    for _ in 0..5 {
        assert_eq!(log_in(&mut stranger, &csrf, EMAIL, "is it this").await.status, 422);
    }
    assert_eq!(log_in(&mut stranger, &csrf, EMAIL, "or this").await.status, 429);
    let mut new_phone = Web::new(&app);
    let refused = new_phone.submit("/p/shop_1/login", &[("email", EMAIL), ("password", PASSWORD)]).await;
    assert_eq!(refused.status, 429, "a browser that never logged in waits, even with the right password");

    // The owner's browser is not held up by the stranger's failures.
    let back = owner.submit("/p/shop_1/login", &[("email", EMAIL), ("password", PASSWORD)]).await;
    assert_eq!(back.status, 303, "{}", back.body);
    assert_eq!(owner.get("/p/shop_1").await.status, 200);

    // It has a limit of its own: a browser holding the owner's cookie cannot guess on forever.
    let mut borrowed = Web::new(&app);
    borrowed.cookies.insert("portal_device".into(), owner.cookies["portal_device"].clone());
    let csrf = borrowed.get("/p/shop_1/login").await.csrf();
    for _ in 0..5 {
        assert_eq!(log_in(&mut borrowed, &csrf, EMAIL, "guessing again").await.status, 422);
    }
    let waits = log_in(&mut borrowed, &csrf, EMAIL, PASSWORD).await;
    assert_eq!((waits.status, retry_after(&waits)), (429, 1));
    assert_eq!(app.logs.count("limit=\"device\""), 1);
    // And a cookie for one account does nothing for another.
    let ghost = log_in(&mut borrowed, &csrf, "ghost@example.com", "x").await;
    assert_eq!(ghost.status, 422, "judged on the account and address counters, which are not waiting");
}

async fn an_account_waits_a_day_after_a_hundred_failures_in_a_row(backend: Backend) {
    let app = spawn(backend, &[]).await;
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;
    let mut attacker = Web::new(&app);
    let csrf = attacker.get("/p/shop_1/login").await.csrf();
    let mut failures = 0;
    for _ in 0..400 {
        if failures == 100 {
            break;
        }
        let page = log_in(&mut attacker, &csrf, EMAIL, "still guessing").await;
        match page.status {
            422 => failures += 1,
            429 => app.advance(TimeDelta::seconds(retry_after(&page))),
            other => panic!("unexpected {other}: {}", page.body),
        }
    }
    assert_eq!(failures, 100);
    // The hundredth failure in a row makes the account wait a day, even for the right password.
    let mut new_phone = Web::new(&app);
    let csrf = new_phone.get("/p/shop_1/login").await.csrf();
    let locked = log_in(&mut new_phone, &csrf, EMAIL, PASSWORD).await;
    assert_eq!((locked.status, retry_after(&locked)), (429, 24 * 3600));
    app.advance(TimeDelta::hours(23));
    assert_eq!(log_in(&mut new_phone, &csrf, EMAIL, PASSWORD).await.status, 429);
    app.advance(TimeDelta::hours(1));
    assert_eq!(log_in(&mut new_phone, &csrf, EMAIL, PASSWORD).await.status, 303);
}

async fn a_flood_of_reset_requests_from_one_client_is_cut_short(backend: Backend) {
    let app = spawn(backend, &[]).await;
    invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut web = Web::new(&app);
    let csrf = web.get("/p/shop_1/forgot").await.csrf();
    let mut statuses = Vec::new();
    let mut last = None;
    for n in 0..20 {
        // A different customer each time: the limit is on the client, not on the address asked for.
        let email = if n == 0 { EMAIL.to_owned() } else { format!("customer{n}@example.com") };
        let page = web.post("/p/shop_1/forgot", &[("csrf", &csrf), ("email", &email)]).await;
        statuses.push(page.status);
        last = Some(page);
    }
    let refused = last.unwrap();
    assert!(refused.body.contains("Too many reset requests") && refused.body.contains("check your inbox"));
    assert_eq!(&statuses[..5], &[200; 5], "five free");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(reset_rows(&app).await, 5, "only the first five queued anything");
    assert_eq!(app.logs.count("event=\"forgot_throttled\""), 15);
    // An hour later the client may ask again.
    app.advance(TimeDelta::minutes(61));
    assert_eq!(web.post("/p/shop_1/forgot", &[("csrf", &csrf), ("email", EMAIL)]).await.status, 200);
    assert_eq!(reset_rows(&app).await, 6);
}

async fn a_reset_request_for_an_unknown_address_writes_what_a_known_one_does(backend: Backend) {
    let app = spawn(backend, &[]).await;
    invite(&app, "shop_1", "cus_1", EMAIL).await;
    let outbox_before = app.count("SELECT COUNT(*) FROM outbox").await;
    let tokens_before = app.count("SELECT COUNT(*) FROM tokens").await;
    let mut web = Web::new(&app);
    let known = web.submit("/p/shop_1/forgot", &[("email", EMAIL)]).await;
    assert_eq!(known.status, 200);
    assert_eq!(reset_rows(&app).await, 1);
    let unknown = web.submit("/p/shop_1/forgot", &[("email", "Stranger@Example.com")]).await;
    assert_eq!(unknown.status, 200);
    assert_eq!(reset_rows(&app).await, 2, "one outbox row for each request, account or not");
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox").await, outbox_before + 2, "and nothing else queued");
    assert_eq!(
        known.body.replace(EMAIL, "EMAIL"),
        unknown.body.replace("Stranger@Example.com", "EMAIL"),
        "the same answer"
    );
    // The sender decides afterwards: a link for the account, and the stranger's row cancelled with
    // no token minted for it.
    app.eventually("the sender decided both requests", || async {
        app.count("SELECT COUNT(*) FROM tokens").await == tokens_before + 1
            && app.count("SELECT COUNT(*) FROM outbox WHERE kind = 'password_reset' AND status = 'cancelled' AND token_id IS NULL").await == 1
    })
    .await;
}

async fn the_reset_limit_reads_every_forwarded_line_and_counts_an_ipv6_network_as_one_client(
    backend: Backend,
) {
    let app = spawn(backend, &[("PORTAL_TRUSTED_PROXIES", "127.0.0.1")]).await;
    app.deliver(&installed("shop_1", 1)).await;
    let mut web = Web::new(&app);
    let csrf = web.get("/p/shop_1/forgot").await.csrf();
    // One client of an IPv6 network, using a new address each time and claiming yet another in a
    // line of its own; the proxy adds the address it saw on a second line.
    let ask = |n: u32| {
        let claimed = format!("198.51.100.{n}");
        let seen = format!("2001:db8:1:2::{n:x}");
        (claimed, seen)
    };
    for n in 1..=6 {
        let (claimed, seen) = ask(n);
        let page = web
            .post_with(
                "/p/shop_1/forgot",
                &[("csrf", &csrf), ("email", EMAIL)],
                &[("x-forwarded-for", &claimed), ("x-forwarded-for", &seen)],
            )
            .await;
        assert_eq!(page.status, if n <= 5 { 200 } else { 429 }, "request {n}");
    }
    // Another network behind the same proxy is not held up.
    let other = web
        .post_with(
            "/p/shop_1/forgot",
            &[("csrf", &csrf), ("email", EMAIL)],
            &[("x-forwarded-for", "2001:db8:1:3::1")],
        )
        .await;
    assert_eq!(other.status, 200);
}
