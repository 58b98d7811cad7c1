//! The service as an operator and an integrator meet it: the command line, the manifest, the OpenAPI
//! document, health probes, the service keys and the SQLite settings.

use std::process::Command;

use portal_invites::{
    db::{SQLITE_WAL_SIZE_LIMIT, keys},
    manifest::{EMBEDDED, Manifest},
};
use serde_json::Value;

use crate::helpers::*;

crate::on_both_databases!(
    every_url_in_the_manifest_is_routed_to_signed_intake,
    the_openapi_document_lists_every_answer,
    health_and_readiness_follow_the_database,
    instances_sharing_a_database_share_their_keys,
);

async fn every_url_in_the_manifest_is_routed_to_signed_intake(app: TestApp) {
    let manifest = Manifest::parse(EMBEDDED).unwrap();
    for url in manifest.urls() {
        let response =
            app.post_raw(url, &[("content-type", "application/json".to_owned())], b"{}".to_vec()).await;
        assert_eq!(response.status().as_u16(), 401, "{url} is not routed to the signed intake");
    }
    let served = app.get("/manifest.toml").await.text().await.unwrap();
    let served = Manifest::parse(&served).unwrap();
    assert_eq!(served.plugin.base_url, app.url);
    assert_eq!(served.webhooks, manifest.webhooks);
    // The issuer is called unsigned by browsers and the host's OpenID client, so urls() leaves it out.
    assert!(manifest.identity().is_some_and(|identity| !manifest.urls().contains(&identity.issuer.as_str())));
    assert_eq!(served.identity, manifest.identity);
}

async fn the_openapi_document_lists_every_answer(app: TestApp) {
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    let responses = &spec["paths"]["/webhooks"]["post"]["responses"];
    for status in ["204", "400", "401", "404", "413", "415", "422", "500", "503"] {
        assert!(responses.get(status).is_some(), "{status} missing from {responses}");
    }
    assert_eq!(
        responses["401"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
    let body = &spec["paths"]["/webhooks"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/LifecycleEnvelope");
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status().as_u16(), 200);
    assert!(docs.text().await.unwrap().contains("openapi"));
}

async fn health_and_readiness_follow_the_database(app: TestApp) {
    assert_eq!(app.get("/healthz").await.status().as_u16(), 200);
    assert_eq!(app.get("/readyz").await.status().as_u16(), 200);
    app.db.clone().close().await.unwrap();
    assert_eq!(app.get("/readyz").await.status().as_u16(), 503);
    assert_eq!(app.get("/healthz").await.status().as_u16(), 200);
}

async fn instances_sharing_a_database_share_their_keys(app: TestApp) {
    let first = keys::load_or_create(&app.db, "cookies", app.clock.now()).await.unwrap();
    let again = keys::load_or_create(&app.db, "cookies", app.clock.now()).await.unwrap();
    assert_eq!(first, again);
    assert!(first.bytes().len() >= 32);
    let other = keys::load_or_create(&app.db, "something-else", app.clock.now()).await.unwrap();
    assert_ne!(first, other);
    // A second instance on the same database reads the same key.
    let second = portal_invites::db::Database::connect(
        &portal_invites::config::DatabaseUrl::parse(&app.database_url()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(keys::load_or_create(&second, "cookies", app.clock.now()).await.unwrap(), first);
    assert_eq!(format!("{first:?}"), "ServiceKey(redacted)");
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    // Several pooled connections: ask more than once, so each gets checked.
    for _ in 0..6 {
        let rows = app.rows("PRAGMA journal_mode").await;
        assert_eq!(rows[0].try_get_by_index::<String>(0).unwrap(), "wal");
        assert_eq!(app.count("PRAGMA foreign_keys").await, 1);
        assert_eq!(app.count("PRAGMA busy_timeout").await, 5000);
        assert_eq!(app.count("PRAGMA synchronous").await, 2, "FULL");
        // Statement journals in memory, not a temporary file per batch of webhooks.
        assert_eq!(app.count("PRAGMA temp_store").await, 2, "MEMORY");
    }
}

#[tokio::test]
async fn sqlite_checkpoints_soon_after_commits_without_waiting_for_the_wal_limit() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    app.deliver(&installed("shop_a", 1)).await;
    let db_path = app.database_url().trim_start_matches("sqlite://").split('?').next().unwrap().to_owned();
    // Let any checkpoint of the set-up finish, then note the file's size.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = std::fs::metadata(&db_path).unwrap().len();
    let burst = (0..200).map(|n| {
        let message = customer_updated("shop_a", &format!("cus_{n}"), 1, &format!("c{n}@example.com"));
        let app = &app;
        async move { app.send(&format!("msg_{n}"), &message).await }
    });
    assert!(futures_util::future::join_all(burst).await.iter().all(|&status| status == 204));
    // 200 customers are a few hundred KiB of pages: far below the writer's own checkpoint at the WAL
    // limit, and the minute's maintenance checkpoint is not due. Only the checkpoint task that follows
    // commits copies them into the database file this soon.
    let mut grown = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if std::fs::metadata(&db_path).unwrap().len() > before {
            grown = true;
            break;
        }
    }
    assert!(grown, "the database file is still {before} bytes: nothing checkpointed the WAL");
}

#[tokio::test]
async fn the_sqlite_wal_stays_bounded_under_sustained_load() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    app.deliver(&installed("shop_a", 1)).await;
    let db_path = app.database_url().trim_start_matches("sqlite://").split('?').next().unwrap().to_owned();
    let wal = format!("{db_path}-wal");
    let mut largest = 0;
    for round in 0..30 {
        let batch = (0..100).map(|i| {
            let n = round * 100 + i;
            let message = customer_updated("shop_a", &format!("cus_{n}"), 1, &format!("c{n}@example.com"));
            let app = &app;
            async move { app.send(&format!("msg_{n}"), &message).await }
        });
        for status in futures_util::future::join_all(batch).await {
            assert_eq!(status, 204);
        }
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 3000);
    assert!(largest > 0, "no WAL file seen at {wal}: the test is not watching the database's WAL");
    // 3000 commits of several pages each would be tens of MiB if checkpoints stopped.
    assert!(largest <= SQLITE_WAL_SIZE_LIMIT, "the WAL grew to {largest} bytes");
    assert!(largest < 8 * 1024 * 1024, "the WAL grew to {largest} bytes: checkpoints are not running");
}

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portal-invites"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTAL_") {
            command.env_remove(key);
        }
    }
    command
}

