//! `POST /webhooks` at the protocol level: every status of contract §7, signatures, the body limit,
//! de-duplication and secret rotation.

use chrono::TimeDelta;
use portal_invites::signature::WebhookSecret;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

crate::on_both_databases!(
    an_install_is_answered_204_and_stored,
    every_protocol_failure_gets_its_status_as_a_problem_document,
    a_body_over_64_kib_is_refused_even_without_a_content_length,
    a_replayed_webhook_id_gets_the_same_answer_and_is_not_applied_again,
    fifty_concurrent_copies_of_one_message_have_exactly_one_effect,
    a_database_fault_is_a_500_problem_and_stores_nothing,
    a_message_still_being_processed_elsewhere_gets_503_with_retry_after,
    a_burst_keeps_the_newest_version_and_a_stranger_does_not_spoil_it,
    lifecycle_messages_stay_out_of_the_erasure_index,
    a_batch_stores_every_character_and_version_as_sent,
);

/// A batch reaches the database as one JSON value (`db/json_rows.rs`): quotes, backslashes and
/// characters beyond ASCII come out as sent, versions stay integers (compared as numbers, not text,
/// and beyond a double's precision), and the stored answer replays exactly.
async fn a_batch_stores_every_character_and_version_as_sent(app: TestApp) {
    app.deliver(&installed("shop_a", 1)).await;
    let odd = Customer {
        id: "cus_odd".to_owned(),
        first_name: r#"O'Brien "Bobby" \ \n"#.to_owned(),
        last_name: "Žofie 😀 ünïcødé ' ; DROP TABLE customers; --".to_owned(),
        email: Some("o.brien+garage@example.com".to_owned()),
        mobile: None,
    };
    let updated = |customer: &Customer, version: i64| {
        host_messages::customer_updated("shop_a", customer.snapshot(version), at(0))
    };
    let big_version = (1_i64 << 53) + 1;
    let big = Customer::example("cus_big", Some("big@example.com"), None);
    // Together, so they share a batch.
    let (odd_9, big_1) = (updated(&odd, 9), updated(&big, big_version));
    let (a, b) = tokio::join!(app.send("msg_odd_9", &odd_9), app.send("msg_big", &big_1));
    assert_eq!((a, b), (204, 204));
    // 10 after 9: "10" < "9" as text, so a version stored or compared as text would stay at 9.
    assert_eq!(app.send("msg_odd_10", &updated(&odd, 10)).await, 204);
    assert_eq!(app.send("msg_odd_2", &updated(&odd, 2)).await, 204);

    let rows = app
        .rows("SELECT first_name, last_name, email, mobile, version FROM customers WHERE id = 'cus_odd'")
        .await;
    let row = &rows[0];
    assert_eq!(row.try_get::<String>("", "first_name").unwrap(), odd.first_name);
    assert_eq!(row.try_get::<String>("", "last_name").unwrap(), odd.last_name);
    assert_eq!(row.try_get::<Option<String>>("", "email").unwrap(), odd.email);
    assert_eq!(row.try_get::<Option<String>>("", "mobile").unwrap(), None);
    assert_eq!(row.try_get::<i64>("", "version").unwrap(), 10);
    let rows = app.rows("SELECT version FROM customers WHERE id = 'cus_big'").await;
    assert_eq!(rows[0].try_get::<i64>("", "version").unwrap(), big_version);
    assert_eq!(app.count("SELECT COUNT(*) FROM customers WHERE version > 9 AND version < 11").await, 1);
    let answered = "SELECT COUNT(*) FROM webhook_messages WHERE endpoint = 'webhooks' \
                    AND event_type = 'customer.updated' AND shop_id = 'shop_a' AND customer_id IS NULL \
                    AND status = 204 AND response_body = '' AND received_at > 0";
    assert_eq!(app.count(answered).await, 4);
    // A repeat gets the stored answer and changes nothing.
    assert_eq!(app.send("msg_odd_9", &updated(&odd, 9)).await, 204);
    let rows = app.rows("SELECT version FROM customers WHERE id = 'cus_odd'").await;
    assert_eq!(rows[0].try_get::<i64>("", "version").unwrap(), 10);
}

