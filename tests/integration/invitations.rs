//! The star-menu action end to end: the dialog, every refusal, the invitation by email through a real
//! SMTP server and by SMS through the gateway, field errors, and repeats that must send nothing.

use chrono::TimeDelta;
use mail_parser::MimeHeaders;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{helpers::*, smtp::Received};

crate::with_each_backend!(
    a_click_opens_the_dialog_with_email_and_sms,
    sms_is_disabled_with_the_reason_when_there_is_no_mobile,
    each_reason_not_to_invite_gets_its_code_and_a_text_to_act_on,
    an_invitation_by_email_arrives_with_both_links_and_the_details,
    an_invitation_by_sms_carries_the_set_up_link_on_our_domain,
    field_errors_keep_the_dialog_open_and_send_nothing,
    a_second_submission_or_a_replayed_message_sends_nothing,
    an_invitation_cannot_be_sent_twice,
    one_email_cannot_be_the_username_of_two_customers,
    the_payload_snapshots_update_what_is_stored,
);

fn text(answer: &Value) -> &str {
    answer["message"]["text"].as_str().or_else(|| answer["errors"]["channel"]["text"].as_str()).unwrap_or("")
}

/// Parses a received email.
pub fn parse(received: &Received) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default().parse(&received.data).expect("a MIME message")
}

