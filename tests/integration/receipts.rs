//! SMS delivery receipts (contract §10) end to end: the fake gateway sends signed status reports to
//! the `StatusCallback` of the messages it accepted, in order and out of order, repeated, forged,
//! unsigned and for messages we never sent, and answers the day-later look-up. What the invitation,
//! its link and the customer's audit trail make of each.

use chrono::TimeDelta;
use portal_invites::maintenance::run_once;

use crate::{
    delivery::invitation_status,
    helpers::*,
    invitations::links,
    sms_gateway::{Lookup, Reply, Signing, Sms, post_report, report, report_form, twilio_signature},
    web::{Web, set_up},
};

crate::with_each_backend!(
    every_sms_asks_for_reports_and_its_sid_is_kept,
    a_delivered_report_keeps_the_invitation_sent_and_records_delivered,
    an_undelivered_report_fails_the_invitation_kills_its_link_and_a_new_one_may_be_sent,
    a_late_report_never_undoes_a_final_one,
    a_repeated_report_has_no_effect_beyond_its_first_copy,
    forged_unsigned_or_malformed_reports_are_refused_and_change_nothing,
    a_report_about_a_message_we_do_not_know_is_acknowledged_and_ignored,
    a_failed_report_after_the_link_was_used_leaves_the_invitation_sent,
    a_report_that_outruns_the_gateways_answer_still_finds_its_message,
    an_email_accepted_by_the_mail_server_is_recorded_delivered_and_an_sms_waits_for_its_receipt,
    a_message_without_a_final_report_is_looked_up_once_a_day_later,
    without_a_gateway_reports_are_not_accepted,
);

/// Invites the example customer by SMS through the stack's gateway; returns the SMS it accepted.
async fn invite_by_sms(stack: &Stack) -> Sms {
    let answer = stack.app.submit("shop_1", &jana(), "int_1", "sms").await;
    assert_eq!(code(&answer), "invitation_sent", "{answer}");
    stack.sms.wait_for(1).await.remove(0)
}

/// Sends a genuine report and expects it acknowledged.
async fn reported(sms: &Sms, status: &str, error_code: Option<&str>) {
    let answer = report(sms, status, error_code, Signing::Genuine).await;
    assert_eq!(answer.status().as_u16(), 204, "{status}: {}", answer.text().await.unwrap());
}

/// How many audit events named `event` whose detail contains `detail`.
async fn events(app: &TestApp, event: &str, detail: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM audit_events WHERE event = '{event}' AND COALESCE(detail, '') LIKE '%{detail}%'"
    ))
    .await
}

async fn report_status(app: &TestApp) -> Option<String> {
    let rows = app.rows("SELECT report_status FROM outbox WHERE channel = 'sms'").await;
    rows[0].try_get::<Option<String>>("", "report_status").unwrap()
}

async fn every_sms_asks_for_reports_and_its_sid_is_kept(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    let sms = invite_by_sms(&stack).await;
    let rows = app.rows("SELECT id, provider_ref FROM outbox").await;
    let id: String = rows[0].try_get("", "id").unwrap();
    assert_eq!(rows[0].try_get::<Option<String>>("", "provider_ref").unwrap(), Some(sms.sid.clone()));
    assert_eq!(sms.status_callback, Some(format!("{}/sms/status?message={id}", app.url)));
}