/// Erasure forgets star-menu answers by customer through a partial index; lifecycle messages, which
/// erasure never forgets, name no customer, so none of them adds an entry to it.
async fn lifecycle_messages_stay_out_of_the_erasure_index(app: TestApp) {
    app.deliver(&installed("shop_a", 1)).await;
    assert_eq!(app.send("msg_c1", &customer_updated("shop_a", "cus_1", 1, "a@example.com")).await, 204);
    assert_eq!(app.send("msg_c2", &customer_deleted("shop_a", "cus_1", 2)).await, 204);
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_messages WHERE endpoint = 'webhooks'").await, 3);
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_messages WHERE customer_id IS NOT NULL").await, 0);
    // A repeat is still recognised without it.
    assert_eq!(app.send("msg_c1", &customer_updated("shop_a", "cus_1", 1, "a@example.com")).await, 204);
    assert_eq!(app.count("SELECT version FROM customers WHERE id = 'cus_1'").await, 2);
}

async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: {e}: {text:?}"));
    assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    (status, body)
}

async fn an_install_is_answered_204_and_stored(app: TestApp) {
    let response = app.post_signed("/webhooks", "msg_install_1", &installed("shop_8f2k", 12)).await;
    assert_eq!(response.status().as_u16(), 204);
    assert!(response.bytes().await.unwrap().is_empty());
    assert_eq!(app.count("SELECT COUNT(*) FROM shops WHERE id = 'shop_8f2k' AND installed = TRUE").await, 1);
    assert_eq!(app.count("SELECT version FROM shops WHERE id = 'shop_8f2k'").await, 12);
}

