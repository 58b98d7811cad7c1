//! The customer pages under attack: enumeration, guessing, fixation, forged forms, missing headers,
//! leaked tokens, floods, and what erasure must end.

use chrono::TimeDelta;

use crate::{helpers::*, web::*};

crate::on_both_databases!(
    every_failed_login_looks_the_same,
    guessing_is_throttled_per_account_and_slows_down_but_never_locks_out,
    a_session_id_planted_before_login_is_worthless_after_it,
    sessions_end_when_idle_and_at_their_absolute_limit,
    forms_without_a_valid_token_or_from_another_site_are_refused,
    forgot_password_answers_the_same_for_any_address,
    tokens_and_session_ids_appear_in_no_log_line_and_no_column,
    deleting_the_customer_ends_their_sessions_and_removes_their_password,
    an_old_hash_is_upgraded_at_login,
    logging_out_asks_the_browser_to_forget_our_cookies_and_storage,
);

async fn every_failed_login_looks_the_same(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;
    invite(&app, "shop_1", "cus_2", "nopassword@example.com").await;
    let mut pages = Vec::new();
    for (email, password) in [
        (EMAIL, "wrong password here"),
        ("nobody@example.com", "wrong password here"),
        ("nopassword@example.com", "wrong password here"),
    ] {
        let mut web = Web::new(&app);
        let page = web.submit("/p/shop_1/login", &[("email", email), ("password", password)]).await;
        pages.push((page.status, page.body_without_csrf().replace(email, "EMAIL")));
    }
    assert_eq!(pages[0].0, 422);
    assert!(pages[0].1.contains("don&#39;t match"));
    assert!(pages.iter().all(|p| *p == pages[0]), "an answer differs");
}

async fn guessing_is_throttled_per_account_and_slows_down_but_never_locks_out(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;
    let mut web = Web::new(&app);
    for _ in 0..5 {
        assert_eq!(
            web.submit("/p/shop_1/login", &[("email", EMAIL), ("password", "not it at all")]).await.status,
            422
        );
    }
    // Five failures are free; the next attempt must wait 1 s.
    let blocked = web.submit("/p/shop_1/login", &[("email", EMAIL), ("password", PASSWORD)]).await;
    assert_eq!(blocked.status, 429);
    assert_eq!(blocked.header("retry-after").as_deref(), Some("1"));
    assert!(blocked.body.contains("Too many attempts"));
    // An unknown username is throttled the same way (the throttle tells nothing about accounts).
    for _ in 0..5 {
        web.submit("/p/shop_1/login", &[("email", "ghost@example.com"), ("password", "x")]).await;
    }
    assert_eq!(
        web.submit("/p/shop_1/login", &[("email", "ghost@example.com"), ("password", "x")]).await.status,
        429
    );
    // Each further failure doubles the wait, up to five minutes.
    for _ in 0..20 {
        app.advance(TimeDelta::minutes(5));
        web.submit("/p/shop_1/login", &[("email", EMAIL), ("password", "not it at all")]).await;
    }
    let capped = web.submit("/p/shop_1/login", &[("email", EMAIL), ("password", PASSWORD)]).await;
    assert_eq!(capped.status, 429);
    assert_eq!(capped.header("retry-after").as_deref(), Some("300"));
    // Never a lock-out: after the wait, the right password gets in, and the streak is forgotten.
    app.advance(TimeDelta::minutes(5));
    assert_eq!(web.submit("/p/shop_1/login", &[("email", EMAIL), ("password", PASSWORD)]).await.status, 303);
    let key = crate::throttling::throttle_keys(&app).await.account("shop_1", EMAIL);
    assert_eq!(app.count(&format!("SELECT COUNT(*) FROM login_throttles WHERE key = '{key}'")).await, 0);
}

