//! Delivery through the outbox: refusals and retries at the SMTP server and the SMS gateway, outages,
//! a restart with messages pending, several workers on one database, and what the host's changes to
//! the customer do to an invitation.

use std::time::Duration;

use chrono::TimeDelta;
use serde_json::json;
use sha2::Digest;

use crate::{helpers::*, invitations::links, sms_gateway::Reply};

crate::with_each_backend!(
    an_invalid_number_fails_the_invitation_and_a_new_one_may_be_sent,
    a_gateway_asking_to_slow_down_is_retried_after_its_retry_after,
    a_gateway_error_is_retried,
    an_smtp_outage_queues_the_invitation_and_delivers_it_when_the_server_is_back,
    a_refused_address_fails_the_invitation_with_the_reason,
    retries_run_out_and_the_invitation_fails,
    a_slow_mail_server_gets_a_queued_answer_in_time_and_still_delivers,
    messages_pending_at_a_restart_are_delivered_afterwards,
    a_changed_email_moves_the_username_and_kills_the_old_link,
    a_changed_email_already_used_by_another_account_keeps_the_username,
    deleting_the_customer_erases_everything_the_portal_kept,
    uninstall_erasure_covers_accounts_invitations_tokens_and_messages,
);

pub async fn invitation_status(app: &TestApp) -> Vec<String> {
    // Sorted by name: rows issued at the same (manual) instant have no order of their own.
    let mut statuses: Vec<String> = app
        .rows("SELECT status FROM invitations")
        .await
        .iter()
        .map(|r| r.try_get::<String>("", "status").unwrap())
        .collect();
    statuses.sort();
    statuses
}

/// Moves the clock past any backoff (the cap is 30 minutes) and waits until the worker has attempted
/// every message that became due (none due, none in flight).
pub async fn next_round(app: &TestApp) {
    app.advance(TimeDelta::minutes(31));
    let now = app.clock.now().timestamp_millis();
    let busy = format!(
        "SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND (next_attempt_at <= {now} OR lease_until IS NOT NULL)"
    );
    app.eventually("the worker has attempted what was due", || async { app.count(&busy).await == 0 }).await;
}

async fn an_invalid_number_fails_the_invitation_and_a_new_one_may_be_sent(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    stack.sms.script([Reply::InvalidNumber]);
    let answer = app.submit("shop_1", &jana(), "int_1", "sms").await;
    assert_eq!((answer["response_action"].as_str(), code(&answer)), (Some("errors"), "invalid_channel"));
    let said = answer["errors"]["channel"]["text"].as_str().unwrap();
    assert!(said.contains("not a valid phone number") && said.contains("send by email"), "{said}");
    assert_eq!(invitation_status(app).await, ["failed"]);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tokens WHERE revoked_at IS NOT NULL").await,
        1,
        "its token is dead"
    );
    // Re-invitable: the dialog opens again, and email goes through.
    assert_eq!(app.invoke("shop_1", &jana()).await["response_action"], "open_dialog");
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invitation_sent");
    assert_eq!(invitation_status(app).await, ["failed", "sent"]);
    assert_eq!(stack.smtp.wait_for(1).await.len(), 1);
}

async fn a_gateway_asking_to_slow_down_is_retried_after_its_retry_after(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    stack.sms.script([Reply::TooManyRequests(1200)]);
    let answer = app.submit("shop_1", &jana(), "int_1", "sms").await;
    assert_eq!(code(&answer), "invitation_queued", "{answer}");
    assert!(answer["message"]["text"].as_str().unwrap().contains("don't need to send it again"));
    // The gateway's twenty minutes are honoured: the next attempt is not due before them.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE next_attempt_at - created_at >= 1200000").await,
        1
    );
    app.advance(TimeDelta::minutes(10));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stack.sms.calls(), 1);
    // Past them it is.
    app.advance(TimeDelta::minutes(11));
    stack.sms.wait_for(1).await;
    app.eventually("the invitation is sent", || async { invitation_status(app).await == ["sent"] }).await;
    // Now it counts as sent: no second invitation.
    assert_eq!(code(&app.invoke("shop_1", &jana()).await), "invitation_already_sent");
}

