//! The audit trail: the customer's whole story read back step by step, erasure, the account's
//! slow-down recorded once per streak and never for a username without an account, retention, and
//! `portal-invites audit` run as the real binary.

use chrono::{DateTime, TimeDelta, Utc};
use portal_invites::{
    audit::{self, Entry, Event, Query},
    clock::to_millis,
    domain::{Channel, DeliveryFailure, StaffMember},
    maintenance,
};

use crate::{helpers::*, web::*};

crate::on_both_databases!(
    the_trail_tells_the_customers_story_and_only_the_erasure_outlives_them,
    the_slow_down_is_recorded_once_per_streak_and_never_for_a_username_without_an_account,
    an_email_change_in_a_burst_of_updates_is_recorded_once,
    events_older_than_the_retention_are_purged_by_a_housekeeping_round,
    a_shops_trail_goes_with_its_data_48_hours_after_an_uninstall,
);

/// Recorded by the star-menu action and by delivery, not by what these tests exercise: left out, so
/// the sequences below are exactly what the customer's side and the host's changes record.
const RECORDED_ELSEWHERE: [&str; 3] = ["invited", "delivered", "delivery_failed"];

/// The customer's events, oldest first, read the way the CLI reads them.
async fn trail(app: &TestApp, shop_id: &str, customer_id: &str) -> Vec<Entry> {
    let query = Query { shop_id: shop_id.to_owned(), customer_id: Some(customer_id.to_owned()), since: None };
    let mut entries = Vec::new();
    let mut after = None;
    loop {
        let page = audit::page(app.db.conn(), &query, after, 3).await.unwrap();
        entries.extend(page.entries);
        match page.next {
            Some(next) => after = Some(next),
            None => return entries,
        }
    }
}

/// The names of the customer's events that these tests are about.
async fn story(app: &TestApp, customer_id: &str) -> Vec<String> {
    trail(app, "shop_1", customer_id)
        .await
        .into_iter()
        .map(|e| e.event)
        .filter(|e| !RECORDED_ELSEWHERE.contains(&e.as_str()))
        .collect()
}

/// Every text the audit table holds, in one string.
async fn everything_recorded(app: &TestApp) -> String {
    let rows = app.rows("SELECT shop_id, customer_id, event, by_id, by_name, detail FROM audit_events").await;
    let mut text = String::new();
    for row in rows {
        for column in ["shop_id", "customer_id", "event", "by_id", "by_name", "detail"] {
            let value: Option<String> = row.try_get("", column).unwrap();
            text.push_str(&value.unwrap_or_default());
            text.push('\n');
        }
    }
    text
}

/// A login attempt from a browser that never logged in (judged on the username's own counter).
async fn try_login(app: &TestApp, email: &str, password: &str) -> u16 {
    Web::new(app).submit("/p/shop_1/login", &[("email", email), ("password", password)]).await.status
}

async fn count_events(app: &TestApp, event: &str) -> i64 {
    app.count(&format!("SELECT COUNT(*) FROM audit_events WHERE event = '{event}'")).await
}