async fn a_session_id_planted_before_login_is_worthless_after_it(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;
    let planted = portal_invites::tokens::RawToken::generate();
    let mut web = Web::new(&app);
    web.cookies.insert("portal_session".into(), planted.as_str().to_owned());
    let csrf = web.get("/p/shop_1/login").await.csrf();
    let done =
        web.post("/p/shop_1/login", &[("csrf", &csrf), ("email", EMAIL), ("password", PASSWORD)]).await;
    assert_eq!(done.status, 303);
    assert_ne!(web.cookies["portal_session"], planted.as_str(), "a new id at login");
    let mut attacker = Web::new(&app);
    attacker.cookies.insert("portal_session".into(), planted.as_str().to_owned());
    assert_eq!(attacker.get("/p/shop_1").await.status, 303);
    // A logged-in customer who logs in again also gets a new id; the old one ends.
    let before = web.cookies["portal_session"].clone();
    let csrf = web.get("/p/shop_1").await.csrf();
    web.cookies.remove("portal_form");
    let again =
        web.post("/p/shop_1/login", &[("csrf", &csrf), ("email", EMAIL), ("password", PASSWORD)]).await;
    assert_eq!(again.status, 303);
    assert_ne!(web.cookies["portal_session"], before);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 2, "set-up session and the newest login");
}

async fn sessions_end_when_idle_and_at_their_absolute_limit(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut web = set_up(&app, &link).await;
    app.advance(TimeDelta::minutes(29));
    assert_eq!(web.get("/p/shop_1").await.status, 200, "within 30 minutes of the last request");
    app.advance(TimeDelta::minutes(29));
    assert_eq!(web.get("/p/shop_1").await.status, 200, "activity keeps it alive");
    app.advance(TimeDelta::minutes(31));
    assert_eq!(web.get("/p/shop_1").await.status, 303, "idle for 31 minutes");

    let mut active = Web::new(&app);
    active.submit("/p/shop_1/login", &[("email", EMAIL), ("password", PASSWORD)]).await;
    for _ in 0..24 {
        app.advance(TimeDelta::minutes(25));
        if active.get("/p/shop_1").await.status != 200 {
            break;
        }
    }
    // 24 × 25 minutes is 10 hours: still in. Past 12 hours, out however active.
    assert_eq!(active.get("/p/shop_1").await.status, 200);
    for _ in 0..5 {
        app.advance(TimeDelta::minutes(25));
        active.get("/p/shop_1").await;
    }
    assert_eq!(active.get("/p/shop_1").await.status, 303);
}

async fn forms_without_a_valid_token_or_from_another_site_are_refused(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut web = Web::new(&app);
    let csrf = web.get(&link).await.csrf();
    let fields = |token: &str| {
        vec![
            ("csrf", token.to_owned()),
            ("password", PASSWORD.to_owned()),
            ("confirmation", PASSWORD.to_owned()),
        ]
    };
    let as_refs =
        |v: &Vec<(&'static str, String)>| v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    for (token, headers) in [
        ("", vec![]),
        ("forged-token", vec![]),
        (csrf.as_str(), vec![("sec-fetch-site", "cross-site")]),
        (csrf.as_str(), vec![("origin", "https://evil.example")]),
    ] {
        let owned = as_refs(&fields(token));
        let pairs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = web.post_with(&link, &pairs, &headers).await;
        assert_eq!(page.status, 403, "{token} {headers:?}");
        assert!(page.body.contains("Please try again"));
    }
    // Another browser's token (bound to its own pre-session cookie) does not work here either.
    let mut other = Web::new(&app);
    let foreign = other.get(&link).await.csrf();
    let owned = as_refs(&fields(&foreign));
    let pairs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(web.post(&link, &pairs).await.status, 403);
    // Nothing was consumed; the right token from our own origin works.
    let owned = as_refs(&fields(&csrf));
    let pairs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let origin = app.url.clone();
    let ok = web.post_with(&link, &pairs, &[("origin", &origin), ("sec-fetch-site", "same-origin")]).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    // Each refusal is one security event with its reason (and never the token).
    let events: Vec<String> = app
        .logs
        .text()
        .lines()
        .filter(|l| l.contains("portal_invites::security") && l.contains("event=\"form_rejected\""))
        .map(str::to_owned)
        .collect();
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(events.iter().all(|e| e.contains("reason=") && e.contains("shop_id=\"shop_1\"")));
    assert!(events.iter().any(|e| e.contains("cross-site")));
    assert!(events.iter().all(|e| !e.contains(&csrf)));
}