async fn every_protocol_failure_gets_its_status_as_a_problem_document(app: TestApp) {
    app.deliver(&installed("shop_a", 1)).await;
    let good = serde_json::to_vec(&customer_updated("shop_a", "cus_1", 1, "jana@example.com")).unwrap();
    let json_type = ("content-type", "application/json".to_owned());

    // 400: not JSON at all, and an unknown type.
    let mut headers = app.sign("msg_400a", b"{not json");
    headers.push(json_type.clone());
    let (status, body) = problem(app.post_raw("/webhooks", &headers, b"{not json".to_vec()).await).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("malformed-body")));
    let unknown = envelope("order.created", "shop_a", 0, json!({}));
    let (status, body) = problem(app.post_signed("/webhooks", "msg_400b", &unknown).await).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("unknown-event-type")));

    // 401: no headers, a wrong signature, a stale and a future timestamp, a malformed id.
    let (status, _) =
        problem(app.post_raw("/webhooks", std::slice::from_ref(&json_type), good.clone()).await).await;
    assert_eq!(status, 401);
    let other = WebhookSecret::parse(&WebhookSecret::generate()).unwrap();
    let ts = app.clock.now().timestamp();
    let forged = vec![
        ("webhook-id", "msg_401".to_owned()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", other.sign("msg_401", ts, &good)),
        json_type.clone(),
    ];
    let (status, body) = problem(app.post_raw("/webhooks", &forged, good.clone()).await).await;
    assert_eq!(status, 401);
    let expected = app.secret.sign("msg_401", ts, &good);
    assert!(!body.to_string().contains(expected.trim_start_matches("v1,")), "the expected signature leaked");
    for offset in [-301, 301] {
        let ts = ts + offset;
        let headers = vec![
            ("webhook-id", "msg_401t".to_owned()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", app.secret.sign("msg_401t", ts, &good)),
            json_type.clone(),
        ];
        let (status, _) = problem(app.post_raw("/webhooks", &headers, good.clone()).await).await;
        assert_eq!(status, 401, "timestamp offset {offset}");
    }
    let mut bad_id = app.sign("msg 401", &good);
    bad_id.push(json_type.clone());
    assert_eq!(problem(app.post_raw("/webhooks", &bad_id, good.clone()).await).await.0, 401);

    // 404: a shop that never installed.
    let stranger = customer_updated("shop_never", "cus_1", 1, "x@example.com");
    let (status, body) = problem(app.post_signed("/webhooks", "msg_404", &stranger).await).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown-shop")));

    // 413: a declared length over 64 KiB.
    let big = vec![b' '; 64 * 1024 + 1];
    let mut headers = app.sign("msg_413", &big);
    headers.push(json_type.clone());
    assert_eq!(problem(app.post_raw("/webhooks", &headers, big).await).await.0, 413);

    // 415: signed, but not declared as JSON.
    let mut headers = app.sign("msg_415", &good);
    headers.push(("content-type", "text/plain".to_owned()));
    assert_eq!(problem(app.post_raw("/webhooks", &headers, good.clone()).await).await.0, 415);

    // 422: well-formed, but the mobile number is not E.164.
    let mut bad_mobile = customer_updated("shop_a", "cus_1", 1, "jana@example.com");
    bad_mobile["data"]["customer"]["mobile"] = json!("0412 345 678");
    let (status, body) = problem(app.post_signed("/webhooks", "msg_422", &bad_mobile).await).await;
    assert_eq!(status, 422);
    assert!(body["detail"].as_str().unwrap().contains("data.customer.mobile"), "{body}");

    // None of the refused messages left a trace.
    assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_messages").await, 1, "only the install is stored");

    // And after all that, the good message still goes through: 204.
    let mut headers = app.sign("msg_ok", &good);
    headers.push(json_type);
    assert_eq!(app.post_raw("/webhooks", &headers, good).await.status().as_u16(), 204);
}

async fn a_body_over_64_kib_is_refused_even_without_a_content_length(app: TestApp) {
    app.deliver(&installed("shop_a", 1)).await;
    // Exactly 64 KiB (valid JSON padded with spaces) is accepted.
    let mut body = serde_json::to_vec(&customer_updated("shop_a", "cus_1", 1, "a@example.com")).unwrap();
    body.resize(64 * 1024, b' ');
    let mut headers = app.sign("msg_exact", &body);
    headers.push(("content-type", "application/json".to_owned()));
    assert_eq!(app.post_raw("/webhooks", &headers, body).await.status().as_u16(), 204);

    // One byte more, sent chunked so no Content-Length announces it, is refused once read.
    let mut body = serde_json::to_vec(&customer_updated("shop_a", "cus_2", 1, "b@example.com")).unwrap();
    body.resize(64 * 1024 + 1, b' ');
    let headers = app.sign("msg_chunked", &body);
    let addr = app.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "POST /webhooks HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    );
    for (name, value) in &headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    for chunk in body.chunks(8 * 1024) {
        stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.unwrap();
        stream.write_all(chunk).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"));
    assert_eq!(app.count("SELECT COUNT(*) FROM customers WHERE id = 'cus_2'").await, 0);
}

async fn a_replayed_webhook_id_gets_the_same_answer_and_is_not_applied_again(app: TestApp) {
    let install = installed("shop_a", 1);
    let first = app.post_signed("/webhooks", "msg_install", &install).await;
    let first = (first.status(), first.bytes().await.unwrap());
    app.deliver(&uninstalled("shop_a", SOMEONE, 60)).await;

    // The host retries the install an hour later, re-signed with a new timestamp.
    app.advance(TimeDelta::hours(1));
    let again = app.post_signed("/webhooks", "msg_install", &install).await;
    assert_eq!((again.status(), again.bytes().await.unwrap()), first);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM shops WHERE installed = TRUE").await,
        0,
        "the replay re-installed"
    );
    assert_eq!(app.logs.count("repeated message answered again"), 1);

    // A replayed customer update does not overwrite a newer one that came in between.
    let v1 = customer_updated("shop_a", "cus_1", 1, "old@example.com");
    let mut reinstall = installed("shop_a", 2);
    reinstall["timestamp"] = json!((start_time() + TimeDelta::hours(1)).to_rfc3339());
    app.deliver(&reinstall).await;
    assert_eq!(app.send("msg_cus_v1", &v1).await, 204);
    app.deliver(&customer_updated("shop_a", "cus_1", 2, "new@example.com")).await;
    assert_eq!(app.send("msg_cus_v1", &v1).await, 204);
    let rows = app.rows("SELECT email FROM customers WHERE id = 'cus_1'").await;
    assert_eq!(rows[0].try_get::<String>("", "email").unwrap(), "new@example.com");
}

async fn fifty_concurrent_copies_of_one_message_have_exactly_one_effect(app: TestApp) {
    app.deliver(&installed("shop_a", 1)).await;
    let message = customer_updated("shop_a", "cus_1", 5, "jana@example.com");
    let body = serde_json::to_vec(&message).unwrap();
    let mut headers = app.sign("msg_storm", &body);
    headers.push(("content-type", "application/json".to_owned()));

    let copies = (0..50).map(|_| app.post_raw("/webhooks", &headers, body.clone()));
    let responses = futures_util::future::join_all(copies).await;
    for response in responses {
        assert_eq!(response.status().as_u16(), 204);
    }
    // One for the install, one for the update.
    assert_eq!(app.logs.count("event processed"), 2, "processed more than once:\n{}", app.logs.text());
    assert_eq!(app.logs.count("repeated message answered again"), 49);
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_messages WHERE id = 'msg_storm'").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 1);
}

async fn a_database_fault_is_a_500_problem_and_stores_nothing(app: TestApp) {
    app.deliver(&installed("shop_a", 1)).await;
    let cascade = if app.db.backend() == sea_orm::DbBackend::Postgres { " CASCADE" } else { "" };
    app.rows(&format!("DROP TABLE customers{cascade}")).await;
    let response =
        app.post_signed("/webhooks", "msg_fault", &customer_updated("shop_a", "c", 1, "a@example.com")).await;
    let (status, body) = problem(response).await;
    assert_eq!(status, 500);
    assert!(!body["detail"].as_str().unwrap().contains("customers"), "internals leaked: {body}");
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_messages WHERE id = 'msg_fault'").await, 0);
}

#[tokio::test]
async fn a_secret_rotation_accepts_both_secrets_while_both_are_configured() {
    let old = WebhookSecret::generate();
    let new = WebhookSecret::generate();
    let database = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let clock = portal_invites::clock::Clock::manual(start_time());
    let options = Options { env: vec![], secrets: vec![new.clone(), old.clone()] };
    let app = TestApp::start(database, options, clock.clone()).await;
    let old_secret = WebhookSecret::parse(&old).unwrap();
    let new_secret = WebhookSecret::parse(&new).unwrap();

    let send_with = |signers: Vec<WebhookSecret>, id: &'static str, message: Value| {
        let app = &app;
        async move {
            let body = serde_json::to_vec(&message).unwrap();
            let ts = app.clock.now().timestamp();
            let signature = signers.iter().map(|s| s.sign(id, ts, &body)).collect::<Vec<_>>().join(" ");
            let headers = vec![
                ("webhook-id", id.to_owned()),
                ("webhook-timestamp", ts.to_string()),
                ("webhook-signature", signature),
                ("content-type", "application/json".to_owned()),
            ];
            app.post_raw("/webhooks", &headers, body).await.status().as_u16()
        }
    };
    // The host signs with both during the rotation, or with either alone.
    assert_eq!(
        send_with(vec![new_secret.clone(), old_secret.clone()], "m1", installed("shop_a", 1)).await,
        204
    );
    assert_eq!(send_with(vec![old_secret.clone()], "m2", installed("shop_a", 2)).await, 204);
    assert_eq!(send_with(vec![new_secret.clone()], "m3", installed("shop_a", 3)).await, 204);
    let stranger = WebhookSecret::parse(&WebhookSecret::generate()).unwrap();
    assert_eq!(send_with(vec![stranger], "m4", installed("shop_a", 4)).await, 401);

    // Once the operator removes the old secret, only the new one is accepted.
    let database = app.stop().await;
    let options = Options { env: vec![], secrets: vec![new] };
    let app = TestApp::start(database, options, clock).await;
    let body = serde_json::to_vec(&installed("shop_a", 5)).unwrap();
    let ts = app.clock.now().timestamp();
    let headers = vec![
        ("webhook-id", "m5".to_owned()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", old_secret.sign("m5", ts, &body)),
        ("content-type", "application/json".to_owned()),
    ];
    assert_eq!(app.post_raw("/webhooks", &headers, body).await.status().as_u16(), 401);
}

async fn a_message_still_being_processed_elsewhere_gets_503_with_retry_after(app: TestApp) {
    app.deliver(&installed("shop_a", 1)).await;
    // Another instance claimed this id and has not stored its answer yet.
    let now = app.clock.now().timestamp_millis();
    app.rows(&format!(
        "INSERT INTO webhook_messages (id, endpoint, event_type, shop_id, customer_id, status, response_body, received_at) \
         VALUES ('msg_busy', 'webhooks', 'customer.updated', 'shop_a', 'cus_1', NULL, NULL, {now})"
    ))
    .await;
    let response = app
        .post_signed("/webhooks", "msg_busy", &customer_updated("shop_a", "cus_1", 1, "a@example.com"))
        .await;
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = problem(response).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("busy")));
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().unwrap() > 0));
    assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 0, "nothing applied");
}