#[test]
fn serve_without_a_secret_stops_with_one_clear_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let output = binary().arg("serve").current_dir(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("PORTAL_WEBHOOK_SECRETS"), "{stderr}");
    assert!(!stderr.contains("panicked"));

    let output = binary()
        .arg("serve")
        .env("PORTAL_WEBHOOK_SECRETS", "whsec_tooshort")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("PORTAL_WEBHOOK_SECRETS") && !stderr.contains("tooshort"), "{stderr}");

    let output =
        binary().args(["serve", "--config", "missing.toml"]).current_dir(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn secret_prints_a_fresh_usable_secret() {
    let output = binary().arg("secret").output().unwrap();
    assert!(output.status.success());
    let secret = String::from_utf8(output.stdout).unwrap();
    assert!(portal_invites::signature::WebhookSecret::parse(secret.trim()).is_ok(), "{secret}");
}

#[test]
fn check_manifest_accepts_the_shipped_one_and_explains_a_broken_one() {
    let output = binary().arg("check-manifest").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("openid-connect issuers at /p/{shop_id}"));
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("plugin.toml");
    let refusal = |text: String| {
        std::fs::write(&broken, text).unwrap();
        let output = binary().arg("check-manifest").arg(&broken).output().unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(refusal(EMBEDDED.replace("[webhooks]", "[webhooks]\nretries = 3")).contains("retries"));
    let stderr = refusal(EMBEDDED.replace("\"/p/{shop_id}\"", "\"https://portal.example.com/p/{shop_id}\""));
    assert!(stderr.contains("would be rejected by the host: identity.issuer"), "{stderr}");
    assert!(stderr.contains("must be a path starting with /"), "{stderr}");
    let stderr = refusal(EMBEDDED.replace("\"/p/{shop_id}\"", "\"/p/{shop}\""));
    assert!(stderr.contains("must hold {shop_id} exactly once"), "{stderr}");
    let stderr = refusal(EMBEDDED.replace("[identity]", "[identity]\nscopes = [\"openid\"]"));
    assert!(stderr.contains("unknown field `scopes`"), "{stderr}");
}

#[test]
fn migrate_applies_and_lists_migrations_from_any_folder() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/elsewhere/db.sqlite?mode=rwc", dir.path().display());
    let status = binary().args(["migrate", "--status"]).env("PORTAL_DATABASE_URL", &url).output().unwrap();
    assert!(status.status.success());
    assert!(String::from_utf8_lossy(&status.stdout).contains("pending  m20261123_000001_foundation"));
    let applied = binary().arg("migrate").env("PORTAL_DATABASE_URL", &url).current_dir("/").output().unwrap();
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    assert!(String::from_utf8_lossy(&applied.stdout).contains("applied  m20261123_000001_foundation"));
}