async fn a_gateway_error_is_retried(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    stack.sms.script([Reply::ServerError, Reply::ServerError]);
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "sms").await), "invitation_queued");
    // A click while it is retried: it is not sent again, and the text says why it has not arrived.
    let click = app.invoke("shop_1", &jana()).await;
    assert_eq!(code(&click), "invitation_already_sent", "a click while queued");
    let said = click["message"]["text"].as_str().unwrap();
    assert!(
        said.contains("by SMS") && said.contains("delivery is being retried (1 attempt so far)"),
        "{said}"
    );
    next_round(app).await;
    next_round(app).await;
    let sms = stack.sms.wait_for(1).await;
    assert_eq!(sms.len(), 1);
    assert_eq!(stack.sms.calls(), 3);
    // Every attempt carried the same link (sealed in the outbox row, never stored in clear): the
    // delivered one works, and only its hash is stored.
    let link = &links(&sms[0].body, &app.url)[0];
    let token = link.rsplit('/').next().unwrap();
    let hash: String = sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(app.count(&format!("SELECT COUNT(*) FROM tokens WHERE token_hash = '{hash}'")).await, 1);
}

async fn an_smtp_outage_queues_the_invitation_and_delivers_it_when_the_server_is_back(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    stack.smtp.stop();
    let answer = app.submit("shop_1", &jana(), "int_1", "email").await;
    assert_eq!(code(&answer), "invitation_queued", "{answer}");
    assert!(answer["message"]["text"].as_str().unwrap().contains("email server hasn't accepted it yet"));
    next_round(app).await;
    assert!(stack.smtp.received().is_empty());
    assert_eq!(invitation_status(app).await, ["pending"]);

    stack.smtp.resume().await;
    next_round(app).await;
    let received = stack.smtp.wait_for(1).await;
    assert_eq!(received.len(), 1, "delivered once, nothing lost");
    app.eventually("the invitation is sent", || async { invitation_status(app).await == ["sent"] }).await;
}

async fn a_refused_address_fails_the_invitation_with_the_reason(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    stack.smtp.refuse(EMAIL, 550);
    let answer = app.submit("shop_1", &jana(), "int_1", "email").await;
    assert_eq!(code(&answer), "invalid_channel", "{answer}");
    assert!(answer["errors"]["channel"]["text"].as_str().unwrap().contains("refused jana@example.com"));
    assert_eq!(invitation_status(app).await, ["failed"]);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE status = 'failed' AND recipient IS NULL").await,
        1
    );
    // The audit trail says it did not reach the customer, and why in a word; no address.
    let trail = "SELECT COUNT(*) FROM audit_events WHERE event = 'delivery_failed' AND customer_id = 'cus_456' \
                 AND detail LIKE '%\"channel\":\"email\"%' AND detail LIKE '%\"reason\":\"refused\"%'";
    assert_eq!(app.count(trail).await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_events WHERE event = 'delivered'").await, 0);
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM audit_events WHERE detail LIKE '%{EMAIL}%'")).await,
        0
    );
}

async fn retries_run_out_and_the_invitation_fails(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    stack.smtp.refuse_all(Some(451));
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invitation_queued");
    for _ in 0..12 {
        next_round(app).await;
    }
    app.eventually("the invitation failed", || async { invitation_status(app).await == ["failed"] }).await;
    assert_eq!(app.count("SELECT CAST(attempts AS BIGINT) FROM outbox").await, 10);
    let gave_up =
        "SELECT COUNT(*) FROM audit_events WHERE event = 'delivery_failed' AND detail LIKE '%gave_up%'";
    assert_eq!(app.count(gave_up).await, 1, "the retries that did not deliver are not events; giving up is");
    // A new invitation may be sent once the server accepts again.
    stack.smtp.refuse_all(None);
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_2", "email").await), "invitation_sent");
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_events WHERE event = 'delivered'").await, 1);
}

