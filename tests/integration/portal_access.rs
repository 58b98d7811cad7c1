//! The staff's "Customer Portal access" action (contract §9) end to end: the status in every state
//! a customer can be in, each choice and its refusals, a resubmitted dialog, and two staff members
//! inviting one customer at the same moment.

use chrono::TimeDelta;
use serde_json::Value;

use crate::{
    helpers::*,
    sms_gateway::Reply,
    web::{PASSWORD, Web, emails, invite, link_in, set_up},
};

crate::on_both_databases!(
    a_customer_never_invited_has_no_portal_account,
    the_status_follows_the_customer_from_invitation_to_login,
    an_expired_unused_invitation_can_be_cancelled_and_sent_anew,
    an_invitation_whose_link_was_used_cannot_be_cancelled,
    staff_email_a_reset_link_limited_per_customer,
    ending_sessions_signs_the_customer_out_everywhere,
    a_resubmitted_dialog_gets_its_answer_again_and_acts_once,
    staff_acting_at_the_same_moment_keep_the_cap_and_act_once,
    every_submission_is_checked_again,
);

/// The customer `invite` makes: Jana Kowalski, `cus_1`, with an email and no mobile.
fn cus_1() -> Value {
    customer("cus_1", Some(EMAIL), None, 1)
}

async fn click(app: &TestApp, customer: &Value) -> Value {
    app.access(&access_invoked("shop_1", customer, "int_access")).await
}

async fn choose(app: &TestApp, interaction: &str, choice: &str) -> Value {
    app.access(&access_submitted("shop_1", &cus_1(), interaction, Some(choice))).await
}

/// The dialog's read-only text field `id`, or the message's text.
fn text_of<'a>(answer: &'a Value, id: &str) -> &'a str {
    let field = answer["dialog"]["fields"].as_array().and_then(|f| f.iter().find(|f| f["id"] == id));
    match field {
        Some(field) => field["text"].as_str().unwrap_or(""),
        None => answer["message"]["text"].as_str().unwrap_or(""),
    }
}

/// The values of the dialog's `action` radio.
fn choices(answer: &Value) -> Vec<String> {
    let Some(fields) = answer["dialog"]["fields"].as_array() else { return Vec::new() };
    let Some(radio) = fields.iter().find(|f| f["id"] == "action") else { return Vec::new() };
    radio["options"].as_array().unwrap().iter().map(|o| o["value"].as_str().unwrap().to_owned()).collect()
}

fn level_and_code(answer: &Value) -> (&str, &str, &str) {
    (
        answer["response_action"].as_str().unwrap_or(""),
        answer["message"]["level"].as_str().unwrap_or(""),
        answer["message"]["code"].as_str().unwrap_or(""),
    )
}

async fn a_customer_never_invited_has_no_portal_account(app: TestApp) {
    app.deliver(&installed("shop_1", 1)).await;
    let answer = click(&app, &jana()).await;
    assert_eq!(level_and_code(&answer), ("message", "info", "no_portal_account"), "{answer}");
    assert!(text_of(&answer, "status").contains("Jana has never been invited to the Customer Portal"));
    // Nothing was stored about a customer who has nothing: no account, no invitation.
    assert_eq!(app.count("SELECT COUNT(*) FROM portal_accounts").await, 0);
}