async fn the_trail_tells_the_customers_story_and_only_the_erasure_outlives_them(app: TestApp) {
    let setup_link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    assert_eq!(story(&app, "cus_1").await, [] as [&str; 0]);
    // The star-menu action's part: who invited and how, then the mail server's acceptance.
    let entries = trail(&app, "shop_1", "cus_1").await;
    let events: Vec<&str> = entries.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(events, ["invited", "delivered"]);
    let by = entries[0].by.as_ref().map(|b| (b.id.as_str(), b.name.as_str()));
    assert_eq!(by, Some(("usr_9", "Sam (front desk)")));
    assert_eq!((entries[0].channel(), entries[1].channel()), (Some(Channel::Email), Some(Channel::Email)));
    assert_eq!(entries[1].by, None, "a delivery is nobody's act");

    // The password set with the invitation's link.
    app.advance(TimeDelta::minutes(5));
    set_up(&app, &setup_link).await;
    let entries = trail(&app, "shop_1", "cus_1").await;
    let set = entries.iter().find(|e| e.event == "password_set").expect("password_set");
    assert_eq!((set.at, set.shop_id.as_str(), set.by.as_ref()), (app.clock.now(), "shop_1", None));
    assert_eq!(story(&app, "cus_1").await, ["password_set"]);

    // A login, and the last login the staff will see.
    app.advance(TimeDelta::hours(1));
    assert_eq!(try_login(&app, EMAIL, PASSWORD).await, 303);
    assert_eq!(story(&app, "cus_1").await, ["password_set", "logged_in"]);
    let last_login = app.count("SELECT last_login_at FROM portal_accounts WHERE customer_id = 'cus_1'").await;
    assert_eq!(last_login, to_millis(app.clock.now()));

    // Failed logins, until they slow the account down: recorded once, at the fifth.
    for _ in 0..4 {
        assert_eq!(try_login(&app, EMAIL, "not my password").await, 422);
    }
    assert_eq!(story(&app, "cus_1").await, ["password_set", "logged_in"]);
    assert_eq!(try_login(&app, EMAIL, "not my password").await, 422);
    assert_eq!(story(&app, "cus_1").await, ["password_set", "logged_in", "login_slowed"]);
    app.advance(TimeDelta::seconds(2));
    assert_eq!(try_login(&app, EMAIL, "still not it").await, 422);
    assert_eq!(story(&app, "cus_1").await, ["password_set", "logged_in", "login_slowed"]);

    // The customer asks for a reset on /forgot; the sender mints the link.
    let sent = Web::new(&app).submit("/p/shop_1/forgot", &[("email", EMAIL)]).await;
    assert_eq!(sent.status, 200);
    app.eventually("the reset link is minted", || async {
        story(&app, "cus_1").await.last().is_some_and(|e| e == "reset_requested")
    })
    .await;
    let reset_email = poll(200, std::time::Duration::from_millis(50), || {
        let found = emails(&app).into_iter().find(|(subject, _)| subject.contains("reset your"));
        async move { found }
    })
    .await
    .expect("the reset email");
    let reset_link = link_in(&reset_email.1, "/p/shop_1/reset/").expect("a reset link");

    // A new password with the reset link.
    let new_password = "green bicycle ninety";
    let mut web = Web::new(&app);
    let done = web.submit(&reset_link, &[("password", new_password), ("confirmation", new_password)]).await;
    assert_eq!(done.status, 303, "{}", done.body);

    // The host changes the email; a change of spelling alone is not a change.
    app.deliver(&customer_updated("shop_1", "cus_1", 2, "jana.new@example.com")).await;
    app.deliver(&customer_updated("shop_1", "cus_1", 3, "Jana.New@Example.com")).await;
    assert_eq!(
        story(&app, "cus_1").await,
        ["password_set", "logged_in", "login_slowed", "reset_requested", "reset_completed", "email_changed"]
    );
    let whole: Vec<String> = trail(&app, "shop_1", "cus_1").await.into_iter().map(|e| e.event).collect();
    assert_eq!(whole[..2], ["invited", "delivered"], "the whole trail, in order");

    // Nothing in the trail is an address, a number, a token or a password.
    let recorded = everything_recorded(&app).await.to_lowercase();
    let token = |link: &str| link.rsplit('/').next().unwrap().to_lowercase();
    for secret in [
        "@",
        "example.com",
        "jana",
        "412345678",
        &PASSWORD.to_lowercase(),
        new_password,
        &token(&setup_link),
        &token(&reset_link),
    ] {
        assert!(!recorded.contains(secret), "{secret:?} is in the audit trail:\n{recorded}");
    }

    // The host deletes the customer: one event remains, holding only the host's customer id.
    app.advance(TimeDelta::days(1));
    app.deliver(&customer_deleted("shop_1", "cus_1", 4)).await;
    let left = trail(&app, "shop_1", "cus_1").await;
    assert_eq!(left.len(), 1, "{left:?}");
    let erased = &left[0];
    assert_eq!(
        (erased.event.as_str(), erased.customer_id.as_str(), erased.at, erased.by.as_ref()),
        ("customer_erased", "cus_1", app.clock.now(), None)
    );
    assert_eq!((erased.channel(), erased.failure()), (None, None));
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_events").await, 1, "nothing else anywhere");
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE by_id IS NULL AND by_name IS NULL AND detail IS NULL"
        )
        .await,
        1
    );

    // A customer the portal never knew leaves no trace when deleted.
    app.deliver(&customer_updated("shop_1", "cus_2", 1, "ola@example.com")).await;
    app.deliver(&customer_deleted("shop_1", "cus_2", 2)).await;
    assert!(trail(&app, "shop_1", "cus_2").await.is_empty());
}