/// Every link to the service in `part`, in order (HTML entities for `/` decoded).
pub fn links(part: &str, base: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = part;
    while let Some(start) = rest.find(base) {
        let tail = &rest[start..];
        let end =
            tail.find(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == ')').unwrap_or(tail.len());
        found.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    found
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

async fn a_click_opens_the_dialog_with_email_and_sms(backend: Backend) {
    let stack = Stack::start(backend).await;
    let answer = stack.app.invoke("shop_1", &jana()).await;
    assert_eq!(answer["response_action"], "open_dialog", "{answer}");
    let dialog = &answer["dialog"];
    assert_eq!(dialog["title"], "Send Customer Portal Invitation");
    assert_eq!(dialog["submit_label"], "Send");
    let field = &dialog["fields"][0];
    assert_eq!(
        (field["type"].as_str(), field["id"].as_str(), field["required"].as_bool()),
        (Some("radio"), Some("channel"), Some(true))
    );
    assert_eq!(field["options"][0], json!({"value": "email", "label": "Email to jana@example.com"}));
    assert_eq!(
        field["options"][1],
        json!({"value": "sms", "label": "SMS to +61412345678", "disabled": false})
    );
    assert!(stack.smtp.received().is_empty() && stack.sms.calls() == 0, "a click sends nothing");
}

async fn sms_is_disabled_with_the_reason_when_there_is_no_mobile(backend: Backend) {
    let stack = Stack::start(backend).await;
    let answer = stack.app.invoke("shop_1", &customer("cus_1", Some(EMAIL), None, 1)).await;
    let sms = &answer["dialog"]["fields"][0]["options"][1];
    assert_eq!(sms["disabled"], true);
    assert!(sms["label"].as_str().unwrap().contains("no mobile number"), "{sms}");
}

async fn each_reason_not_to_invite_gets_its_code_and_a_text_to_act_on(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;

    // Never installed.
    let answer = app.invoke("shop_unknown", &jana()).await;
    assert_eq!((answer["response_action"].as_str(), code(&answer)), (Some("message"), "shop_not_installed"));
    assert_eq!(answer["message"]["level"], "error");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM shops WHERE id = 'shop_unknown'").await,
        0,
        "nothing stored for it"
    );

    // No email: the email is the username.
    let answer = app.invoke("shop_1", &customer("cus_2", None, Some(MOBILE), 1)).await;
    assert_eq!(code(&answer), "customer_email_missing");
    assert!(text(&answer).contains("username") && text(&answer).contains("add it to the customer profile"));

    // Portal not activated: say where to activate it.
    let mut inactive = shop("shop_1", 2);
    inactive["customer_portal_active"] = json!(false);
    app.deliver(&shop_updated("shop_1", inactive)).await;
    let answer = app.invoke("shop_1", &jana()).await;
    assert_eq!(code(&answer), "portal_inactive");
    assert!(text(&answer).contains("Settings > Customer Portal"), "{}", text(&answer));

    // Below gold.
    let mut silver = shop("shop_1", 3);
    silver["subscription_tier"] = json!("silver");
    app.deliver(&shop_updated("shop_1", silver)).await;
    let answer = app.invoke("shop_1", &jana()).await;
    assert_eq!(code(&answer), "subscription_tier_insufficient");
    assert!(text(&answer).contains("Silver") && text(&answer).contains("Gold"));

    // The submission checks again: the same refusals close the dialog with an error.
    let answer = app.submit("shop_1", &jana(), "int_1", "email").await;
    assert_eq!(
        (answer["response_action"].as_str(), code(&answer)),
        (Some("close"), "subscription_tier_insufficient")
    );

    // Uninstalled.
    app.deliver(&uninstalled("shop_1", SOMEONE, 60)).await;
    assert_eq!(code(&app.invoke("shop_1", &jana()).await), "shop_not_installed");
    assert!(stack.smtp.received().is_empty() && stack.sms.calls() == 0);
}

async fn an_invitation_by_email_arrives_with_both_links_and_the_details(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    let answer = app.submit("shop_1", &jana(), "int_1", "email").await;
    assert_eq!(
        (answer["response_action"].as_str(), code(&answer)),
        (Some("close"), "invitation_sent"),
        "{answer}"
    );
    assert_eq!(answer["message"]["level"], "success");
    // 7 days from 2026-11-23 10:00 UTC, in Brisbane (UTC+10).
    assert!(text(&answer).contains("Monday 30 November 2026 at 8:00 PM AEST"), "{}", text(&answer));

    let received = stack.smtp.wait_for(1).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].to, vec![EMAIL.to_owned()]);
    let email = parse(&received[0]);
    assert_eq!(email.subject(), Some("Southside Auto Care: set up your Customer Portal login"));
    let from = email.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some("Southside Auto Care"));
    assert_eq!(email.reply_to().unwrap().first().unwrap().address(), Some("service@southside.example"));
    assert_eq!(email.to().unwrap().first().unwrap().address(), Some(EMAIL));
    let content_type = email.content_type().unwrap();
    assert_eq!((content_type.ctype(), content_type.subtype()), ("multipart", Some("alternative")));

    let text_part = email.body_text(0).unwrap();
    let html_part = email.body_html(0).unwrap().into_owned();
    for part in [text_part.as_ref(), html_part.as_str()] {
        let found = links(part, &app.url);
        assert_eq!(found.len(), 2, "exactly two links: {found:?}");
        assert!(
            found[0].starts_with(&format!("{}/p/shop_1/setup/", app.url)),
            "set-up link first: {found:?}"
        );
        assert_eq!(found[1], format!("{}/p/shop_1/login", app.url));
        assert!(part.contains("Jana"));
        assert!(part.contains(EMAIL), "the username");
        assert!(
            part.contains("Monday 30 November 2026 at 8:00 PM AEST (Australia/Brisbane)"),
            "expiry with zone"
        );
        assert!(part.contains("keep this email"));
    }
    assert_eq!(html_part.matches("href=").count(), 2);

    // The link's token is stored only as its hash.
    let setup = &links(&text_part, &app.url)[0];
    let token = setup.rsplit('/').next().unwrap();
    assert_eq!(token.len(), 43);
    let hash = sha256_hex(token);
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM tokens WHERE token_hash = '{hash}' AND purpose = 'setup'"))
            .await,
        1
    );
    assert_eq!(app.count(&format!("SELECT COUNT(*) FROM tokens WHERE token_hash = '{token}'")).await, 0);
    // The delivered outbox row keeps no address.
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox WHERE status = 'sent' AND recipient IS NULL").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM invitations WHERE status = 'sent'").await, 1);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM portal_accounts WHERE username = '{EMAIL}' AND password_hash IS NULL"
        ))
        .await,
        1
    );
}

async fn an_invitation_by_sms_carries_the_set_up_link_on_our_domain(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    let answer = app.submit("shop_1", &jana(), "int_1", "sms").await;
    assert_eq!(code(&answer), "invitation_sent", "{answer}");
    assert!(text(&answer).contains("by SMS") && text(&answer).contains(MOBILE));
    let sms = stack.sms.wait_for(1).await;
    assert_eq!((sms[0].to.as_str(), sms[0].from.as_str()), (MOBILE, crate::sms_gateway::FROM));
    assert!(sms[0].body.starts_with("Southside Auto Care:"), "the shop first: {}", sms[0].body);
    let found = links(&sms[0].body, &app.url);
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with(&format!("{}/p/shop_1/setup/", app.url)));
    assert!(stack.smtp.received().is_empty());
}