async fn a_slow_mail_server_gets_a_queued_answer_in_time_and_still_delivers(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    stack.smtp.delay(Duration::from_secs(4));
    let answer = app.submit("shop_1", &jana(), "int_1", "email").await;
    assert_eq!(code(&answer), "invitation_queued", "{answer}");
    // The attempt that outlasted the answer carries on and is recorded; the worker does not send it again.
    stack.smtp.wait_for(1).await;
    app.eventually("the invitation is sent", || async { invitation_status(app).await == ["sent"] }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stack.smtp.received().len(), 1);
}

async fn messages_pending_at_a_restart_are_delivered_afterwards(backend: Backend) {
    let Stack { app, smtp, sms } = Stack::start(backend).await;
    smtp.stop();
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invitation_queued");
    let clock = app.clock.clone();
    let database = app.stop().await;

    smtp.resume().await;
    let mut env = sms.settings();
    env.push(("PORTAL_SMTP_URL".into(), smtp.url()));
    let app = TestApp::start(database, Options { env, ..Options::default() }, clock).await;
    next_round(&app).await;
    assert_eq!(smtp.wait_for(1).await.len(), 1);
    app.eventually("the invitation is sent", || async { invitation_status(&app).await == ["sent"] }).await;
}

async fn a_changed_email_moves_the_username_and_kills_the_old_link(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invitation_sent");
    app.deliver(&customer_updated("shop_1", "cus_456", 4, "jana.k@example.com")).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM portal_accounts WHERE username = 'jana.k@example.com'").await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tokens WHERE purpose = 'setup' AND revoked_at IS NOT NULL").await,
        1
    );
    // Sent stays sent: the customer recovers with "forgot password" at the new address.
    assert_eq!(invitation_status(app).await, ["sent"]);

    // A pending invitation by email to the old address is abandoned, so a new one may go out.
    stack.smtp.stop();
    let bob = customer("cus_bob", Some("bob@example.com"), None, 1);
    assert_eq!(code(&app.submit("shop_1", &bob, "int_2", "email").await), "invitation_queued");
    let mut moved = bob.clone();
    moved["email"] = json!("robert@example.com");
    moved["version"] = json!(2);
    app.deliver(&host_messages::customer_updated("shop_1", moved.clone(), at(0))).await;
    stack.smtp.resume().await;
    next_round(app).await;
    assert_eq!(stack.smtp.received().len(), 1, "nothing went to the old address");
    assert_eq!(code(&app.submit("shop_1", &moved, "int_3", "email").await), "invitation_sent");
    let received = stack.smtp.wait_for(2).await;
    assert_eq!(received[1].to, vec!["robert@example.com".to_owned()]);
    // The invitation cancelled before it went was no delivery, failed or not: the trail has only the
    // new one's acceptance.
    let bobs = |event: &str| {
        format!("SELECT COUNT(*) FROM audit_events WHERE customer_id = 'cus_bob' AND event = '{event}'")
    };
    assert_eq!(app.count(&bobs("delivered")).await, 1);
    assert_eq!(app.count(&bobs("delivery_failed")).await, 0);
}

async fn a_changed_email_already_used_by_another_account_keeps_the_username(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    let bob = customer("cus_bob", Some("bob@example.com"), None, 1);
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invitation_sent");
    assert_eq!(code(&app.submit("shop_1", &bob, "int_2", "email").await), "invitation_sent");
    app.deliver(&customer_updated("shop_1", "cus_bob", 2, EMAIL)).await;
    let rows = app.rows("SELECT username FROM portal_accounts WHERE customer_id = 'cus_bob'").await;
    assert_eq!(rows[0].try_get::<String>("", "username").unwrap(), "bob@example.com");
    assert_eq!(app.logs.count("keeping the old username"), 1);
}