async fn the_slow_down_is_recorded_once_per_streak_and_never_for_a_username_without_an_account(app: TestApp) {
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;

    // Four failures, then the right password as the fifth: the wait its reservation set is cleared
    // by its success, so nothing was slowed down.
    for _ in 0..4 {
        assert_eq!(try_login(&app, EMAIL, "wrong").await, 422);
    }
    assert_eq!(try_login(&app, EMAIL, PASSWORD).await, 303);
    assert_eq!(count_events(&app, "login_slowed").await, 0, "the fifth attempt was right");

    // A streak: once at its fifth failure, not at the failures after it.
    for _ in 0..5 {
        assert_eq!(try_login(&app, EMAIL, "wrong").await, 422);
    }
    assert_eq!(count_events(&app, "login_slowed").await, 1);
    for wait in [1, 2, 4] {
        assert_eq!(try_login(&app, EMAIL, "wrong").await, 429, "waits {wait}s");
        app.advance(TimeDelta::seconds(wait));
        assert_eq!(try_login(&app, EMAIL, "wrong").await, 422);
    }
    assert_eq!(count_events(&app, "login_slowed").await, 1, "once per streak");

    // An hour without attempts ends the streak; the next one is recorded again.
    app.advance(TimeDelta::minutes(61));
    for _ in 0..5 {
        assert_eq!(try_login(&app, EMAIL, "wrong").await, 422);
    }
    assert_eq!(count_events(&app, "login_slowed").await, 2, "a new streak");
    assert_eq!(story(&app, "cus_1").await, ["password_set", "logged_in", "login_slowed", "login_slowed"]);

    // A username that belongs to no account slows down alike, and records nothing.
    let before = app.count("SELECT COUNT(*) FROM audit_events").await;
    for _ in 0..5 {
        assert_eq!(try_login(&app, "ghost@example.com", "wrong").await, 422);
    }
    assert_eq!(try_login(&app, "ghost@example.com", "wrong").await, 429, "the ghost's counter waits");
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_events").await, before);
}

async fn an_email_change_in_a_burst_of_updates_is_recorded_once(app: TestApp) {
    invite(&app, "shop_1", "cus_1", EMAIL).await;
    // Updates of many customers at once (on SQLite, a batch applied by the bulk path): one of them
    // changes the invited customer's email.
    let updates = (1..=20).map(|i| {
        let message = if i == 1 {
            customer_updated("shop_1", "cus_1", 2, "jana.new@example.com")
        } else {
            customer_updated("shop_1", &format!("cus_{i}"), 1, &format!("c{i}@example.com"))
        };
        let app = &app;
        async move { app.send(&format!("msg_burst_{i}"), &message).await }
    });
    let statuses = futures_util::future::join_all(updates).await;
    assert!(statuses.iter().all(|s| *s == 204), "{statuses:?}");
    assert_eq!(story(&app, "cus_1").await, ["email_changed"]);
    assert_eq!(count_events(&app, "email_changed").await, 1, "customers without an account record nothing");
}

async fn record_at(app: &TestApp, shop_id: &str, customer_id: &str, event: Event, at: DateTime<Utc>) {
    let (shop_id, customer_id) = (shop_id.to_owned(), customer_id.to_owned());
    let staff = StaffMember::from_host("usr_9", "Sam (front desk)");
    let by = matches!(event, Event::Invited { .. }).then_some(staff);
    let recorded: Result<(), sea_orm::DbErr> = app
        .db
        .write(move |txn| {
            Box::pin(async move { audit::record(txn, &shop_id, &customer_id, event, by.as_ref(), at).await })
        })
        .await;
    recorded.unwrap();
}

/// `count` events of `customer_id` in `shop_1`, `per_instant` of them in each millisecond from
/// `from` on, in one statement (the same SQL on SQLite and PostgreSQL).
async fn record_many(app: &TestApp, customer_id: &str, count: u32, per_instant: u32, from: DateTime<Utc>) {
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {count}) \
         INSERT INTO audit_events (shop_id, customer_id, event, at) \
         SELECT 'shop_1', '{customer_id}', 'logged_in', {} + i / {per_instant} FROM n",
        to_millis(from)
    );
    app.rows(&sql).await;
}

