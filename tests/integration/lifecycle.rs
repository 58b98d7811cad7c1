//! What the lifecycle and data events do to the stored world: the version rule, deletion, and the
//! erasure 48 hours after an uninstall.

use chrono::TimeDelta;
use serde_json::json;

use crate::helpers::*;

crate::on_both_databases!(
    older_snapshots_are_ignored,
    a_deleted_customer_is_erased_and_stays_deleted,
    an_uninstalled_shop_is_erased_after_48_hours,
    installing_again_within_48_hours_keeps_the_data,
    a_late_install_retry_does_not_undo_a_newer_uninstall,
);

async fn customer_email(app: &TestApp, id: &str) -> Option<String> {
    let rows = app.rows(&format!("SELECT email FROM customers WHERE id = '{id}'")).await;
    rows.first().and_then(|r| r.try_get::<Option<String>>("", "email").unwrap())
}

async fn older_snapshots_are_ignored(app: TestApp) {
    app.deliver(&installed("shop_a", 12)).await;
    app.deliver(&customer_updated("shop_a", "cus_1", 3, "v3@example.com")).await;
    app.deliver(&customer_updated("shop_a", "cus_1", 2, "v2@example.com")).await;
    app.deliver(&customer_updated("shop_a", "cus_1", 3, "v3-again@example.com")).await;
    assert_eq!(customer_email(&app, "cus_1").await.as_deref(), Some("v3@example.com"));
    app.deliver(&customer_updated("shop_a", "cus_1", 4, "v4@example.com")).await;
    assert_eq!(customer_email(&app, "cus_1").await.as_deref(), Some("v4@example.com"));

    let mut old_shop = shop("shop_a", 11);
    old_shop["subscription_tier"] = json!("bronze");
    app.deliver(&shop_updated("shop_a", old_shop)).await;
    assert_eq!(app.count("SELECT version FROM shops WHERE id = 'shop_a'").await, 12);
    let mut new_shop = shop("shop_a", 13);
    new_shop["customer_portal_active"] = json!(false);
    new_shop["name"] = json!("Northside Auto Care");
    app.deliver(&shop_updated("shop_a", new_shop)).await;
    let rows = app.rows("SELECT name, portal_active FROM shops WHERE id = 'shop_a'").await;
    assert_eq!(rows[0].try_get::<String>("", "name").unwrap(), "Northside Auto Care");
    assert!(!rows[0].try_get::<bool>("", "portal_active").unwrap());
}

async fn a_deleted_customer_is_erased_and_stays_deleted(app: TestApp) {
    app.deliver(&installed("shop_a", 1)).await;
    app.deliver(&customer_updated("shop_a", "cus_1", 3, "jana@example.com")).await;
    app.deliver(&customer_updated("shop_a", "cus_2", 1, "other@example.com")).await;
    app.deliver(&customer_deleted("shop_a", "cus_1", 4)).await;

    let rows = app
        .rows("SELECT first_name, last_name, email, mobile, deleted_at FROM customers WHERE id = 'cus_1'")
        .await;
    let row = &rows[0];
    for column in ["first_name", "last_name", "email", "mobile"] {
        assert_eq!(row.try_get::<Option<String>>("", column).unwrap(), None, "{column} kept");
    }
    assert!(row.try_get::<Option<i64>>("", "deleted_at").unwrap().is_some());

    // An older update arriving late does not bring the customer back, nor does a newer one.
    app.deliver(&customer_updated("shop_a", "cus_1", 3, "jana@example.com")).await;
    app.deliver(&customer_updated("shop_a", "cus_1", 9, "jana@example.com")).await;
    assert_eq!(customer_email(&app, "cus_1").await, None);
    // Other customers are untouched.
    assert_eq!(customer_email(&app, "cus_2").await.as_deref(), Some("other@example.com"));

    // A deletion of a customer never seen leaves a tombstone too.
    app.deliver(&customer_deleted("shop_a", "cus_9", 2)).await;
    app.deliver(&customer_updated("shop_a", "cus_9", 1, "late@example.com")).await;
    assert_eq!(customer_email(&app, "cus_9").await, None);
}

async fn an_uninstalled_shop_is_erased_after_48_hours(app: TestApp) {
    app.deliver(&installed("shop_a", 1)).await;
    app.deliver(&installed("shop_b", 1)).await;
    app.deliver(&customer_updated("shop_a", "cus_1", 1, "a@example.com")).await;
    app.deliver(&customer_updated("shop_b", "cus_1", 1, "b@example.com")).await;
    app.deliver(&uninstalled("shop_a", OWNER, 10)).await;

    // Uninstalled at once; new personal data is not taken in any more.
    assert_eq!(app.count("SELECT COUNT(*) FROM shops WHERE id = 'shop_a' AND installed = FALSE").await, 1);
    app.deliver(&customer_updated("shop_a", "cus_2", 1, "new@example.com")).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM customers WHERE shop_id = 'shop_a'").await, 1);

    // 47 hours on, everything is still there.
    app.advance(TimeDelta::hours(47));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM customers WHERE shop_id = 'shop_a'").await, 1);

    // Past 48 hours, the background task erases shop_a's personal data and leaves shop_b alone.
    app.advance(TimeDelta::hours(1) + TimeDelta::seconds(11));
    app.eventually("shop_a's customers are erased", || async {
        app.count("SELECT COUNT(*) FROM customers WHERE shop_id = 'shop_a'").await == 0
    })
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM shops WHERE id = 'shop_a' AND email IS NULL AND phone IS NULL").await,
        1
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM customers WHERE shop_id = 'shop_b'").await, 1);
    assert_eq!(app.logs.count("erased the personal data"), 1);
}

async fn installing_again_within_48_hours_keeps_the_data(app: TestApp) {
    app.deliver(&installed("shop_a", 1)).await;
    app.deliver(&customer_updated("shop_a", "cus_1", 1, "a@example.com")).await;
    app.deliver(&uninstalled("shop_a", OWNER, 10)).await;
    app.advance(TimeDelta::hours(24));
    let mut again = installed("shop_a", 2);
    again["timestamp"] = json!((start_time() + TimeDelta::hours(24)).to_rfc3339());
    app.deliver(&again).await;
    app.advance(TimeDelta::hours(48));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM customers WHERE shop_id = 'shop_a'").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM shops WHERE installed = TRUE AND erase_due_at IS NULL").await,
        1
    );
}

async fn a_late_install_retry_does_not_undo_a_newer_uninstall(app: TestApp) {
    // The install first failed on the host's side and is retried after the uninstall went through.
    let install = installed("shop_a", 1);
    app.deliver(&install).await;
    app.deliver(&uninstalled("shop_a", OWNER, 600)).await;
    app.deliver(&install).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM shops WHERE installed = FALSE AND erase_due_at IS NOT NULL").await,
        1
    );
}
