//! Faults of the outside world and of our own code: a mail server that never greets, one slower than
//! any deadline, a gateway that answers absurd or nonsensical things, a write that panics, a shutdown
//! with a send hanging. Nothing is lost, no link is sent that does not work, and the service goes on.

use std::time::Duration;

use chrono::TimeDelta;
use portal_invites::signature::WebhookSecret;
use serde_json::Value;

use crate::{
    delivery::{invitation_status, next_round},
    helpers::*,
    invitations::{links, parse},
    sms_gateway::Reply,
    smtp::SmtpSink,
};

crate::with_each_backend!(
    a_mail_server_that_stops_answering_costs_one_deadline_and_the_retry_delivers,
    a_mail_server_slower_than_the_deadline_gets_the_same_link_again,
    a_send_outliving_its_lease_and_the_one_that_replaced_it_carry_the_same_link,
    an_absurd_retry_after_is_held_to_the_cap_and_the_service_goes_on,
    a_gateway_answering_nonsense_is_retried,
    delivery_errors_keep_no_address_and_no_number,
    a_shutdown_with_a_send_hanging_says_not_ready_and_the_next_instance_sends_the_same_link,
    a_panicking_write_fails_alone_and_the_service_goes_on,
    an_erased_customers_message_files_go_with_them,
    a_link_used_after_an_ambiguous_send_leaves_the_invitation_sent,
);

/// The set-up links of every email the server received.
fn setup_links(smtp: &SmtpSink, base: &str) -> Vec<String> {
    smtp.received()
        .iter()
        .map(|mail| {
            let text = parse(mail).body_text(0).unwrap().into_owned();
            links(&text, base).into_iter().find(|l| l.contains("/setup/")).expect("a set-up link")
        })
        .collect()
}

/// The link opens the set-up form (it is alive).
async fn assert_link_works(app: &TestApp, link: &str) {
    let page = app.client.get(link).send().await.unwrap();
    assert_eq!(page.status(), 200, "the link the customer holds must work");
}

async fn a_mail_server_that_stops_answering_costs_one_deadline_and_the_retry_delivers(backend: Backend) {
    let stack = Stack::start_with(backend, vec![("PORTAL_SEND_TIMEOUT", "1s")]).await;
    let app = &stack.app;
    // The first connection is greeted and its EHLO answered, then the server says nothing more.
    stack.smtp.stall_next(1);
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invitation_queued");
    // The attempt ends at its deadline and is recorded as one to retry: the sender is free again.
    let recorded = "SELECT COUNT(*) FROM outbox WHERE attempts = 1 AND status = 'pending' \
                    AND claim_token IS NULL AND last_error LIKE '%PORTAL_SEND_TIMEOUT%'";
    app.eventually("the hanging attempt is given up", || async { app.count(recorded).await == 1 }).await;
    next_round(app).await;
    stack.smtp.wait_for(1).await;
    assert_eq!(stack.smtp.connections(), 2, "the stalled connection was given up, a new one delivered");
    let sent = setup_links(&stack.smtp, &app.url);
    assert_link_works(app, &sent[0]).await;
    app.eventually("the invitation is sent", || async { invitation_status(app).await == ["sent"] }).await;
}

async fn a_mail_server_slower_than_the_deadline_gets_the_same_link_again(backend: Backend) {
    let stack = Stack::start_with(backend, vec![("PORTAL_SEND_TIMEOUT", "1s")]).await;
    let app = &stack.app;
    // The server takes its data, says nothing for three seconds, then accepts it anyway: the sender
    // gave up at its deadline and cannot know the message arrived.
    stack.smtp.delay_next(1, Duration::from_secs(3));
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invitation_queued");
    stack.smtp.wait_for(1).await;
    next_round(app).await;
    let received = stack.smtp.wait_for(2).await;
    assert_eq!(received.len(), 2, "sent again after the ambiguous outcome");
    let sent = setup_links(&stack.smtp, &app.url);
    assert_eq!(sent[0], sent[1], "both emails carry the same link");
    assert_link_works(app, &sent[0]).await;
    app.eventually("the invitation is sent", || async { invitation_status(app).await == ["sent"] }).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox WHERE sealed_token IS NOT NULL").await, 0, "wiped");
}