async fn events_older_than_the_retention_are_purged_by_a_housekeeping_round(app: TestApp) {
    // The default retention, 400 days.
    let t0 = app.clock.now();
    record_at(&app, "shop_1", "cus_1", Event::PasswordSet, t0).await;
    record_at(&app, "shop_1", "cus_1", Event::LoggedIn, t0 + TimeDelta::days(10)).await;
    // A long trail from before: more than one batch of the purge.
    record_many(&app, "cus_old", 12_345, 1, t0 - TimeDelta::days(800)).await;

    app.advance(TimeDelta::days(400));
    maintenance::run_once(app.jobs()).await;
    let kept: Vec<String> = trail(&app, "shop_1", "cus_1").await.into_iter().map(|e| e.event).collect();
    assert_eq!(kept, ["password_set", "logged_in"], "exactly 400 days old is kept");
    // Moving the clock also wakes the background housekeeping: its purge may share the work with the
    // round above, so the last batch may be the other round's.
    app.eventually("every old event is purged", || async {
        app.count("SELECT COUNT(*) FROM audit_events WHERE customer_id = 'cus_old'").await == 0
    })
    .await;

    app.advance(TimeDelta::milliseconds(1));
    maintenance::run_once(app.jobs()).await;
    let kept: Vec<String> = trail(&app, "shop_1", "cus_1").await.into_iter().map(|e| e.event).collect();
    assert_eq!(kept, ["logged_in"]);
}

async fn a_shops_trail_goes_with_its_data_48_hours_after_an_uninstall(app: TestApp) {
    for shop_id in ["shop_1", "shop_2"] {
        app.deliver(&installed(shop_id, 1)).await;
        record_at(&app, shop_id, "cus_1", Event::Invited { channel: Channel::Email }, app.clock.now()).await;
        record_at(&app, shop_id, "cus_2", Event::PasswordSet, app.clock.now()).await;
    }
    app.deliver(&uninstalled("shop_1", OWNER, 10)).await;
    app.advance(TimeDelta::hours(47));
    maintenance::run_once(app.jobs()).await;
    let shop_events = "SELECT COUNT(*) FROM audit_events WHERE shop_id = 'shop_1'";
    assert_eq!(app.count(shop_events).await, 2, "kept while the shop may still come back");

    app.advance(TimeDelta::hours(1) + TimeDelta::seconds(11));
    maintenance::run_once(app.jobs()).await;
    assert_eq!(app.count(shop_events).await, 0, "no erasure marker either: the shop's trail is gone");
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_events WHERE shop_id = 'shop_2'").await, 2);
}

mod cli {
    //! `portal-invites audit`, the real binary, against a SQLite file with events.

    use chrono::TimeDelta;
    use serde_json::Value;

    use super::*;