async fn the_status_follows_the_customer_from_invitation_to_login(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let answer = click(&app, &cus_1()).await;
    assert_eq!(answer["response_action"], "open_dialog", "{answer}");
    assert_eq!(answer["dialog"]["title"], "Customer Portal access");
    assert_eq!(
        text_of(&answer, "status"),
        "Invited by email on Mon 23 Nov 2026 at 8:00 PM AEST by Sam (front desk). Delivered on Mon 23 Nov \
         2026 at 8:00 PM AEST (accepted by Jana's email server). The set-up link hasn't been used yet; it \
         works until Mon 30 Nov 2026 at 8:00 PM AEST. Jana hasn't set a password yet."
    );
    assert!(text_of(&answer, "history").contains("invited by email by Sam (front desk)"), "{answer}");
    assert_eq!(choices(&answer), ["cancel_invitation"], "no password to reset, no session to end");

    app.advance(TimeDelta::hours(1));
    let _browser = set_up(&app, &link).await;
    let answer = click(&app, &cus_1()).await;
    let status = text_of(&answer, "status");
    assert!(status.contains("Jana used the set-up link on Mon 23 Nov 2026 at 9:00 PM AEST."), "{status}");
    assert!(status.contains("Jana set a password on Mon 23 Nov 2026 at 9:00 PM AEST."), "{status}");
    assert!(status.contains("Last login: Mon 23 Nov 2026 at 9:00 PM AEST."), "setting it logs in: {status}");
    assert!(status.contains("Logged in on 1 device right now."), "{status}");
    assert_eq!(choices(&answer), ["password_reset", "end_sessions"]);
    let labels = answer["dialog"]["fields"][2]["options"].to_string();
    assert!(labels.contains("Email a password-reset link to jana@example.com"), "{labels}");

    app.advance(TimeDelta::hours(1));
    let mut phone = Web::new(&app);
    let done = phone.submit("/p/shop_1/login", &[("email", EMAIL), ("password", PASSWORD)]).await;
    assert_eq!(done.status, 303);
    let status = text_of(&click(&app, &cus_1()).await, "status").to_owned();
    assert!(status.contains("Last login: Mon 23 Nov 2026 at 10:00 PM AEST."), "{status}");
    // The laptop's session idled out meanwhile; the phone's is open.
    assert!(status.contains("Logged in on 1 device right now."), "{status}");

    // Someone guesses from other browsers: the status says logins are slowed, and what still works.
    for _ in 0..5 {
        let mut stranger = Web::new(&app);
        let refused =
            stranger.submit("/p/shop_1/login", &[("email", EMAIL), ("password", "wrong guess 1")]).await;
        assert_eq!(refused.status, 422, "{}", refused.body);
    }
    let status = text_of(&click(&app, &cus_1()).await, "status").to_owned();
    assert!(status.contains("Logins are being slowed down after 5 failed attempts in a row"), "{status}");
    assert!(status.contains("\"Forgot password\" on the login page always works."), "{status}");
}

async fn an_expired_unused_invitation_can_be_cancelled_and_sent_anew(app: TestApp) {
    let old_link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    app.advance(TimeDelta::days(8));
    let answer = click(&app, &cus_1()).await;
    let status = text_of(&answer, "status");
    assert!(
        status.contains("The set-up link expired unused on Mon 30 Nov 2026 at 8:00 PM AEST."),
        "{status}"
    );
    assert_eq!(choices(&answer), ["cancel_invitation"]);
    // The first action still refuses a second invitation, and says the same.
    let refused = app.act(&dialog_submitted("shop_1", &cus_1(), "int_again", Some("email"))).await;
    assert_eq!(code(&refused), "invitation_already_sent");
    assert!(text_of(&refused, "").contains("The set-up link expired unused on Mon 30 Nov 2026"), "{refused}");

    let cancelled = choose(&app, "int_cancel", "cancel_invitation").await;
    assert_eq!(level_and_code(&cancelled), ("close", "success", "invitation_cancelled"), "{cancelled}");
    assert!(text_of(&cancelled, "").contains("You can now send a new invitation"));
    let status = text_of(&click(&app, &cus_1()).await, "status").to_owned();
    assert!(status.contains("Cancelled by staff on Tue 1 Dec 2026 at 8:00 PM AEST."), "{status}");
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE event = 'invitation_cancelled' AND by_id = 'usr_9'"
        )
        .await,
        1
    );

    // A new invitation may now be sent; the old link is dead, the new one works.
    let sent = app.act(&dialog_submitted("shop_1", &cus_1(), "int_new", Some("email"))).await;
    assert_eq!(code(&sent), "invitation_sent", "{sent}");
    let new_link = link_in(&emails(&app).last().unwrap().1, "/p/shop_1/setup/").unwrap();
    assert_ne!(new_link, old_link);
    assert_eq!(Web::new(&app).get(&old_link).await.status, 404);
    set_up(&app, &new_link).await;
}