async fn a_send_outliving_its_lease_and_the_one_that_replaced_it_carry_the_same_link(backend: Backend) {
    let stack = Stack::start_with(backend, vec![("PORTAL_SEND_TIMEOUT", "10s")]).await;
    let app = &stack.app;
    stack.smtp.delay_next(1, Duration::from_secs(4));
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invitation_queued");
    // While the first send is still waiting for the server, its lease runs out (on SQLite, whose
    // leases follow the service's clock; PostgreSQL's follow the database's and do not move): the
    // row is claimed again and sent by the new claim.
    app.advance(TimeDelta::minutes(2));
    stack.smtp.wait_for(1).await;
    app.eventually("the invitation is sent", || async { invitation_status(app).await == ["sent"] }).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // the first send ends and records nothing
    let sent = setup_links(&stack.smtp, &app.url);
    if backend == Backend::Sqlite {
        assert_eq!(sent.len(), 2, "the replacing claim sent it too");
    }
    assert!(sent.iter().all(|link| *link == sent[0]), "every email carries the one link: {sent:?}");
    assert_link_works(app, &sent[0]).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox WHERE status = 'sent'").await, 1);
}

async fn an_absurd_retry_after_is_held_to_the_cap_and_the_service_goes_on(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    stack.sms.script([Reply::RetryAfter("10000000000000")]);
    let answer = app.submit("shop_1", &jana(), "int_1", "sms").await;
    assert_eq!(code(&answer), "invitation_queued", "{answer}");
    let cap = 30 * 60 * 1000;
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM outbox WHERE next_attempt_at - created_at <= {cap}")).await,
        1,
        "the wait is held to the retry cap"
    );
    // Every write still works: the writer did not die.
    app.deliver(&customer_updated("shop_1", "cus_other", 1, "ola@example.com")).await;
    app.advance(TimeDelta::minutes(31));
    stack.sms.wait_for(1).await;
    app.eventually("the invitation is sent", || async { invitation_status(app).await == ["sent"] }).await;
}

async fn a_gateway_answering_nonsense_is_retried(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    stack.sms.script([Reply::Nonsense(502), Reply::Nonsense(302)]);
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "sms").await), "invitation_queued");
    let errors = app.rows("SELECT last_error FROM outbox").await;
    let error: String = errors[0].try_get("", "last_error").unwrap();
    assert_eq!(error, "SMS gateway answered 502 Bad Gateway");
    next_round(app).await;
    next_round(app).await;
    stack.sms.wait_for(1).await;
    app.eventually("the invitation is sent", || async { invitation_status(app).await == ["sent"] }).await;
}

async fn delivery_errors_keep_no_address_and_no_number(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    stack.smtp.refuse(EMAIL, 550);
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invalid_channel");
    stack.sms.script([Reply::InvalidNumber]);
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_2", "sms").await), "invalid_channel");
    let mut kept = String::new();
    for row in app.rows("SELECT last_error FROM outbox").await {
        kept.push_str(&row.try_get::<String>("", "last_error").unwrap());
    }
    for row in app.rows("SELECT failure FROM invitations").await {
        kept.push_str(&row.try_get::<String>("", "failure").unwrap());
    }
    assert!(kept.contains("550") && kept.contains("21211"), "codes are kept: {kept}");
    assert!(!kept.contains(EMAIL) && !kept.contains(&MOBILE[1..]), "{kept}");
    let logged: Vec<String> = app
        .logs
        .text()
        .lines()
        .filter(|l| l.contains("delivery failed") || l.contains("SMTP") || l.contains("gateway"))
        .map(str::to_owned)
        .collect();
    assert!(!logged.is_empty());
    assert!(logged.iter().all(|l| !l.contains(EMAIL) && !l.contains(&MOBILE[1..])), "{logged:?}");
}

