//! Two requests that decide on the same rows at the same moment: a customer deleted while the dialog
//! that invites them is submitted, and the erasure 48 hours after an uninstall while the shop installs
//! the plugin again. Each runs many rounds, because a race is lost only now and then; after every
//! round one of the two orders must explain what is stored (and, for the invitation, what was sent).
//! On SQLite the single writer serialises them anyway; PostgreSQL commits them side by side.

use chrono::TimeDelta;

use crate::helpers::*;

crate::with_each_backend!(
    a_customer_deleted_while_being_invited_is_left_with_nothing,
    an_erasure_racing_a_reinstall_erases_everything_or_nothing,
);

const ROUNDS: usize = 30;

/// Seconds from the tests' start time to the service's now, for event timestamps that order after
/// everything sent before.
fn seconds_now(app: &TestApp) -> i64 {
    (app.clock.now() - start_time()).num_seconds()
}

async fn a_customer_deleted_while_being_invited_is_left_with_nothing(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = &stack.app;
    let mut broken = Vec::new();
    for round in 0..ROUNDS {
        let id = format!("cus_{round}");
        let email = format!("c{round}@example.com");
        // Known before the race, as a customer usually is: the dialog's snapshot is no newer.
        app.deliver(&customer_updated("shop_1", &id, 1, &email)).await;
        let profile = customer(&id, Some(&email), None, 1);
        let deletion = customer_deleted("shop_1", &id, 2);
        let (interaction, message_id) = (format!("int_{round}"), format!("msg_delete_{round}"));
        let (answer, deleted) = tokio::join!(
            app.submit("shop_1", &profile, &interaction, "email"),
            app.send(&message_id, &deletion),
        );
        let answer = code(&answer);

        let mut left = Vec::new();
        for table in ["portal_accounts", "invitations", "outbox"] {
            let rows = app.count(&format!("SELECT COUNT(*) FROM {table} WHERE customer_id = '{id}'")).await;
            if rows > 0 {
                left.push(format!("{rows} in {table}"));
            }
        }
        let emailed = stack.smtp.received().iter().filter(|m| m.to.contains(&email)).count();
        let invited = ["invitation_sent", "invitation_queued"].contains(&answer);
        // Deletion first: nothing issued, nothing sent. Invitation first: answered, then erased.
        if deleted != 204 || !left.is_empty() || (!invited && emailed > 0) {
            broken.push(format!(
                "round {round}: deletion {deleted}, submission {answer}, {emailed} email(s), left: {left:?}"
            ));
        }
    }
    assert!(
        broken.is_empty(),
        "{} of {ROUNDS} rounds broke the invariant:\n{}",
        broken.len(),
        broken.join("\n")
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM tokens").await, 0, "tokens outlived their accounts");
}

async fn an_erasure_racing_a_reinstall_erases_everything_or_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let mut broken = Vec::new();
    for round in 0..ROUNDS {
        let shop_id = format!("shop_{round}");
        app.deliver(&installed(&shop_id, 1)).await;
        for n in 0..3 {
            app.deliver(&customer_updated(&shop_id, &format!("cus_{n}"), 1, &format!("c{n}@example.com")))
                .await;
        }
        app.deliver(&uninstalled(&shop_id, OWNER, seconds_now(&app))).await;
        app.advance(TimeDelta::hours(49));
        // The same snapshot as before: a re-install does not bring the shop's contact details back,
        // so whether they are still there tells whether the erasure ran.
        let reinstall =
            host_messages::plugin_installed(&Shop::example(&shop_id), 1, OWNER, at(seconds_now(&app)));
        let message_id = format!("msg_reinstall_{round}");
        let ((), status) = tokio::join!(
            portal_invites::maintenance::run_once(app.jobs()),
            app.send(&message_id, &reinstall),
        );

        let customers =
            app.count(&format!("SELECT COUNT(*) FROM customers WHERE shop_id = '{shop_id}'")).await;
        let erased_contact =
            app.count(&format!("SELECT COUNT(*) FROM shops WHERE id = '{shop_id}' AND email IS NULL")).await
                == 1;
        let installed =
            app.count(&format!("SELECT COUNT(*) FROM shops WHERE id = '{shop_id}' AND installed")).await == 1;
        // Erasure first: no customers and no contact details. Install first: nothing erased.
        let consistent = matches!((customers, erased_contact), (0, true) | (3, false));
        if status != 204 || !installed || !consistent {
            broken.push(format!(
                "round {round}: install {status}, installed {installed}, {customers} customers, contact erased {erased_contact}"
            ));
        }
    }
    assert!(
        broken.is_empty(),
        "{} of {ROUNDS} rounds broke the invariant:\n{}",
        broken.len(),
        broken.join("\n")
    );
}