async fn simulate(app: &TestApp, secret: &str, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal-invites"))
        .args(["simulate", "--url", &app.url, "--secret", secret])
        .args(args)
        .env_remove("PORTAL_WEBHOOK_SECRETS")
        .output()
        .await
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn simulate_plays_the_host_against_a_running_instance() {
    // The simulator signs with the wall clock, so this instance runs on it too.
    let database = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let app = TestApp::start(database, Options::default(), portal_invites::clock::Clock::system()).await;
    let secret = app.secret_text.clone();
    let (ok, out) = simulate(&app, &secret, &["install", "--shop-id", "shop_sim"]).await;
    assert!(ok && out.contains("plugin.installed") && out.contains("204 No Content"), "{out}");
    let (ok, out) = simulate(&app, &secret, &["invoke", "--shop-id", "shop_sim", "--mobile", ""]).await;
    assert!(ok && out.contains("open_dialog") && out.contains("(disabled)"), "{out}");
    let (ok, out) = simulate(&app, &secret, &["submit", "--shop-id", "shop_sim", "--channel", "email"]).await;
    assert!(ok && out.contains("invitation_sent"), "{out}");
    let (ok, out) = simulate(&app, &secret, &["invoke", "--shop-id", "shop_sim"]).await;
    assert!(ok && out.contains("invitation_already_sent"), "{out}");
    // The staff's view: the status text and the one choice that fits (the link is unused).
    let (ok, out) = simulate(&app, &secret, &["access", "--shop-id", "shop_sim"]).await;
    assert!(ok && out.contains("Customer Portal access") && out.contains("Invited by email on"), "{out}");
    assert!(out.contains("cancel_invitation"), "{out}");
    let cancel = ["access-submit", "--shop-id", "shop_sim", "--action", "cancel_invitation"];
    let (ok, out) = simulate(&app, &secret, &cancel).await;
    assert!(ok && out.contains("invitation_cancelled"), "{out}");
    // The shop gets a portal of the host's own, and with it an OpenID provider.
    let discovery = format!("{}/p/shop_sim/.well-known/openid-configuration", app.url);
    assert_eq!(app.client.get(&discovery).send().await.unwrap().status().as_u16(), 404);
    let portal = ["update-shop", "--shop-id", "shop_sim", "--portal-base", "http://127.0.0.1:9/portal"];
    let (ok, out) = simulate(&app, &secret, &portal).await;
    assert!(ok && out.contains("204 No Content"), "{out}");
    assert_eq!(app.client.get(&discovery).send().await.unwrap().status().as_u16(), 200);
    let refused = ["update-shop", "--shop-id", "shop_sim", "--portal-url", "http://portal.example/p"];
    let (ok, out) = simulate(&app, &secret, &refused).await;
    assert!(!ok && out.contains("422") && out.contains("portal.url"), "{out}");
    let stranger = portal_invites::signature::WebhookSecret::generate();
    let (ok, out) = simulate(&app, &stranger, &["install"]).await;
    assert!(!ok && out.contains("401 Unauthorized"), "{out}");
    let (ok, out) = simulate(&app, "not-a-secret", &["install"]).await;
    assert!(!ok && out.contains("--secret"), "{out}");
}

#[tokio::test]
async fn the_demo_tells_the_whole_story_and_its_link_opens_the_set_up_page() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let folder = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal-invites"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PORTAL_")) {
        command.env_remove(key);
    }
    let mut demo = command
        .arg("demo")
        .env("PORTAL_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTAL_PUBLIC_URL", &base)
        .current_dir(folder.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut story = String::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            story.push_str(&line);
            story.push('\n');
            if line.contains("Press Ctrl-C") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the demo did not finish its story:\n{story}");
    for step in
        ["204 No Content", "open_dialog", "invitation_sent", "The invitation email:", "signing secret"]
    {
        assert!(story.contains(step), "{step} missing from:\n{story}");
    }
    let link = story
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{base}/p/shop_demo/setup/")))
        .expect("a set-up link");
    let eml = story.lines().find_map(|l| l.strip_prefix("The invitation email: ")).unwrap();
    assert!(folder.path().join(eml).is_file(), "the email file exists");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let page = reqwest::get(format!("{base}/p/shop_demo/setup/{link}")).await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("Set up your password"));
    // The stand-in host portal it names starts a sign-in at the demo shop's provider.
    let standin = story
        .lines()
        .find_map(|l| l.strip_prefix("You land in the stand-in host portal at "))
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no stand-in portal in:\n{story}"));
    let no_redirects =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let start = no_redirects.get(standin).send().await.unwrap();
    assert_eq!(start.status().as_u16(), 303);
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    assert!(authorize.starts_with(&format!("{base}/p/shop_demo/oidc/authorize?")), "{authorize}");
    assert!(authorize.contains("code_challenge_method=S256"), "{authorize}");
    demo.start_kill().unwrap();
}