async fn an_invitation_whose_link_was_used_cannot_be_cancelled(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;
    // The dialog no longer offers it; a stale or forged submission is refused with the state.
    let answer = choose(&app, "int_cancel", "cancel_invitation").await;
    assert_eq!(level_and_code(&answer), ("close", "info", "portal_status"), "{answer}");
    assert!(text_of(&answer, "").contains("The invitation can't be cancelled: Jana already used its link."));
    assert_eq!(app.count("SELECT COUNT(*) FROM invitations WHERE status = 'sent'").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_events WHERE event = 'invitation_cancelled'").await, 0);
}

async fn staff_email_a_reset_link_limited_per_customer(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;
    let before = emails(&app).len();
    let answer = choose(&app, "int_reset_1", "password_reset").await;
    assert_eq!(level_and_code(&answer), ("close", "success", "password_reset_sent"), "{answer}");
    assert!(
        text_of(&answer, "").contains(
            "A password-reset link is being emailed to jana@example.com. It works until Mon 23 Nov 2026 at \
             9:00 PM AEST."
        ),
        "{answer}"
    );
    // The sender was woken: the email arrives without waiting for the worker's next round.
    app.eventually("the reset email is written", || async { emails(&app).len() > before }).await;
    let reset = link_in(&emails(&app).last().unwrap().1, "/p/shop_1/reset/").expect("a reset link");
    let mut web = Web::new(&app);
    let done = web
        .submit(&reset, &[("password", "green tractor nine"), ("confirmation", "green tractor nine")])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);

    // Three an hour, then the choice is refused and no longer offered.
    for interaction in ["int_reset_2", "int_reset_3"] {
        assert_eq!(code(&choose(&app, interaction, "password_reset").await), "password_reset_sent");
    }
    let capped = choose(&app, "int_reset_4", "password_reset").await;
    assert_eq!(level_and_code(&capped), ("close", "info", "portal_status"), "{capped}");
    assert!(text_of(&capped, "").contains("already emailed 3 times in the last hour"));
    let answer = click(&app, &cus_1()).await;
    assert!(!choices(&answer).contains(&"password_reset".to_owned()), "{answer}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE event = 'reset_requested' AND by_id = 'usr_9'")
            .await,
        3
    );
    app.advance(TimeDelta::minutes(61));
    assert!(choices(&click(&app, &cus_1()).await).contains(&"password_reset".to_owned()));
}

async fn ending_sessions_signs_the_customer_out_everywhere(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut laptop = set_up(&app, &link).await;
    let mut phone = Web::new(&app);
    phone.submit("/p/shop_1/login", &[("email", EMAIL), ("password", PASSWORD)]).await;
    assert_eq!(phone.get("/p/shop_1").await.status, 200);
    let answer = choose(&app, "int_end", "end_sessions").await;
    assert_eq!(level_and_code(&answer), ("close", "success", "sessions_ended"), "{answer}");
    assert!(text_of(&answer, "").contains("(2 sessions ended)"), "{answer}");
    for browser in [&mut laptop, &mut phone] {
        assert_eq!(browser.get("/p/shop_1").await.location().as_deref(), Some("/p/shop_1/login"));
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 0);
    // With nothing left to end, the dialog no longer offers it.
    assert_eq!(choices(&click(&app, &cus_1()).await), ["password_reset"]);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE event = 'sessions_ended' AND by_name = 'Sam (front desk)'")
            .await,
        1
    );
}

async fn a_resubmitted_dialog_gets_its_answer_again_and_acts_once(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;
    let submission = access_submitted("shop_1", &cus_1(), "int_twice", Some("password_reset"));
    let first = app.access(&submission).await;
    assert_eq!(code(&first), "password_reset_sent");
    // The staff member clicks again: a new message, the same interaction.
    let again = app.access(&submission).await;
    assert_eq!(again, first);
    // The host repeats one message: the same bytes.
    let replayed = app.act_at("/actions/portal-access", "msg_same", &submission).await;
    assert_eq!(app.act_at("/actions/portal-access", "msg_same", &submission).await, replayed);
    assert_eq!(replayed, first);
    assert_eq!(app.count("SELECT COUNT(*) FROM tokens WHERE purpose = 'reset'").await, 1, "one reset link");
}

