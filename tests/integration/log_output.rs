//! The binary's own log, as an operator reads it on stdout: the subscriber `serve` installs, not the
//! tests' capture. A filter setting once made the service drop every line logged right after a
//! request's statements on PostgreSQL (sqlx's check about its own debug line left an answer behind
//! that such lines read); this runs a star-menu click through the binary and reads its stdout.

use std::{process::Stdio, time::Duration};

use portal_invites::signature::WebhookSecret;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::*;

crate::with_each_backend!(what_follows_a_requests_statements_reaches_stdout);

async fn what_follows_a_requests_statements_reaches_stdout(backend: Backend) {
    let database = TestDatabase::create(backend).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let secret_text = WebhookSecret::generate();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal-invites"))
        .arg("serve")
        .env_clear()
        .env("PORTAL_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTAL_PUBLIC_URL", &base)
        .env("PORTAL_DATABASE_URL", &database.url)
        .env("PORTAL_OUTBOX_DIR", dir.path().join("outbox"))
        .env("PORTAL_WEBHOOK_SECRETS", &secret_text)
        .env("PORTAL_LOG", "info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // No service runs in this process to install the TLS provider the client is built with.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let secret = WebhookSecret::parse(&secret_text).unwrap();
    let send = async |path: &str, id: &str, body: serde_json::Value| {
        let body = body.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let reply = client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", secret.sign(id, timestamp, body.as_bytes()))
            .body(body)
            .send()
            .await
            .unwrap();
        reply.status().as_u16()
    };
    assert_eq!(send("/webhooks", "msg_install", installed("shop_1", 1)).await, 204);
    let click = action_invoked("shop_1", &jana(), "int_1");
    assert_eq!(send("/actions/send-portal-invitation", "msg_click", click).await, 200);

    // The click's own line comes after its statements, on the request's thread; the access line
    // after it.
    let mut seen = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.contains("route=/actions/send-portal-invitation status=200");
            seen.push(line);
            if done {
                break;
            }
        }
    })
    .await;
    assert!(answered.is_ok(), "no access line for the click:\n{}", seen.join("\n"));
    let logged = seen.join("\n");
    assert!(
        logged.contains("INFO star-menu action answered webhook_id=msg_click shop_id=shop_1"),
        "{logged}"
    );
}