async fn a_shutdown_with_a_send_hanging_says_not_ready_and_the_next_instance_sends_the_same_link(
    backend: Backend,
) {
    let Stack { app, smtp, sms } =
        Stack::start_with(backend, vec![("PORTAL_SEND_TIMEOUT", "60s"), ("PORTAL_SHUTDOWN_GRACE", "3s")])
            .await;
    smtp.go_silent(true);
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invitation_queued");
    let (client, url, clock, logs) =
        (app.client.clone(), app.url.clone(), app.clock.clone(), app.logs.clone());
    let stopping = tokio::spawn(app.stop());
    // From the first moment of the shutdown, and while the listener still answers: not ready.
    let mut said = None;
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("{url}/readyz")).send().await {
            said = Some((response.status().as_u16(), response.text().await.unwrap_or_default()));
            if said.as_ref().is_some_and(|(status, _)| *status == 503) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(said, Some((503, "shutting down".to_owned())));
    let database = stopping.await.unwrap();
    let text = logs.text();
    assert_eq!(text.lines().filter(|l| l.contains("sends in flight are abandoned")).count(), 1);
    let released: Vec<&str> =
        text.lines().filter(|l| l.contains("leases of unfinished sends given back")).collect();
    assert!(
        released.len() == 1 && released[0].contains("released=1"),
        "its lease was given back: {released:?}"
    );

    // The abandoned send gave its lease back; the next instance sends the message, with its link.
    smtp.go_silent(false);
    let mut env = sms.settings();
    env.push(("PORTAL_SMTP_URL".into(), smtp.url()));
    let app = TestApp::start(database, Options { env, ..Options::default() }, clock).await;
    next_round(&app).await;
    smtp.wait_for(1).await;
    let sent = setup_links(&smtp, &app.url);
    assert_link_works(&app, &sent[0]).await;
    app.eventually("the invitation is sent", || async { invitation_status(&app).await == ["sent"] }).await;
}

async fn a_panicking_write_fails_alone_and_the_service_goes_on(backend: Backend) {
    let app = TestApp::spawn(backend).await.expect("backend available");
    app.deliver(&installed("shop_1", 1)).await;
    let db = app.db.clone();
    let outcome = tokio::spawn(async move {
        db.write(|_txn| {
            Box::pin(async move {
                let nothing: Vec<u8> = Vec::new();
                let _ = nothing[nothing.len()];
                Ok::<_, sea_orm::DbErr>(())
            })
        })
        .await
    })
    .await;
    // SQLite's writer answers with an error; on PostgreSQL the work runs in the caller's task, which
    // the panic ends (a handler's panic becomes a 500, see `recover`). Either way nothing was kept.
    assert!(matches!(outcome, Ok(Err(_))) || outcome.is_err_and(|e| e.is_panic()));
    app.deliver(&customer_updated("shop_1", "cus_1", 1, "ola@example.com")).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 1);
}

async fn an_erased_customers_message_files_go_with_them(backend: Backend) {
    // File mode: no SMTP server, no gateway.
    let app = TestApp::spawn(backend).await.expect("backend available");
    app.deliver(&installed("shop_1", 1)).await;
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invitation_sent");
    let ola = customer("cus_ola", Some("ola@example.com"), Some("+61400000001"), 1);
    assert_eq!(code(&app.submit("shop_1", &ola, "int_2", "sms").await), "invitation_sent");
    assert_eq!(app.outbox_files().len(), 2);
    app.deliver(&customer_deleted("shop_1", "cus_456", 9)).await;
    app.advance(TimeDelta::seconds(1)); // housekeeping runs when the clock moves
    app.eventually("the deleted customer's email file is gone", || async { app.outbox_files().len() == 1 })
        .await;
    let left = app.outbox_files();
    assert!(left[0].ends_with(std::path::Path::new("shop_1/cus_ola").join(left[0].file_name().unwrap())));
    assert!(!app.outbox_dir.join("shop_1/cus_456").exists(), "the customer's folder went too");
}