async fn staff_acting_at_the_same_moment_keep_the_cap_and_act_once(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;
    // Five staff members ask for a reset link at once: three an hour, whoever comes first.
    let interactions: Vec<String> = (0..5).map(|i| format!("int_reset_{i}")).collect();
    let messages: Vec<Value> = interactions
        .iter()
        .map(|i| access_submitted("shop_1", &cus_1(), i, Some("password_reset")))
        .collect();
    let answers = futures_util::future::join_all(messages.iter().map(|m| app.access(m))).await;
    let sent = answers.iter().filter(|a| code(a) == "password_reset_sent").count();
    assert_eq!(sent, 3, "{answers:?}");
    assert!(answers.iter().all(|a| ["password_reset_sent", "portal_status"].contains(&code(a))));
    assert_eq!(app.count("SELECT COUNT(*) FROM tokens WHERE purpose = 'reset'").await, 3);

    // One dialog submitted twice at the same moment (two messages, one interaction): one act, one answer.
    let submission = access_submitted("shop_1", &cus_1(), "int_end_twice", Some("end_sessions"));
    let (a, b) = tokio::join!(app.access(&submission), app.access(&submission));
    assert_eq!(a, b);
    assert_eq!(code(&a), "sessions_ended");
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_events WHERE event = 'sessions_ended'").await, 1);
}

async fn every_submission_is_checked_again(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;

    // A choice the dialog never offered, or none at all: the dialog stays open.
    for choice in [Some("explode"), None] {
        let answer = app.access(&access_submitted("shop_1", &cus_1(), "int_odd", choice)).await;
        assert_eq!(answer["response_action"], "errors", "{answer}");
        assert_eq!(answer["errors"]["action"]["code"], "portal_status");
    }
    // The action's key must be the URL's.
    let wrong_key = dialog_submitted("shop_1", &cus_1(), "int_wrong", Some("email"));
    let response = app.post_signed("/actions/portal-access", "msg_wrong_key", &wrong_key).await;
    assert_eq!(response.status().as_u16(), 422);

    // The portal was switched off since the dialog opened: nothing is done.
    let mut inactive = shop("shop_1", 2);
    inactive["customer_portal_active"] = false.into();
    app.deliver(&shop_updated("shop_1", inactive)).await;
    let answer = choose(&app, "int_off", "end_sessions").await;
    assert_eq!(level_and_code(&answer), ("close", "error", "portal_inactive"), "{answer}");
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1);

    // Active again: an answer that named the customer is kept for a resubmission...
    let mut active = shop("shop_1", 3);
    active["customer_portal_active"] = true.into();
    app.deliver(&shop_updated("shop_1", active)).await;
    let refused = choose(&app, "int_kept", "cancel_invitation").await;
    assert_eq!(code(&refused), "portal_status");
    assert_eq!(app.count("SELECT COUNT(*) FROM staff_acts WHERE customer_id = 'cus_1'").await, 1);
    // ...until the customer is deleted: then there is no portal access left to show.
    app.deliver(&customer_deleted("shop_1", "cus_1", 5)).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM staff_acts").await, 0);
    let answer = click(&app, &cus_1()).await;
    assert_eq!(level_and_code(&answer), ("message", "info", "no_portal_account"), "{answer}");
}

/// The scenarios that need a real SMTP server and the SMS gateway.
mod with_gateways {
    use super::*;
    use crate::sms_gateway::{Signing, report};

    crate::with_each_backend!(
        the_status_says_what_the_sms_service_reported,
        cancelling_a_queued_invitation_stops_its_delivery,
        two_staff_members_inviting_at_once_get_one_invitation_and_the_truth,
    );