async fn a_delivered_report_keeps_the_invitation_sent_and_records_delivered(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    let sms = invite_by_sms(&stack).await;
    reported(&sms, "sent", None).await;
    assert_eq!(report_status(app).await.as_deref(), Some("sent"));
    assert_eq!(events(app, "delivered", "").await, 0, "sent is not delivered yet");
    reported(&sms, "delivered", None).await;
    assert_eq!(invitation_status(app).await, ["sent"]);
    assert_eq!(report_status(app).await.as_deref(), Some("delivered"));
    assert_eq!(events(app, "delivered", r#""channel":"sms""#).await, 1);
    // Every report is kept, without the numbers it carried.
    assert_eq!(app.count("SELECT COUNT(*) FROM sms_reports").await, 2);
    let numbers = format!(
        "SELECT COUNT(*) FROM sms_reports WHERE message_sid LIKE '%{0}%' OR status LIKE '%{0}%' OR id LIKE '%{0}%'",
        &MOBILE[1..]
    );
    assert_eq!(app.count(&numbers).await, 0);
    // Still sent: no second invitation.
    assert_eq!(code(&app.invoke("shop_1", &jana()).await), "invitation_already_sent");
    // The reports go with the customer; another customer's stay.
    let ola = customer("cus_ola", Some("ola@example.com"), Some("+61412000111"), 1);
    assert_eq!(code(&app.submit("shop_1", &ola, "int_ola", "sms").await), "invitation_sent");
    reported(&stack.sms.wait_for(2).await.remove(1), "delivered", None).await;
    app.deliver(&customer_deleted("shop_1", "cus_456", 9)).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM sms_reports").await, 1);
}

async fn an_undelivered_report_fails_the_invitation_kills_its_link_and_a_new_one_may_be_sent(
    backend: Backend,
) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    let sms = invite_by_sms(&stack).await;
    let link = links(&sms.body, &app.url).remove(0);
    reported(&sms, "sent", None).await;
    reported(&sms, "undelivered", Some("30003")).await;

    assert_eq!(invitation_status(app).await, ["failed"]);
    assert_eq!(app.count("SELECT COUNT(*) FROM tokens WHERE revoked_at IS NOT NULL").await, 1);
    let dead = Web::new(app).get(&link).await;
    assert_eq!(dead.status, 404);
    assert!(dead.body.contains("This link no longer works"));
    assert_eq!(events(app, "delivery_failed", r#""reason":"phone_unreachable""#).await, 1);
    assert_eq!(events(app, "delivery_failed", r#""channel":"sms""#).await, 1);
    let rows = app.rows("SELECT report_error FROM outbox").await;
    assert_eq!(rows[0].try_get::<Option<String>>("", "report_error").unwrap().as_deref(), Some("30003"));

    // The staff may send a new one.
    assert_eq!(app.invoke("shop_1", &jana()).await["response_action"], "open_dialog");
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_2", "email").await), "invitation_sent");
    assert_eq!(invitation_status(app).await, ["failed", "sent"]);
}

async fn a_late_report_never_undoes_a_final_one(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    let sms = invite_by_sms(&stack).await;
    reported(&sms, "delivered", None).await;
    // Out of order: the earlier stages arrive after the final one; then a contradicting final one.
    for (status, code) in [("sent", None), ("queued", None), ("undelivered", Some("30007"))] {
        reported(&sms, status, code).await;
        assert_eq!(report_status(app).await.as_deref(), Some("delivered"), "after {status}");
    }
    assert_eq!(invitation_status(app).await, ["sent"]);
    assert_eq!(app.count("SELECT COUNT(*) FROM tokens WHERE revoked_at IS NOT NULL").await, 0);
    assert_eq!(events(app, "delivered", "").await, 1);
    assert_eq!(events(app, "delivery_failed", "").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM sms_reports").await, 4, "each is kept all the same");
}

async fn a_repeated_report_has_no_effect_beyond_its_first_copy(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    let sms = invite_by_sms(&stack).await;
    for _ in 0..3 {
        reported(&sms, "undelivered", Some("30003")).await;
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM sms_reports").await, 1);
    assert_eq!(events(app, "delivery_failed", "").await, 1);
    let failed_at: Option<i64> =
        app.rows("SELECT failed_at FROM invitations").await[0].try_get("", "failed_at").unwrap();

    // A new invitation is sent; the first one's report, repeated once more, touches nothing.
    app.advance(TimeDelta::minutes(5));
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_2", "email").await), "invitation_sent");
    reported(&sms, "undelivered", Some("30003")).await;
    assert_eq!(invitation_status(app).await, ["failed", "sent"]);
    assert_eq!(events(app, "delivery_failed", "").await, 1);
    let still: Option<i64> = app.rows("SELECT failed_at FROM invitations WHERE status = 'failed'").await[0]
        .try_get("", "failed_at")
        .unwrap();
    assert_eq!(still, failed_at);
}

async fn forged_unsigned_or_malformed_reports_are_refused_and_change_nothing(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    let sms = invite_by_sms(&stack).await;
    let link = links(&sms.body, &app.url).remove(0);
    let url = sms.status_callback.clone().unwrap();
    let form = report_form(&sms, "undelivered", Some("30003"));
    let genuine = twilio_signature(crate::sms_gateway::TOKEN, &url, &form);

    for signing in [Signing::Forged, Signing::Missing] {
        let answer = post_report(&url, &form, signing).await;
        assert_eq!(answer.status().as_u16(), 403, "{signing:?}");
        assert_eq!(answer.headers()["content-type"], "application/problem+json");
        let text = answer.text().await.unwrap();
        let problem: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["code"], "invalid-gateway-signature");
        assert!(!text.contains(&genuine), "the expected signature is never revealed");
    }
    // A genuine signature over another URL (the report moved to another message) is no signature.
    let elsewhere = format!("{}/sms/status?message=msg_other", app.url);
    let moved = reqwest::Client::new()
        .post(&elsewhere)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", &genuine)
        .body(url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&form).finish())
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status().as_u16(), 403);
    // A changed parameter under the genuine signature.
    let mut tampered = form.clone();
    tampered.retain(|(name, _)| name != "ErrorCode");
    let tampered_body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&tampered).finish();
    let answer = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", &genuine)
        .body(tampered_body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 403);
    // Too large, or not a form: refused before the signature is even looked at.
    let huge = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("Body={}", "x".repeat(17 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status().as_u16(), 413);
    let json = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("x-twilio-signature", &genuine)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status().as_u16(), 415);
    // Signed, but not a report: 400, and nothing stored.
    let empty: Vec<(String, String)> = vec![("AccountSid".into(), crate::sms_gateway::SID.into())];
    assert_eq!(post_report(&url, &empty, Signing::Genuine).await.status().as_u16(), 400);

    assert_eq!(invitation_status(app).await, ["sent"]);
    assert_eq!(report_status(app).await, None);
    assert_eq!(app.count("SELECT COUNT(*) FROM sms_reports").await, 0);
    assert_eq!(events(app, "delivery_failed", "").await, 0);
    assert_eq!(Web::new(app).get(&link).await.status, 200, "the link still works");
    assert!(app.logs.count("bad_gateway_signature") >= 2);
    assert!(!app.logs.text().contains(&genuine) && !app.logs.text().contains(MOBILE));
}

async fn a_report_about_a_message_we_do_not_know_is_acknowledged_and_ignored(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    let sms = invite_by_sms(&stack).await;
    let stranger = Sms { sid: "SM00000000000000000000000000000999".into(), ..sms.clone() };
    // To the bare endpoint, and to our message's callback URL (which has the gateway's other sid).
    let bare = format!("{}/sms/status", app.url);
    let form = report_form(&stranger, "undelivered", Some("30003"));
    assert_eq!(post_report(&bare, &form, Signing::Genuine).await.status().as_u16(), 204);
    assert_eq!(
        report(&stranger, "undelivered", Some("30003"), Signing::Genuine).await.status().as_u16(),
        204
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM sms_reports").await, 0);
    assert_eq!(invitation_status(app).await, ["sent"]);
    assert_eq!(report_status(app).await, None);
    assert_eq!(events(app, "delivery_failed", "").await, 0);
}

async fn a_failed_report_after_the_link_was_used_leaves_the_invitation_sent(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    let sms = invite_by_sms(&stack).await;
    let link = links(&sms.body, &app.url).remove(0);
    set_up(app, &link).await;
    reported(&sms, "failed", Some("30008")).await;
    assert_eq!(invitation_status(app).await, ["sent"], "the message evidently arrived");
    assert_eq!(events(app, "delivery_failed", "").await, 0);
    assert_eq!(report_status(app).await.as_deref(), Some("failed"), "the report is kept as it came");
    let click = app.invoke("shop_1", &jana()).await;
    assert_eq!(code(&click), "invitation_already_sent");
    // Staff read that it arrived (its link was used), not that it failed.
    let said = click["message"]["text"].as_str().unwrap();
    assert!(said.contains("Delivered to the phone on") && said.contains("used the set-up link"), "{said}");
    assert!(!said.contains("Not delivered"), "{said}");
}

async fn a_report_that_outruns_the_gateways_answer_still_finds_its_message(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    stack.sms.script([Reply::ReportFirst("delivered")]);
    let sms = invite_by_sms(&stack).await;
    // The report came while the sid was not yet recorded: it found its message by the callback URL.
    assert_eq!(report_status(app).await.as_deref(), Some("delivered"));
    assert_eq!(events(app, "delivered", r#""channel":"sms""#).await, 1);
    // Then the attempt was recorded with its sid, and later reports find it by that.
    let rows = app.rows("SELECT provider_ref FROM outbox").await;
    assert_eq!(rows[0].try_get::<Option<String>>("", "provider_ref").unwrap(), Some(sms.sid.clone()));
    assert_eq!(invitation_status(app).await, ["sent"]);
    reported(&sms, "delivered", None).await;
    reported(&sms, "sent", None).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM sms_reports").await, 2, "the repeat was not kept twice");
    assert_eq!(events(app, "delivered", "").await, 1);
}

async fn an_email_accepted_by_the_mail_server_is_recorded_delivered_and_an_sms_waits_for_its_receipt(
    backend: Backend,
) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invitation_sent");
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE event = 'delivered' AND customer_id = 'cus_456' \
             AND shop_id = 'shop_1' AND by_id IS NULL"
        )
        .await,
        1
    );
    assert_eq!(events(app, "delivered", r#""channel":"email""#).await, 1);

    let other = customer("cus_2", Some("ola@example.com"), Some(MOBILE), 1);
    assert_eq!(code(&app.submit("shop_1", &other, "int_2", "sms").await), "invitation_sent");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE event = 'delivered' AND customer_id = 'cus_2'")
            .await,
        0,
        "accepted by the gateway is not delivered yet"
    );
}

async fn a_message_without_a_final_report_is_looked_up_once_a_day_later(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    let sms = invite_by_sms(&stack).await;
    reported(&sms, "sent", None).await;
    stack.sms.script_lookup(&sms.sid, [Lookup::ServerError, Lookup::Status("undelivered", Some(30005))]);

    app.advance(TimeDelta::hours(23));
    run_once(app.jobs()).await;
    assert!(stack.sms.looked_up().is_empty(), "not before a day");

    // The first look-up finds the gateway failing: the message stays due, and the next round applies
    // the answer (each check runs a round: the housekeeping also runs one when the clock moves).
    app.advance(TimeDelta::hours(2));
    app.eventually("the answer was applied", || async {
        run_once(app.jobs()).await;
        invitation_status(app).await == ["failed"]
    })
    .await;
    assert_eq!(stack.sms.looked_up(), [sms.sid.clone(), sms.sid.clone()]);
    assert_eq!(events(app, "delivery_failed", r#""reason":"not_a_mobile""#).await, 1);
    assert_eq!(report_status(app).await.as_deref(), Some("undelivered"));
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox WHERE looked_up_at IS NOT NULL").await, 1);

    // Once answered, never again.
    app.advance(TimeDelta::hours(1));
    run_once(app.jobs()).await;
    run_once(app.jobs()).await;
    assert_eq!(stack.sms.looked_up().len(), 2);
    assert_eq!(events(app, "delivery_failed", "").await, 1);
}

async fn without_a_gateway_reports_are_not_accepted(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let sms = Sms {
        to: MOBILE.into(),
        from: "+15005550006".into(),
        body: String::new(),
        sid: "SM00000000000000000000000000000001".into(),
        status_callback: Some(format!("{}/sms/status?message=msg_1", app.url)),
    };
    let answer = report(&sms, "delivered", None, Signing::Genuine).await;
    assert_eq!(answer.status().as_u16(), 404);
    let problem: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(problem["code"], "sms-gateway-not-configured");
    assert!(problem["detail"].as_str().unwrap().contains("PORTAL_TWILIO_AUTH_TOKEN"));
    assert_eq!(app.get("/problems/sms-gateway-not-configured").await.status().as_u16(), 200);
    assert_eq!(app.count("SELECT COUNT(*) FROM sms_reports").await, 0);
}