    async fn run(database_url: &str, args: &[&str]) -> (Option<i32>, String, String) {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal-invites"));
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PORTAL_")) {
            command.env_remove(key);
        }
        let output = command.arg("audit").args(args).env("PORTAL_DATABASE_URL", database_url).output();
        let output = output.await.unwrap();
        let (stdout, stderr) =
            (String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap());
        (output.status.code(), stdout, stderr)
    }

    /// The printed lines, each parsed; the command must have succeeded.
    async fn lines(database_url: &str, args: &[&str]) -> Vec<Value> {
        let (code, stdout, stderr) = run(database_url, args).await;
        assert_eq!(code, Some(0), "{stderr}");
        stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    fn events(lines: &[Value]) -> Vec<(&str, &str)> {
        lines.iter().map(|l| (l["customer_id"].as_str().unwrap(), l["event"].as_str().unwrap())).collect()
    }

    #[tokio::test]
    async fn the_audit_command_prints_a_shops_events_as_json_lines_oldest_first() {
        let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
        let url = app.database_url();
        let t0 = start_time();
        let day = TimeDelta::days(1);
        // Recorded out of order: printed by time.
        record_at(&app, "shop_1", "cus_1", Event::PasswordSet, t0 + day).await;
        record_at(&app, "shop_1", "cus_1", Event::Invited { channel: Channel::Sms }, t0).await;
        let failed = Event::DeliveryFailed { channel: Channel::Sms, reason: DeliveryFailure::Landline };
        record_at(&app, "shop_1", "cus_2", failed, t0 + day * 2).await;
        record_at(&app, "shop_1", "cus_1", Event::LoggedIn, t0 + day * 3).await;
        record_at(&app, "shop_2", "cus_1", Event::LoggedIn, t0 + day).await;

        let all = lines(&url, &["--shop", "shop_1"]).await;
        assert_eq!(
            events(&all),
            [
                ("cus_1", "invited"),
                ("cus_1", "password_set"),
                ("cus_2", "delivery_failed"),
                ("cus_1", "logged_in")
            ]
        );
        assert_eq!(
            all[0],
            serde_json::json!({
                "at": "2026-11-23T10:00:00.000Z", "shop_id": "shop_1", "customer_id": "cus_1",
                "event": "invited", "by": {"id": "usr_9", "name": "Sam (front desk)"}, "channel": "sms"
            })
        );
        assert_eq!(
            all[1],
            serde_json::json!({
                "at": "2026-11-24T10:00:00.000Z", "shop_id": "shop_1", "customer_id": "cus_1",
                "event": "password_set"
            }),
            "no staff member and no detail where the event has none"
        );
        assert_eq!((all[2]["channel"].as_str(), all[2]["reason"].as_str()), (Some("sms"), Some("landline")));
        for line in &all {
            let at = line["at"].as_str().unwrap();
            assert!(at.ends_with('Z') && DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
        }

        let mine = lines(&url, &["--shop", "shop_1", "--customer", "cus_1"]).await;
        assert_eq!(events(&mine), [("cus_1", "invited"), ("cus_1", "password_set"), ("cus_1", "logged_in")]);
        let since_date = lines(&url, &["--shop", "shop_1", "--since", "2026-11-25"]).await;
        assert_eq!(events(&since_date), [("cus_2", "delivery_failed"), ("cus_1", "logged_in")]);
        // A date is midnight UTC: an event at that moment is in, one a millisecond before is not.
        let midnight = DateTime::parse_from_rfc3339("2026-11-25T00:00:00Z").unwrap().to_utc();
        record_at(&app, "shop_3", "cus_1", Event::LoggedIn, midnight - TimeDelta::milliseconds(1)).await;
        record_at(&app, "shop_3", "cus_1", Event::EmailChanged, midnight).await;
        let at_midnight = lines(&url, &["--shop", "shop_3", "--since", "2026-11-25"]).await;
        assert_eq!(events(&at_midnight), [("cus_1", "email_changed")]);
        // 2026-11-24T20:00+10:00 is 10:00 UTC, the moment of password_set.
        let since_time =
            lines(&url, &["--shop", "shop_1", "--customer", "cus_1", "--since", "2026-11-24T20:00:00+10:00"])
                .await;
        assert_eq!(events(&since_time), [("cus_1", "password_set"), ("cus_1", "logged_in")]);
        assert!(lines(&url, &["--shop", "shop_9"]).await.is_empty());

        for (args, flag) in [
            (&["--shop", "shop_1", "--since", "last tuesday"][..], "--since"),
            (&["--shop", "shop_1", "--since", "2026-11-31"][..], "--since"),
            (&["--shop", "shop 1"][..], "--shop"),
        ] {
            let (code, stdout, stderr) = run(&url, args).await;
            assert_eq!(code, Some(2), "{args:?}: {stderr}");
            assert!(stdout.is_empty());
            assert!(stderr.contains(flag), "{stderr}");
        }
        let (_, _, stderr) = run(&url, &["--shop", "shop_1", "--since", "soon"]).await;
        assert!(stderr.contains("2026-12-01") && stderr.contains("RFC 3339"), "the accepted forms: {stderr}");
    }

    #[tokio::test]
    async fn the_audit_command_pages_through_a_long_trail_without_losing_or_repeating_an_event() {
        let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
        // 1 234 events, seven to a millisecond, so pages end in the middle of a moment.
        record_many(&app, "cus_1", 1_234, 7, start_time()).await;
        app.rows("UPDATE audit_events SET customer_id = 'cus_' || CAST(id AS TEXT)").await;
        let all = lines(&app.database_url(), &["--shop", "shop_1"]).await;
        assert_eq!(all.len(), 1_234);
        let mut ids: Vec<&str> = all.iter().map(|l| l["customer_id"].as_str().unwrap()).collect();
        let times: Vec<&str> = all.iter().map(|l| l["at"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 1_234, "each event once");
    }

    #[tokio::test]
    async fn the_audit_command_creates_no_database_where_there_is_none() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("nothing-here.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let (code, stdout, stderr) = run(&url, &["--shop", "shop_1"]).await;
        assert_eq!((code, stdout.as_str()), (Some(1), ""));
        assert!(stderr.contains("no database"), "{stderr}");
        assert!(!path.exists());
    }
}