async fn deleting_the_customer_erases_everything_the_portal_kept(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invitation_sent");
    let bob = customer("cus_bob", Some("bob@example.com"), None, 1);
    stack.smtp.stop();
    assert_eq!(code(&app.submit("shop_1", &bob, "int_2", "email").await), "invitation_queued");
    for id in ["cus_456", "cus_bob"] {
        app.deliver(&customer_deleted("shop_1", id, 9)).await;
    }
    for table in ["portal_accounts", "invitations", "tokens", "outbox"] {
        assert_eq!(app.count(&format!("SELECT COUNT(*) FROM {table}")).await, 0, "{table} kept rows");
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM webhook_messages WHERE endpoint <> 'webhooks'").await,
        0,
        "stored action answers name the customer"
    );
    stack.smtp.resume().await;
    next_round(app).await;
    assert!(stack.smtp.received().len() == 1, "the queued message to a deleted customer was not sent");
}

async fn uninstall_erasure_covers_accounts_invitations_tokens_and_messages(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    stack.smtp.stop();
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invitation_queued");
    app.deliver(&uninstalled("shop_1", SOMEONE, 0)).await;
    stack.smtp.resume().await;
    // Uninstalled at once: no invitation goes out any more.
    next_round(app).await;
    assert!(stack.smtp.received().is_empty());
    app.advance(TimeDelta::hours(49));
    app.eventually("everything is erased", || async {
        let mut total = 0;
        for table in ["customers", "portal_accounts", "invitations", "tokens", "outbox"] {
            total += app.count(&format!("SELECT COUNT(*) FROM {table}")).await;
        }
        total == 0
    })
    .await;
}

#[tokio::test]
async fn two_workers_on_one_postgresql_database_send_each_of_200_invitations_once() {
    if postgres_admin_url().is_none() {
        eprintln!("skipped: set PORTAL_TEST_POSTGRES_URL to run this on PostgreSQL");
        return;
    }
    let smtp = crate::smtp::SmtpSink::start().await;
    let database = TestDatabase::create(Backend::Postgres).await.unwrap();
    let shared = database.share();
    let clock = portal_invites::clock::Clock::manual(start_time());
    let secret = portal_invites::signature::WebhookSecret::generate();
    let env = vec![("PORTAL_SMTP_URL".to_owned(), smtp.url())];
    let first =
        TestApp::start(database, Options { env: env.clone(), secrets: vec![secret.clone()] }, clock.clone())
            .await;
    let second = TestApp::start(shared, Options { env, secrets: vec![secret] }, clock.clone()).await;

    first.deliver(&installed("shop_1", 1)).await;
    // The mail server refuses for now, so every invitation stays queued for the workers.
    smtp.refuse_all(Some(451));
    for chunk in (0..200).collect::<Vec<_>>().chunks(20) {
        let submissions = chunk.iter().map(|i| {
            let customer = customer(&format!("cus_{i}"), Some(&format!("c{i}@example.com")), None, 1);
            let app = if i % 2 == 0 { &first } else { &second };
            async move { app.submit("shop_1", &customer, &format!("int_{i}"), "email").await }
        });
        for answer in futures_util::future::join_all(submissions).await {
            assert_eq!(code(&answer), "invitation_queued");
        }
    }
    smtp.refuse_all(None);
    clock.advance(TimeDelta::minutes(31));
    let received = smtp.wait_for(200).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = if smtp.received().len() > received.len() { smtp.received() } else { received };
    let mut recipients: Vec<String> = received.iter().flat_map(|r| r.to.clone()).collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(received.len(), 200, "each invitation sent exactly once");
    assert_eq!(recipients.len(), 200);
    assert_eq!(first.count("SELECT COUNT(*) FROM outbox WHERE status = 'sent'").await, 200);
    drop(second);
}