async fn a_burst_keeps_the_newest_version_and_a_stranger_does_not_spoil_it(app: TestApp) {
    app.deliver(&installed("shop_a", 1)).await;
    // Versions arrive out of order, all at once (they share a transaction), mixed with events for a
    // shop that never installed, and one message sent twice.
    let mut versions: Vec<i64> = (1..=40).collect();
    versions.reverse();
    versions.swap(3, 30);
    let updates = versions.iter().map(|v| {
        let message = customer_updated("shop_a", "cus_1", *v, &format!("v{v}@example.com"));
        let app = &app;
        async move { (app.send(&format!("msg_v{v}"), &message).await, 204) }
    });
    let strangers = (0..5).map(|i| {
        let message = customer_updated("shop_stranger", "cus_1", 1, "x@example.com");
        let app = &app;
        async move {
            let response = app.post_signed("/webhooks", &format!("msg_stranger_{i}"), &message).await;
            let (status, body) = problem(response).await;
            assert_eq!(body["code"], "unknown-shop", "{body}");
            (status, 404)
        }
    });
    let twice = customer_updated("shop_a", "cus_2", 1, "two@example.com");
    let repeats = (0..2).map(|_| {
        let app = &app;
        let message = twice.clone();
        async move { (app.send("msg_twice", &message).await, 204) }
    });
    let (a, b, c) = tokio::join!(
        futures_util::future::join_all(updates),
        futures_util::future::join_all(strangers),
        futures_util::future::join_all(repeats)
    );
    for (status, expected) in a.into_iter().chain(b).chain(c) {
        assert_eq!(status, expected);
    }
    let rows = app.rows("SELECT email, version FROM customers WHERE id = 'cus_1'").await;
    assert_eq!(rows[0].try_get::<String>("", "email").unwrap(), "v40@example.com");
    assert_eq!(rows[0].try_get::<i64>("", "version").unwrap(), 40);
    assert_eq!(app.count("SELECT COUNT(*) FROM customers WHERE shop_id = 'shop_stranger'").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_messages WHERE id LIKE 'msg_stranger_%'").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_messages WHERE id = 'msg_twice'").await, 1);
}