async fn forgot_password_answers_the_same_for_any_address(app: TestApp) {
    invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut answers = Vec::new();
    for email in [EMAIL, "stranger@example.com"] {
        let mut web = Web::new(&app);
        let page = web.submit("/p/shop_1/forgot", &[("email", email)]).await;
        answers.push((page.status, page.body.replace(email, "EMAIL")));
    }
    assert_eq!(answers[0], answers[1]);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(emails(&app).len(), 2, "the invitation, and one reset email for the real account");
}

async fn tokens_and_session_ids_appear_in_no_log_line_and_no_column(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let setup_token = link.rsplit('/').next().unwrap().to_owned();
    let mut web = Web::new(&app);
    let page = web.get(&link).await;
    let csrf = page.csrf();
    // Refused and failed requests are logged too: they must not carry the link's token either.
    assert_eq!(web.post(&link, &[("csrf", "forged"), ("password", PASSWORD)]).await.status, 403);
    assert_eq!(
        web.post(&link, &[("csrf", &csrf), ("password", "short"), ("confirmation", "short")]).await.status,
        422
    );
    web.post(&link, &[("csrf", &csrf), ("password", PASSWORD), ("confirmation", PASSWORD)]).await;
    let session = web.cookies["portal_session"].clone();
    web.submit("/p/shop_1/forgot", &[("email", EMAIL)]).await;
    let reset_token = poll(100, std::time::Duration::from_millis(50), || {
        let link = emails(&app).iter().find_map(|(_, text)| link_in(text, "/p/shop_1/reset/"));
        async move { link.map(|link| link.rsplit('/').next().unwrap().to_owned()) }
    });
    let reset_token = reset_token.await.expect("a reset email");
    let secrets = [setup_token.as_str(), reset_token.as_str(), session.as_str(), PASSWORD];

    let logs = app.logs.text();
    assert!(logs.contains("/p/:shop/setup/:token"), "the access log names the route pattern");
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret} is in the logs");
    }
    for table in [
        "shops",
        "customers",
        "webhook_messages",
        "service_keys",
        "portal_accounts",
        "invitations",
        "tokens",
        "outbox",
        "sessions",
        "login_throttles",
    ] {
        for row in app.rows(&format!("SELECT * FROM {table}")).await {
            for (index, column) in row.column_names().iter().enumerate() {
                // Text columns only; numbers cannot hold a token.
                let Ok(Some(value)) = row.try_get_by_index::<Option<String>>(index) else { continue };
                for secret in secrets {
                    assert!(!value.contains(secret), "{secret} is stored in {table}.{column}");
                }
            }
        }
    }
}

async fn deleting_the_customer_ends_their_sessions_and_removes_their_password(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut web = set_up(&app, &link).await;
    app.deliver(&customer_deleted("shop_1", "cus_1", 9)).await;
    assert_eq!(web.get("/p/shop_1").await.status, 303);
    for table in ["sessions", "portal_accounts", "tokens"] {
        assert_eq!(app.count(&format!("SELECT COUNT(*) FROM {table}")).await, 0, "{table}");
    }
    let mut login = Web::new(&app);
    assert_eq!(
        login.submit("/p/shop_1/login", &[("email", EMAIL), ("password", PASSWORD)]).await.status,
        422
    );
}

async fn logging_out_asks_the_browser_to_forget_our_cookies_and_storage(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut web = set_up(&app, &link).await;
    let home = web.get("/p/shop_1").await;
    assert_eq!(home.header("clear-site-data"), None, "only log-out clears");
    let out = web.post("/p/shop_1/logout", &[("csrf", &home.csrf())]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.header("clear-site-data").as_deref(), Some("\"cookies\", \"storage\""));
    assert_eq!(web.get("/p/shop_1").await.status, 303, "the session ended on the server too");
}

async fn an_old_hash_is_upgraded_at_login(app: TestApp) {
    use argon2::{Algorithm, Argon2, Params, Version, password_hash::PasswordHasher};
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;
    let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8192, 1, 1, None).unwrap())
        .hash_password(PASSWORD.as_bytes())
        .unwrap()
        .to_string();
    app.rows(&format!("UPDATE portal_accounts SET password_hash = '{weak}'")).await;
    let mut web = Web::new(&app);
    assert_eq!(web.submit("/p/shop_1/login", &[("email", EMAIL), ("password", PASSWORD)]).await.status, 303);
    let rows = app.rows("SELECT password_hash FROM portal_accounts").await;
    let hash: String = rows[0].try_get("", "password_hash").unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
}