    async fn the_status_says_what_the_sms_service_reported(backend: Backend) {
        let stack = Stack::start(backend).await;
        let app = &stack.app;
        let look = |customer: Value| async move {
            app.access(&access_invoked("shop_1", &customer, "int_look")).await
        };
        assert_eq!(code(&app.submit("shop_1", &jana(), "int_jana", "sms").await), "invitation_sent");
        let sms = stack.sms.wait_for(1).await.remove(0);
        let status = text_of(&look(jana()).await, "status").to_owned();
        assert!(
            status.contains(
                "Sent on Mon 23 Nov 2026 at 8:00 PM AEST; the SMS service hasn't confirmed delivery to the \
                 phone yet."
            ),
            "{status}"
        );
        app.advance(TimeDelta::minutes(2));
        assert_eq!(report(&sms, "delivered", None, Signing::Genuine).await.status().as_u16(), 204);
        let answer = look(jana()).await;
        assert!(
            text_of(&answer, "status").contains("Delivered to the phone on Mon 23 Nov 2026 at 8:02 PM AEST."),
            "{answer}"
        );
        assert!(text_of(&answer, "history").contains("8:02 PM AEST: invitation delivered (SMS)"), "{answer}");

        // Another customer's phone is off: the invitation failed, in plain words, and may be sent anew.
        let ola = customer("cus_ola", Some("ola@example.com"), Some("+61412000111"), 1);
        assert_eq!(code(&app.submit("shop_1", &ola, "int_ola", "sms").await), "invitation_sent");
        let sms = stack.sms.wait_for(2).await.remove(1);
        assert_eq!(report(&sms, "undelivered", Some("30003"), Signing::Genuine).await.status().as_u16(), 204);
        let answer = look(ola.clone()).await;
        assert_eq!(
            level_and_code(&answer),
            ("message", "info", "portal_status"),
            "nothing to offer: {answer}"
        );
        assert!(
            text_of(&answer, "").contains(
                "Not delivered (Mon 23 Nov 2026 at 8:02 PM AEST): the mobile number could not receive SMS \
                 (the phone was switched off or out of coverage). Its link no longer works, so a new \
                 invitation can be sent."
            ),
            "{answer}"
        );
        let again = app.invoke("shop_1", &ola).await;
        assert_eq!(again["response_action"], "open_dialog", "{again}");
    }

    async fn cancelling_a_queued_invitation_stops_its_delivery(backend: Backend) {
        let stack = Stack::start(backend).await;
        let app = &stack.app;
        stack.sms.script([Reply::ServerError]);
        let customer = jana();
        assert_eq!(code(&app.submit("shop_1", &customer, "int_sms", "sms").await), "invitation_queued");
        let answer = app.access(&access_invoked("shop_1", &customer, "int_look")).await;
        let status = text_of(&answer, "status");
        assert!(
            status.contains(
                "Not delivered yet: the SMS service hasn't accepted it, and delivery is being retried"
            ),
            "{status}"
        );
        let cancelled =
            app.access(&access_submitted("shop_1", &customer, "int_stop", Some("cancel_invitation"))).await;
        assert_eq!(code(&cancelled), "invitation_cancelled", "{cancelled}");
        // The worker's later rounds send nothing: the message was withdrawn with its link.
        app.advance(TimeDelta::hours(2));
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(stack.sms.calls(), 1);
        assert!(stack.sms.accepted().is_empty());
        assert_eq!(app.count("SELECT COUNT(*) FROM outbox WHERE status = 'cancelled'").await, 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL").await, 0);
    }

    async fn two_staff_members_inviting_at_once_get_one_invitation_and_the_truth(backend: Backend) {
        let stack = Stack::start(backend).await;
        let app = &stack.app;
        for round in 0..4 {
            let id = format!("cus_race_{round}");
            let email = format!("race{round}@example.com");
            let customer = customer(&id, Some(&email), None, 1);
            let (int_a, int_b) = (format!("int_a_{round}"), format!("int_b_{round}"));
            let (a, b) = tokio::join!(
                app.submit("shop_1", &customer, &int_a, "email"),
                app.submit("shop_1", &customer, &int_b, "email"),
            );
            let mut codes = [code(&a), code(&b)];
            codes.sort();
            assert_eq!(codes, ["invitation_already_sent", "invitation_sent"], "{a}\n{b}");
            let loser = if code(&a) == "invitation_already_sent" { &a } else { &b };
            let said = loser["message"]["text"].as_str().unwrap();
            // The winner's email went out at once: the loser is told it was delivered, not "retrying".
            assert!(said.contains("Invited by email on") && said.contains("Delivered on"), "{said}");
            assert_eq!(
                app.count(&format!("SELECT COUNT(*) FROM invitations WHERE customer_id = '{id}'")).await,
                1
            );
            let to_customer = stack.smtp.received().iter().filter(|r| r.to.contains(&email)).count();
            assert_eq!(to_customer, 1, "one email for {id}");
        }
    }
}