async fn field_errors_keep_the_dialog_open_and_send_nothing(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    let answer = app.submit("shop_1", &jana(), "int_1", "carrier-pigeon").await;
    assert_eq!((answer["response_action"].as_str(), code(&answer)), (Some("errors"), "invalid_channel"));
    let no_mobile = customer("cus_1", Some(EMAIL), None, 1);
    let answer = app.submit("shop_1", &no_mobile, "int_2", "sms").await;
    assert_eq!(
        (answer["response_action"].as_str(), code(&answer)),
        (Some("errors"), "customer_mobile_missing")
    );
    // A submission without values at all.
    let answer = app.act(&dialog_submitted("shop_1", &jana(), "int_3", None)).await;
    assert_eq!(code(&answer), "invalid_channel");
    assert_eq!(app.count("SELECT COUNT(*) FROM invitations").await, 0);
    // The same interaction can then be submitted properly.
    let answer = app.submit("shop_1", &no_mobile, "int_2", "email").await;
    assert_eq!(code(&answer), "invitation_sent");
    assert!(stack.sms.calls() == 0);
}

async fn a_second_submission_or_a_replayed_message_sends_nothing(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    let submission = dialog_submitted("shop_1", &jana(), "int_1", Some("email"));
    let first = app.post_signed("/actions/send-portal-invitation", "msg_submit", &submission).await;
    let first_body = first.bytes().await.unwrap();
    // The host repeats the same message: byte-identical answer.
    let again = app.post_signed("/actions/send-portal-invitation", "msg_submit", &submission).await;
    assert_eq!(again.bytes().await.unwrap(), first_body);
    // The staff member clicks Send again: new webhook-id, same interaction → the first outcome.
    let double = app.act(&submission).await;
    assert_eq!(double, serde_json::from_slice::<Value>(&first_body).unwrap());
    // Two at the same moment.
    let (a, b) = tokio::join!(app.act(&submission), app.act(&submission));
    assert_eq!(a, double);
    assert_eq!(b, double);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(stack.smtp.received().len(), 1, "exactly one email");
    assert_eq!(app.count("SELECT COUNT(*) FROM invitations").await, 1);
}

async fn an_invitation_cannot_be_sent_twice(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "sms").await), "invitation_sent");
    app.advance(TimeDelta::days(3));
    // A new click on another day: the invitation was sent, it says when and how, and where to reset.
    let answer = app.invoke("shop_1", &jana()).await;
    assert_eq!(
        (answer["response_action"].as_str(), code(&answer)),
        (Some("message"), "invitation_already_sent")
    );
    let said = text(&answer);
    assert!(
        said.contains("Invited by SMS on Mon 23 Nov 2026 at 8:00 PM AEST by Sam (front desk)."),
        "{said}"
    );
    assert!(
        said.contains("Sent on Mon 23 Nov 2026 at 8:00 PM AEST; the SMS service hasn't confirmed"),
        "{said}"
    );
    assert!(
        said.contains(
            "The set-up link hasn't been used yet; it works until Mon 30 Nov 2026 at 8:00 PM AEST."
        ),
        "{said}"
    );
    assert!(
        said.contains("Forgot password") && said.contains(&format!("{}/p/shop_1/login", app.url)),
        "{said}"
    );
    let answer = app.submit("shop_1", &jana(), "int_2", "email").await;
    assert_eq!(
        (answer["response_action"].as_str(), code(&answer)),
        (Some("close"), "invitation_already_sent")
    );
    assert_eq!(stack.sms.accepted().len(), 1);
    assert!(stack.smtp.received().is_empty());
}

async fn one_email_cannot_be_the_username_of_two_customers(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invitation_sent");
    // A family member with the same address (in another case).
    let partner = customer("cus_789", Some("Jana@Example.com"), Some("+61499999999"), 1);
    let answer = app.invoke("shop_1", &partner).await;
    assert_eq!(code(&answer), "email_in_use");
    assert!(text(&answer).contains("Jana@Example.com"));
    assert_eq!(code(&app.submit("shop_1", &partner, "int_2", "sms").await), "email_in_use");
    // Another shop's customer may use the same address: shops are separate.
    app.deliver(&installed("shop_2", 1)).await;
    assert_eq!(code(&app.submit("shop_2", &partner, "int_3", "email").await), "invitation_sent");
}