#[tokio::test]
async fn production_cookies_are_host_prefixed_secure_httponly_and_lax_with_hsts() {
    let env = vec![("PORTAL_PUBLIC_URL".to_owned(), "https://portal.example.com".to_owned())];
    let app = TestApp::spawn_with(Backend::Sqlite, Options { env, ..Options::default() }).await.unwrap();
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut web = Web::new(&app);
    let page = web.get(&link).await;
    assert_eq!(
        page.header("strict-transport-security").as_deref(),
        Some("max-age=31536000; includeSubDomains")
    );
    let cookie = page.set_cookies().into_iter().next().unwrap();
    assert!(cookie.starts_with("__Host-portal_form="), "{cookie}");
    let csrf = page.csrf();
    let done = web
        .post_with(
            &link,
            &[("csrf", &csrf), ("password", PASSWORD), ("confirmation", PASSWORD)],
            &[("origin", "https://portal.example.com")],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let session = cookie_with(
        done.set_cookies(),
        "__Host-portal_session=",
        &["; Secure", "; HttpOnly", "; SameSite=Lax", "; Path=/"],
    );
    assert!(!session.to_lowercase().contains("domain="), "__Host- cookies have no Domain");
    // A POST whose Origin is the local address, not the public one, is refused.
    let other = web.post_with("/p/shop_1/logout", &[("csrf", "x")], &[("origin", &app.url)]).await;
    assert_eq!(other.status, 403);
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut web = Web::new(&app);
    let mut pages = vec![];
    for path in [
        &link,
        "/p/shop_1/login",
        "/p/shop_1/forgot",
        "/p/shop_1",
        "/p/nowhere/login",
        "/no/such/page",
        "/static/portal.css",
        "/healthz",
        "/openapi.json",
    ] {
        pages.push((path.to_owned(), web.get(path).await));
    }
    pages.push(("POST /p/shop_1/login".into(), web.post("/p/shop_1/login", &[("csrf", "bad")]).await));
    pages.push(("POST /p/shop_1/forgot".into(), web.post("/p/shop_1/forgot", &[("csrf", "bad")]).await));
    pages.push(("POST /p/shop_1/logout".into(), web.post("/p/shop_1/logout", &[("csrf", "bad")]).await));
    pages.push(("HEAD /p/shop_1/login".into(), web.head("/p/shop_1/login").await));
    for (path, page) in &pages {
        let policy = page.header("content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP"));
        assert!(
            policy.contains("frame-ancestors 'none'")
                && !policy.contains("unsafe-inline")
                && policy.contains("default-src 'none'"),
            "{path}: {policy}"
        );
        assert_eq!(page.header("x-content-type-options").as_deref(), Some("nosniff"), "{path}");
        assert_eq!(page.header("referrer-policy").as_deref(), Some("no-referrer"), "{path}");
        assert_eq!(page.header("cross-origin-opener-policy").as_deref(), Some("same-origin"), "{path}");
        let permissions =
            page.header("permissions-policy").unwrap_or_else(|| panic!("{path}: no Permissions-Policy"));
        for feature in
            ["camera=()", "microphone=()", "geolocation=()", "payment=()", "usb=()", "interest-cohort=()"]
        {
            assert!(permissions.contains(feature), "{path}: {feature} missing from {permissions}");
        }
        assert!(page.header("strict-transport-security").is_none(), "no HSTS on plain http");
        if page.header("content-type").is_some_and(|t| t.starts_with("text/html")) {
            assert_eq!(page.header("cache-control").as_deref(), Some("no-store"), "{path}");
            assert!(!page.body.contains("<script"), "{path}: inline script");
            assert!(
                !page.body.contains("https://") || path.starts_with("/p/shop_1/setup"),
                "{path}: a third-party resource?"
            );
        }
    }
    assert_eq!(pages.iter().find(|(p, _)| p == "/no/such/page").unwrap().1.status, 404);
    let css = &pages.iter().find(|(p, _)| p == "/static/portal.css").unwrap().1;
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
}

