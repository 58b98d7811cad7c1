//! Two requests that decide on the same rows at the same moment: a customer deleted while the dialog
//! that invites them is submitted, the erasure 48 hours after an uninstall while the shop installs
//! the plugin again, and two instances' batches of customer updates about the same customers, with
//! the same messages. Each runs many rounds, because a race is lost only now and then; after every
//! round one of the two orders must explain what is stored (and, for the invitation, what was sent).
//! On SQLite the single writer serialises them anyway; PostgreSQL commits them side by side.

use std::collections::HashMap;

use chrono::TimeDelta;
use rand::seq::SliceRandom;
use serde_json::Value;

use crate::helpers::*;

crate::with_each_backend!(
    a_customer_deleted_while_being_invited_is_left_with_nothing,
    an_erasure_racing_a_reinstall_erases_everything_or_nothing,
    two_instances_apply_each_update_once_and_keep_the_newest,
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

const CUSTOMERS: usize = 24;
const WAVES: i64 = 4;

/// Customer `k`'s email after wave `wave` (0: when invited).
fn email_of(k: usize, wave: i64) -> String {
    format!("c{k}.w{wave}@example.com")
}

async fn two_instances_apply_each_update_once_and_keep_the_newest(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else { return };
    let clock = portal_invites::clock::Clock::manual(start_time());
    let secret = portal_invites::signature::WebhookSecret::generate();
    let options = || Options { env: Vec::new(), secrets: vec![secret.clone()] };
    // PostgreSQL is where instances share a database; on SQLite one instance gets both copies.
    let shared = (backend == Backend::Postgres).then(|| database.share());
    let first = TestApp::start(database, options(), clock.clone()).await;
    let second = match shared {
        Some(shared) => Some(TestApp::start(shared, options(), clock.clone()).await),
        None => None,
    };
    let other = second.as_ref().unwrap_or(&first);

    // Every customer has a portal account, so each email change is an `email_changed` event.
    let shop_of = |k: usize| if k.is_multiple_of(3) { "shop_b" } else { "shop_a" };
    for shop in ["shop_a", "shop_b"] {
        first.deliver(&installed(shop, 1)).await;
    }
    for k in 0..CUSTOMERS {
        let profile = customer(&format!("cus_{k}"), Some(&email_of(k, 0)), None, 1);
        let answer = first.submit(shop_of(k), &profile, &format!("int_{k}"), "email").await;
        assert_eq!(code(&answer), "invitation_sent", "{answer}");
    }

    // Each wave changes every customer's email once, in two versions that carry the same email (so
    // whichever is applied first changes it, and the other changes nothing), and sends a late message
    // older than what is stored, with an email of its own that must never show; all at once, in
    // random order. In odd waves each message goes to both instances at the same moment (the host
    // retrying on another); in even waves the two versions go one to each, so that the instances'
    // batches share customers but no message.
    let mut ids = Vec::new();
    for wave in 1..=WAVES {
        let mut requests: Vec<(&TestApp, String, Value)> = Vec::new();
        for k in 0..CUSTOMERS {
            let (shop, id) = (shop_of(k), format!("cus_{k}"));
            let update = |version: i64, email: &str| {
                host_messages::customer_updated(shop, customer(&id, Some(email), None, version), at(0))
            };
            let (one, another) = if k.is_multiple_of(2) { (&first, other) } else { (other, &first) };
            for (n, to) in [(1, one), (2, another)] {
                let message_id = format!("v{n}_{k}_{wave}");
                let message = update(10 * wave + n, &email_of(k, wave));
                if wave % 2 == 1 {
                    requests.push((one, message_id.clone(), message.clone()));
                    requests.push((another, message_id.clone(), message));
                } else {
                    requests.push((to, message_id.clone(), message));
                }
                ids.push(message_id);
            }
            let late = update(10 * (wave - 1) + 1, &format!("late.c{k}.w{wave}@example.com"));
            let late_id = format!("late_{k}_{wave}");
            requests.push((one, late_id.clone(), late));
            ids.push(late_id);
        }
        requests.shuffle(&mut rand::rng());
        let answers =
            requests.iter().map(|(app, id, message)| async move { (id, app.send(id, message).await) });
        for (id, status) in futures_util::future::join_all(answers).await {
            assert_eq!(status, 204, "{id} in wave {wave}");
        }
    }

    // Every message stored once; every customer, and their account, at the newest version.
    let stored =
        first.count("SELECT COUNT(*) FROM webhook_messages WHERE event_type = 'customer.updated'").await;
    assert_eq!(stored, ids.len() as i64);
    for k in 0..CUSTOMERS {
        let rows = first
            .rows(&format!(
                "SELECT c.version, c.email, a.username FROM customers c JOIN portal_accounts a \
                 ON a.shop_id = c.shop_id AND a.customer_id = c.id WHERE c.id = 'cus_{k}'"
            ))
            .await;
        let row = &rows[0];
        assert_eq!(row.try_get::<i64>("", "version").unwrap(), 10 * WAVES + 2, "cus_{k}");
        assert_eq!(row.try_get::<String>("", "email").unwrap(), email_of(k, WAVES), "cus_{k}");
        assert_eq!(row.try_get::<String>("", "username").unwrap(), email_of(k, WAVES), "cus_{k}");
    }
    // Applied once each: one email change per customer per wave. A message applied twice, or an
    // older version judged against a row that changed under it, records one more.
    let changes = first
        .rows("SELECT customer_id, COUNT(*) AS n FROM audit_events WHERE event = 'email_changed' GROUP BY customer_id")
        .await;
    let changes: HashMap<String, i64> = changes
        .iter()
        .map(|r| (r.try_get::<String>("", "customer_id").unwrap(), r.try_get::<i64>("", "n").unwrap()))
        .collect();
    for k in 0..CUSTOMERS {
        assert_eq!(changes.get(&format!("cus_{k}")), Some(&WAVES), "email changes of cus_{k}: {changes:?}");
    }
    // And processed once each, wherever it went (the copy that came second is a repeat): the log of
    // each instance says which messages it processed.
    let logs = match &second {
        Some(second) => first.logs.text() + &second.logs.text(),
        None => first.logs.text(),
    };
    let mut processed: HashMap<&str, usize> = HashMap::new();
    for line in logs.lines().filter(|l| l.contains("event processed")) {
        if let Some(id) = line.split_whitespace().find_map(|w| w.strip_prefix("webhook_id=")) {
            *processed.entry(id).or_default() += 1;
        }
    }
    let wrong: Vec<String> = ids
        .iter()
        .filter(|id| processed.get(id.as_str()) != Some(&1))
        .map(|id| format!("{id}: {}", processed.get(id.as_str()).unwrap_or(&0)))
        .collect();
    assert!(wrong.is_empty(), "not processed exactly once: {wrong:?}");
}