async fn a_link_used_after_an_ambiguous_send_leaves_the_invitation_sent(backend: Backend) {
    let stack = Stack::start_with(backend, vec![("PORTAL_SEND_TIMEOUT", "1s")]).await;
    let app = &stack.app;
    // The server accepts the email only after the sender gave up: the outcome is unknown to us, and
    // the message stays pending for a retry, but the customer has it.
    stack.smtp.delay_next(1, Duration::from_secs(3));
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invitation_queued");
    stack.smtp.wait_for(1).await;
    let link = setup_links(&stack.smtp, &app.url).remove(0);
    crate::web::set_up(app, &link).await;
    // The link was used, so the email arrived: the invitation is sent, not failed, and cannot be
    // sent again; nothing is left to retry.
    assert_eq!(invitation_status(app).await, ["sent"]);
    assert_eq!(code(&app.invoke("shop_1", &jana()).await), "invitation_already_sent");
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").await, 0);
    next_round(app).await;
    assert_eq!(stack.smtp.received().len(), 1, "not sent again");
}

/// The real binary, sent SIGTERM while the outbox worker's send hangs on a mail server that stopped
/// answering, exits by itself within its grace period.
#[tokio::test]
async fn sigterm_during_a_hanging_send_exits_within_the_grace_period() {
    let smtp = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let secret_text = WebhookSecret::generate();
    let secret = WebhookSecret::parse(&secret_text).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal-invites"))
        .arg("serve")
        .env_clear()
        .env("PORTAL_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTAL_PUBLIC_URL", &base)
        .env("PORTAL_DATABASE_URL", format!("sqlite://{}/portal.db?mode=rwc", dir.path().display()))
        .env("PORTAL_WEBHOOK_SECRETS", &secret_text)
        .env("PORTAL_SMTP_URL", smtp.url())
        .env("PORTAL_SEND_TIMEOUT", "120s")
        .env("PORTAL_SHUTDOWN_GRACE", "2s")
        .env("PORTAL_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // reqwest is built without a default TLS provider; the service installs ring's, and so does this
    // test, which may run before any service has started in this process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let post = |path: &'static str, message: Value| {
        let (client, base, secret) = (client.clone(), base.clone(), secret.clone());
        async move {
            let body = serde_json::to_vec(&message).unwrap();
            let id = portal_invites::random::id("msg");
            let ts = chrono::Utc::now().timestamp();
            client
                .post(format!("{base}{path}"))
                .header("webhook-id", &id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", secret.sign(&id, ts, &body))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
        }
    };
    let ready = poll(200, Duration::from_millis(50), || async {
        client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200).then_some(())
    });
    assert!(ready.await.is_some(), "the service started");
    assert_eq!(post("/webhooks", installed("shop_1", 1)).await.unwrap().status(), 204);
    // The first attempt (made by the request) is deferred by the server; the retry, made by the
    // outbox worker within the first backoff (at most 10 s), finds a server that stopped answering.
    smtp.refuse_all(Some(451));
    let submit = dialog_submitted("shop_1", &jana(), "int_1", Some("email"));
    let answer: Value = post("/actions/send-portal-invitation", submit).await.unwrap().json().await.unwrap();
    assert_eq!(code(&answer), "invitation_queued", "{answer}");
    smtp.refuse_all(None);
    smtp.stall(true);
    poll(300, Duration::from_millis(50), || async { (smtp.connections() >= 2).then_some(()) }).await;
    assert!(smtp.connections() >= 2, "the worker's retry is under way, hanging");

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let exited = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    let status = exited.expect("the process exits by itself after SIGTERM").unwrap();
    assert!(status.success(), "{status:?}");
}