/// Browsers apply `form-action` to the redirects after a form, and a shop's host portal is where
/// its customers go after logging in: its origins, and only they, join `'self'` on its pages.
#[tokio::test]
async fn a_shop_with_its_own_portal_lets_its_forms_lead_there_and_no_further() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    invite(&app, "shop_2", "cus_2", EMAIL).await;
    let portal = host_messages::Portal {
        url: "https://my.workshop.example/portal/shop_1".into(),
        redirect_uris: vec!["https://login.workshop.example/cb".into()],
        post_logout_redirect_uris: vec!["https://my.workshop.example/bye".into()],
    };
    let with_portal = Shop { portal: Some(portal), ..Shop::example("shop_1") };
    app.deliver(&shop_updated("shop_1", with_portal.snapshot(2))).await;
    let mut web = Web::new(&app);
    let form_action = |page: &crate::web::Page| {
        let policy = page.header("content-security-policy").unwrap();
        let directive = policy.split("; ").find(|d| d.starts_with("form-action")).unwrap().to_owned();
        assert!(
            policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"),
            "{policy}"
        );
        directive
    };
    for path in [link.as_str(), "/p/shop_1/login", "/p/shop_1/forgot"] {
        assert_eq!(
            form_action(&web.get(path).await),
            "form-action 'self' https://login.workshop.example https://my.workshop.example",
            "{path}"
        );
    }
    assert_eq!(form_action(&web.get("/p/shop_2/login").await), "form-action 'self'");
    assert_eq!(form_action(&web.get("/p/nowhere/login").await), "form-action 'self'");
}

#[tokio::test]
async fn a_flood_of_logins_gets_quick_503s_beyond_the_hashing_bound() {
    let env = vec![("PORTAL_HASHING_LIMIT".to_owned(), "1".to_owned())];
    let app = TestApp::spawn_with(Backend::Sqlite, Options { env, ..Options::default() }).await.unwrap();
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;
    let mut web = Web::new(&app);
    let csrf = web.get("/p/shop_1/login").await.csrf();
    let responses = web
        .post_at_once("/p/shop_1/login", &[("csrf", &csrf), ("email", EMAIL), ("password", PASSWORD)], 40)
        .await;
    let busy: Vec<_> = responses.iter().filter(|r| r.status() == 503).collect();
    assert!(!busy.is_empty(), "someone must be turned away");
    assert!(busy.iter().all(|r| r.headers().get("retry-after").is_some()));
    // Attempts on one account are counted before they are judged, so beyond the account's five free
    // attempts in flight at once, the rest are told to wait (429) like any burst on one account.
    assert!(responses.iter().all(|r| [303, 429, 503].contains(&r.status().as_u16())), "no 500s");
    assert!(responses.iter().any(|r| r.status() == 303));
}

#[tokio::test]
async fn the_address_throttle_believes_forwarded_for_only_from_trusted_proxies() {
    let env = vec![("PORTAL_TRUSTED_PROXIES".to_owned(), "127.0.0.1".to_owned())];
    let app = TestApp::spawn_with(Backend::Sqlite, Options { env, ..Options::default() }).await.unwrap();
    invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut web = Web::new(&app);
    // Thirty failures from one client address, each on a different username…
    for i in 0..31 {
        let page = web.get("/p/shop_1/login").await;
        let email = format!("guess{i}@example.com");
        web.post_with(
            "/p/shop_1/login",
            &[("csrf", &page.csrf()), ("email", &email), ("password", "x")],
            &[("x-forwarded-for", "203.0.113.7")],
        )
        .await;
    }
    // …slow that address down, whatever the username,
    let page = web.get("/p/shop_1/login").await;
    let blocked = web
        .post_with(
            "/p/shop_1/login",
            &[("csrf", &page.csrf()), ("email", "new@example.com"), ("password", "x")],
            &[("x-forwarded-for", "203.0.113.7")],
        )
        .await;
    assert_eq!(blocked.status, 429);
    // but not another client behind the same proxy.
    let page = web.get("/p/shop_1/login").await;
    let other = web
        .post_with(
            "/p/shop_1/login",
            &[("csrf", &page.csrf()), ("email", "new@example.com"), ("password", "x")],
            &[("x-forwarded-for", "198.51.100.1")],
        )
        .await;
    assert_eq!(other.status, 422);
}
