//! Links that outlive their purpose: once a password is set by any link, every other link the
//! account was sent is dead, and a host's change of the customer's email kills the links and the
//! messages still on their way to the old address. Presenting a dead link again is logged.

use chrono::TimeDelta;
use portal_invites::{
    domain::ShopId,
    tokens::{self, NewToken, Purpose},
};
use serde_json::Value;

use crate::{helpers::*, web::*};

crate::with_each_backend!(
    an_older_reset_link_and_the_unused_set_up_link_die_when_a_newer_reset_link_is_used,
    setting_up_by_the_invitation_link_kills_an_outstanding_reset_link,
    an_email_change_kills_reset_links_and_the_messages_still_going_to_the_old_address,
);

/// A password-reset link for the customer's account, as the "forgot password" email carries it.
/// Issued directly, so these tests do not depend on how that email is sent.
async fn reset_link(app: &TestApp, shop_id: &str, customer_id: &str) -> String {
    let rows = app.rows(&format!("SELECT id FROM portal_accounts WHERE customer_id = '{customer_id}'")).await;
    let account: String = rows[0].try_get("", "id").unwrap();
    let now = app.clock.now();
    let shop = ShopId::parse(shop_id).unwrap();
    let issued: Result<_, sea_orm::DbErr> = app
        .db
        .write(move |txn| {
            Box::pin(async move {
                let new = NewToken {
                    shop_id: &shop,
                    account_id: &account,
                    purpose: Purpose::Reset,
                    invitation_id: None,
                    expires_at: now + TimeDelta::hours(1),
                };
                tokens::issue(txn, new, now).await
            })
        })
        .await;
    let (_, raw) = issued.unwrap();
    format!("/p/{shop_id}/reset/{}", raw.as_str())
}

/// Someone holding `link` tries to set `password` with it, from a browser of their own.
async fn try_password(app: &TestApp, link: &str, password: &str) -> Page {
    let mut holder = Web::new(app);
    let shop_id = link.split('/').nth(2).unwrap();
    let csrf = holder.get(&format!("/p/{shop_id}/login")).await.csrf();
    holder.post(link, &[("csrf", &csrf), ("password", password), ("confirmation", password)]).await
}

async fn password_hash(app: &TestApp) -> Option<String> {
    let rows = app.rows("SELECT password_hash FROM portal_accounts").await;
    rows[0].try_get("", "password_hash").unwrap()
}

async fn logs_in_with(app: &TestApp, password: &str) -> bool {
    let mut web = Web::new(app);
    web.submit("/p/shop_1/login", &[("email", EMAIL), ("password", password)]).await.status == 303
}

fn reused(app: &TestApp) -> usize {
    app.logs.count("link_reused")
}

async fn an_older_reset_link_and_the_unused_set_up_link_die_when_a_newer_reset_link_is_used(
    backend: Backend,
) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let set_up_link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let older = reset_link(&app, "shop_1", "cus_1").await;
    let newer = reset_link(&app, "shop_1", "cus_1").await;

    let mut customer = Web::new(&app);
    let done = customer.submit(&newer, &[("password", PASSWORD), ("confirmation", PASSWORD)]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let hash = password_hash(&app).await;
    assert!(hash.is_some());

    for (what, link) in [("the older reset link", &older), ("the never-used set-up link", &set_up_link)] {
        assert_eq!(Web::new(&app).get(link).await.status, 404, "{what} still opens the form");
        let page = try_password(&app, link, "quiet harbour lights").await;
        assert_eq!(page.status, 404, "{what} still sets a password");
        assert!(page.body.contains("This link no longer works"), "{what}: {}", page.body);
    }
    assert_eq!(password_hash(&app).await, hash, "the password is still the customer's");
    assert!(logs_in_with(&app, PASSWORD).await);
    assert!(!logs_in_with(&app, "quiet harbour lights").await);
    assert_eq!(customer.get("/p/shop_1").await.status, 200, "the customer's session survived");

    // Each dead link presented again is one security event, naming no token; the opening (GET) of a
    // dead link, which mail scanners do, and a link that never existed, are not.
    assert_eq!(reused(&app), 2, "{}", app.logs.text());
    for line in app.logs.text().lines().filter(|l| l.contains("link_reused")) {
        assert!(line.contains("portal_invites::security"), "{line}");
        for link in [&older, &set_up_link, &newer] {
            assert!(!line.contains(link.rsplit('/').next().unwrap()), "a token in the log: {line}");
        }
    }
    let unknown =
        try_password(&app, "/p/shop_1/reset/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", PASSWORD).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(reused(&app), 2, "a link that never existed was not reused");
}

async fn setting_up_by_the_invitation_link_kills_an_outstanding_reset_link(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let set_up_link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let reset = reset_link(&app, "shop_1", "cus_1").await;
    set_up(&app, &set_up_link).await;
    let hash = password_hash(&app).await;

    let page = try_password(&app, &reset, "quiet harbour lights").await;
    assert_eq!(page.status, 404, "the reset link still sets a password");
    assert_eq!(password_hash(&app).await, hash);
    assert!(logs_in_with(&app, PASSWORD).await);
    assert_eq!(reused(&app), 1);
}

async fn an_email_change_kills_reset_links_and_the_messages_still_going_to_the_old_address(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    let jana = customer("cus_456", Some(EMAIL), None, 3);
    let answer: Value = app.submit("shop_1", &jana, "int_1", "email").await;
    assert_eq!(answer["message"]["code"], "invitation_sent", "{answer}");
    stack.smtp.wait_for(1).await;

    // The mail server is down for a while: what is sent to the customer now waits in the outbox.
    stack.smtp.stop();
    // A reset sets the password: "your password was changed" waits to go to the old address.
    let used = reset_link(app, "shop_1", "cus_456").await;
    assert_eq!(try_password(app, &used, PASSWORD).await.status, 303);
    // Another reset link is out there, and another is asked for: its email waits too.
    let outstanding = reset_link(app, "shop_1", "cus_456").await;
    assert_eq!(Web::new(app).submit("/p/shop_1/forgot", &[("email", EMAIL)]).await.status, 200);
    let to_old = format!("SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND recipient = '{EMAIL}'");
    assert_eq!(app.count(&to_old).await, 2, "password_changed and password_reset wait");

    app.deliver(&customer_updated("shop_1", "cus_456", 4, "jana.k@example.com")).await;
    assert_eq!(Web::new(app).get(&outstanding).await.status, 404, "the reset link to the old address works");
    assert_eq!(app.count(&to_old).await, 0, "messages still go to the old address");
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM outbox WHERE recipient = '{EMAIL}'")).await,
        0,
        "cancelled messages keep no address"
    );

    stack.smtp.resume().await;
    app.advance(TimeDelta::minutes(31));
    let busy = "SELECT COUNT(*) FROM outbox WHERE status = 'pending'";
    app.eventually("nothing is left to send", || async { app.count(busy).await == 0 }).await;
    assert_eq!(stack.smtp.received().len(), 1, "only the invitation went out");
}