#[tokio::test]
async fn each_refused_signature_is_one_security_event_that_holds_nothing_the_caller_sent() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let body = br#"{"type": "plugin.installed", "marker": "BODY-MARKER-7731"}"#.to_vec();
    let json_type = ("content-type", "application/json".to_owned());
    let ts = app.clock.now().timestamp();
    let stale = ts - 1000;
    let forger = WebhookSecret::parse(&WebhookSecret::generate()).unwrap();
    let forged = forger.sign("msg_forged", ts, &body);
    let stale_signature = app.secret.sign("msg_stale", stale, &body);
    // (endpoint, the reason logged, the headers sent)
    type Attempt<'a> = (&'a str, &'a str, Vec<(&'a str, String)>);
    let attempts: Vec<Attempt> = vec![
        ("/webhooks", "missing_header", vec![("webhook-id", "msg_missing".into()), json_type.clone()]),
        (
            "/webhooks",
            "malformed",
            vec![
                ("webhook-id", "msg_malformed".into()),
                ("webhook-timestamp", "yesterday".into()),
                ("webhook-signature", forged.clone()),
                json_type.clone(),
            ],
        ),
        (
            "/webhooks",
            "stale_timestamp",
            vec![
                ("webhook-id", "msg_stale".into()),
                ("webhook-timestamp", stale.to_string()),
                ("webhook-signature", stale_signature.clone()),
                json_type.clone(),
            ],
        ),
        (
            "/actions/send-portal-invitation",
            "no_matching_signature",
            vec![
                ("webhook-id", "msg_forged".into()),
                ("webhook-timestamp", ts.to_string()),
                ("webhook-signature", forged.clone()),
                json_type.clone(),
            ],
        ),
    ];
    for (path, reason, headers) in &attempts {
        let before = app.logs.count("event=\"bad_signature\"");
        assert_eq!(app.post_raw(path, headers, body.clone()).await.status().as_u16(), 401);
        let logs = app.logs.text();
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains("event=\"bad_signature\"")).collect();
        assert_eq!(lines.len(), before + 1, "one event per refused request:\n{logs}");
        let line = lines.last().unwrap();
        assert!(line.contains("WARN") && line.contains("portal_invites::security"), "{line}");
        assert!(line.contains(&format!("reason=\"{reason}\"")), "{line}");
        assert!(line.contains(&format!("path=\"{path}\"")), "{line}");
    }

    // A good message is no security event.
    app.deliver(&installed("shop_1", 1)).await;
    assert_eq!(app.logs.count("event=\"bad_signature\""), attempts.len());

    // Nothing the caller sent, nor the secret, is in the log.
    let logs = app.logs.text();
    let secret_key = app.secret_text.trim_start_matches("whsec_");
    for leak in [
        secret_key,
        forged.trim_start_matches("v1,"),
        stale_signature.trim_start_matches("v1,"),
        "BODY-MARKER-7731",
        "yesterday",
    ] {
        assert!(!logs.contains(leak), "{leak:?} is in the log:\n{logs}");
    }
}