async fn the_payload_snapshots_update_what_is_stored(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    app.deliver(&customer_updated("shop_1", "cus_456", 2, "old@example.com")).await;
    // The click carries a newer profile (version 3) with a new address: it is stored.
    app.invoke("shop_1", &jana()).await;
    let rows = app.rows("SELECT email, version FROM customers WHERE id = 'cus_456'").await;
    assert_eq!(rows[0].try_get::<String>("", "email").unwrap(), EMAIL);
    // An older snapshot in a later click is ignored.
    let stale = customer("cus_456", Some("stale@example.com"), None, 1);
    let answer = app.invoke("shop_1", &stale).await;
    assert_eq!(answer["dialog"]["fields"][0]["options"][0]["label"], "Email to jana@example.com");
    // A newer shop snapshot in the payload (tier dropped) applies before the rules.
    let mut message = action_invoked("shop_1", &jana(), "int_1");
    message["data"]["shop"]["subscription_tier"] = json!("bronze");
    message["data"]["shop"]["version"] = json!(5);
    assert_eq!(code(&app.act(&message).await), "subscription_tier_insufficient");
}

#[tokio::test]
async fn without_a_server_or_gateway_messages_are_written_to_the_outbox_folder() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    app.deliver(&installed("shop_1", 1)).await;
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "email").await), "invitation_sent");
    let partner = customer("cus_2", Some("ola@example.com"), Some("+61400000001"), 1);
    assert_eq!(code(&app.submit("shop_1", &partner, "int_2", "sms").await), "invitation_sent");
    let files = app.outbox_files();
    let eml: Vec<_> = files.iter().filter(|p| p.extension().is_some_and(|e| e == "eml")).collect();
    let sms: Vec<_> = files.iter().filter(|p| p.extension().is_some_and(|e| e == "sms")).collect();
    assert_eq!((eml.len(), sms.len()), (1, 1), "{files:?}");
    let raw = std::fs::read(eml[0]).unwrap();
    let email = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(email.subject(), Some("Southside Auto Care: set up your Customer Portal login"));
    assert_eq!(links(&email.body_text(0).unwrap(), &app.url).len(), 2);
    let text = std::fs::read_to_string(sms[0]).unwrap();
    assert!(
        text.starts_with("To: +61400000001") && text.contains(&format!("{}/p/shop_1/setup/", app.url)),
        "{text}"
    );
}

#[tokio::test]
async fn a_template_override_changes_the_message_and_a_broken_one_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sms")).unwrap();
    std::fs::write(dir.path().join("sms/invitation.txt"), "{{ shop_name }} says hi: {{ setup_url }}")
        .unwrap();
    let env = vec![("PORTAL_TEMPLATES_DIR".to_owned(), dir.path().display().to_string())];
    let app = TestApp::spawn_with(Backend::Sqlite, Options { env, ..Options::default() }).await.unwrap();
    app.deliver(&installed("shop_1", 1)).await;
    assert_eq!(code(&app.submit("shop_1", &jana(), "int_1", "sms").await), "invitation_sent");
    let sms = app.outbox_files().into_iter().next().unwrap();
    assert!(std::fs::read_to_string(sms).unwrap().contains("Southside Auto Care says hi: "));

    // A variable the message does not have: the service refuses to start, naming file and setting.
    std::fs::write(
        dir.path().join("sms/invitation.txt"),
        "{{ shop_name }} {{ coupon_code }} {{ setup_url }}",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_portal-invites"))
        .arg("serve")
        .env("PORTAL_WEBHOOK_SECRETS", portal_invites::signature::WebhookSecret::generate())
        .env("PORTAL_TEMPLATES_DIR", dir.path())
        .env("PORTAL_LISTEN", "127.0.0.1:0")
        .current_dir(data.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PORTAL_TEMPLATES_DIR") && stderr.contains("sms/invitation.txt"), "{stderr}");
    assert!(stderr.contains("coupon_code") || stderr.contains("undefined"), "{stderr}");
}