#[tokio::test]
async fn on_postgresql_a_batch_is_answered_only_once_it_has_committed() {
    use futures_util::StreamExt;
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        eprintln!("skipped: set PORTAL_TEST_POSTGRES_URL to run this on PostgreSQL");
        return;
    };
    app.deliver(&installed("shop_a", 1)).await;
    // A check deferred to the commit, which waits while the test holds an advisory lock: every
    // transaction that writes a customer is stopped at its commit until the test lets it go.
    app.rows(
        "CREATE FUNCTION wait_for_the_test() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NULL; END $$",
    )
    .await;
    app.rows(
        "CREATE CONSTRAINT TRIGGER wait_for_the_test AFTER INSERT OR UPDATE ON customers \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wait_for_the_test()",
    )
    .await;
    let holder = sea_orm::Database::connect(app.database_url()).await.unwrap();
    let held = holder.begin().await.unwrap();
    held.execute_unprepared("SELECT pg_advisory_xact_lock(4242)").await.unwrap();

    let updates = (0..20).map(|i| {
        let message = customer_updated("shop_a", &format!("cus_{i}"), 1, &format!("c{i}@example.com"));
        let app = &app;
        async move { app.send(&format!("msg_held_{i}"), &message).await }
    });
    let mut answers: futures_util::stream::FuturesUnordered<_> = updates.collect();
    let first = tokio::time::timeout(std::time::Duration::from_millis(700), answers.next()).await;
    assert!(first.is_err(), "answered while the commit was held: {first:?}");
    assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 0, "visible before the commit");

    held.rollback().await.unwrap();
    let statuses: Vec<u16> = answers.collect().await;
    assert_eq!(statuses, [204; 20]);
    assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 20);
}

/// Two instances: this one's batch finds no customer to lock, another instance is creating it at a
/// newer version, and the upsert waits for that insert, then writes nothing. The event was stale, and
/// is counted so (the metrics and the log say what happened to each message).
#[tokio::test]
async fn on_postgresql_an_update_that_loses_to_a_concurrent_insert_is_stale() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        eprintln!("skipped: set PORTAL_TEST_POSTGRES_URL to run this on PostgreSQL");
        return;
    };
    app.deliver(&installed("shop_a", 1)).await;
    let other = sea_orm::Database::connect(app.database_url()).await.unwrap();
    let creating = other.begin().await.unwrap();
    creating
        .execute_unprepared(
            "INSERT INTO customers (shop_id, id, email, version, updated_at) \
             VALUES ('shop_a', 'cus_race', 'newer@example.com', 5, 0)",
        )
        .await
        .unwrap();
    let other_commits_once_we_wait = async {
        let waiting = "SELECT COUNT(*) FROM pg_stat_activity \
                       WHERE wait_event_type = 'Lock' AND datname = current_database() \
                       AND query LIKE 'INSERT INTO \"customers\"%'";
        for _ in 0..500 {
            if app.count(waiting).await > 0 {
                creating.commit().await.unwrap();
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the update never waited for the other instance's insert");
    };
    let message = customer_updated("shop_a", "cus_race", 3, "older@example.com");
    let (status, ()) = tokio::join!(app.send("msg_race", &message), other_commits_once_we_wait);
    assert_eq!(status, 204);

    let rows = app.rows("SELECT email, version FROM customers WHERE id = 'cus_race'").await;
    assert_eq!(rows[0].try_get::<i64>("", "version").unwrap(), 5);
    assert_eq!(rows[0].try_get::<String>("", "email").unwrap(), "newer@example.com");
    let logs = app.logs.text();
    let line = logs.lines().find(|l| l.contains("event processed") && l.contains("msg_race"));
    assert!(line.is_some_and(|l| l.contains("applied=Stale")), "{line:?}");
}
