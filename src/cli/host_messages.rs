//! The messages a host sends (contract §4): the lifecycle events posted to `/webhooks` and the
//! star-menu messages posted to the action's URL, each as a whole envelope ready to sign.
//!
//! This is the one place their shapes are written down: `simulate` and `demo` send them to a running
//! instance, the integration tests send them to a test instance, and the benchmark sends them under
//! load, so all three speak the same contract. Callers choose the ids, versions, people and times;
//! nothing here is random or reads the clock.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// Where lifecycle events are posted.
pub const WEBHOOKS_PATH: &str = "/webhooks";
/// Where the star-menu action's messages are posted.
pub const ACTION_PATH: &str = "/actions/send-portal-invitation";
/// Where the "Customer Portal access" action goes.
pub const ACCESS_PATH: &str = "/actions/portal-access";

/// A shop as the host describes it in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shop {
    /// The host's shop id.
    pub id: String,
    pub name: String,
    /// `bronze`, `silver`, `gold` or `platinum` (anything else tests the edge).
    pub tier: String,
    pub portal_active: bool,
    /// An IANA time zone.
    pub timezone: String,
    pub locale: String,
    /// Sent as `null` when `None`.
    pub email: Option<String>,
    /// Sent as `null` when `None`.
    pub phone: Option<String>,
    /// The host's own Customer Portal (§4's `portal` object); sent as `null` when `None`.
    pub portal: Option<Portal>,
}

/// The `portal` object of a shop snapshot: the host's own Customer Portal, which signs customers in
/// through the plugin (§8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portal {
    pub url: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
}

impl Portal {
    /// A portal at `base` (e.g. `https://my.workshop.example/portal`) with the callback and
    /// signed-out addresses a host would register under it.
    pub fn at(base: &str, shop_id: &str) -> Self {
        let base = base.trim_end_matches('/');
        Self {
            url: format!("{base}/{shop_id}"),
            redirect_uris: vec![format!("{base}/oidc/callback")],
            post_logout_redirect_uris: vec![format!("{base}/{shop_id}/signed-out")],
        }
    }

    fn wire(&self) -> Value {
        json!({"url": self.url, "redirect_uris": self.redirect_uris,
               "post_logout_redirect_uris": self.post_logout_redirect_uris})
    }
}

impl Shop {
    /// The contract's example shop: Southside Auto Care, gold, in Brisbane, with the Customer Portal
    /// active.
    pub fn example(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: "Southside Auto Care".to_owned(),
            tier: "gold".to_owned(),
            portal_active: true,
            timezone: "Australia/Brisbane".to_owned(),
            locale: "en-AU".to_owned(),
            email: Some("service@southside.example".to_owned()),
            phone: Some("+61 7 3000 0000".to_owned()),
            portal: None,
        }
    }

    /// The snapshot at `version` (the host's counter; a lower one than stored is ignored).
    pub fn snapshot(&self, version: i64) -> Value {
        let mut snapshot = json!({"id": self.id, "name": self.name, "subscription_tier": self.tier,
               "customer_portal_active": self.portal_active, "timezone": self.timezone, "locale": self.locale,
               "email": self.email, "phone": self.phone, "version": version});
        // A host without a portal of its own leaves the object out (§4 allows absent or null).
        if let Some(portal) = &self.portal {
            snapshot["portal"] = portal.wire();
        }
        snapshot
    }
}

/// A customer as the host describes it in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// The host's customer id.
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    /// Sent as `null` when `None`.
    pub email: Option<String>,
    /// E.164; sent as `null` when `None`.
    pub mobile: Option<String>,
}

impl Customer {
    /// The contract's example customer, Jana Kowalski, reachable as given.
    pub fn example(id: &str, email: Option<&str>, mobile: Option<&str>) -> Self {
        Self {
            id: id.to_owned(),
            first_name: "Jana".to_owned(),
            last_name: "Kowalski".to_owned(),
            email: email.map(str::to_owned),
            mobile: mobile.map(str::to_owned),
        }
    }

    /// The snapshot at `version`.
    pub fn snapshot(&self, version: i64) -> Value {
        json!({"id": self.id, "first_name": self.first_name, "last_name": self.last_name,
               "email": self.email, "mobile": self.mobile, "version": version})
    }
}

/// A person at the host: who installed or removed the plugin, or clicked in the star menu.
#[derive(Debug, Clone, Copy)]
pub struct Staff<'a> {
    /// The host's user id.
    pub id: &'a str,
    pub name: &'a str,
}

impl Staff<'_> {
    fn json(self) -> Value {
        json!({"id": self.id, "name": self.name})
    }
}

/// An envelope of `event_type` for `shop_id`, stamped `at`, around `data`. For the lifecycle events
/// below use their builders; this is for messages the contract does not define, or to vary one.
pub fn envelope(event_type: &str, shop_id: &str, at: DateTime<Utc>, data: Value) -> Value {
    json!({"type": event_type, "timestamp": at.to_rfc3339(), "shop_id": shop_id, "data": data})
}

/// `plugin.installed`: the shop installs the plugin.
pub fn plugin_installed(shop: &Shop, version: i64, by: Staff<'_>, at: DateTime<Utc>) -> Value {
    let data = json!({"shop": shop.snapshot(version), "installed_by": by.json()});
    envelope("plugin.installed", &shop.id, at, data)
}

/// `plugin.uninstalled`: the shop removes the plugin.
pub fn plugin_uninstalled(shop_id: &str, by: Staff<'_>, at: DateTime<Utc>) -> Value {
    envelope("plugin.uninstalled", shop_id, at, json!({"uninstalled_by": by.json()}))
}

/// `shop.updated` with a snapshot (the caller may have varied it).
pub fn shop_updated(shop_id: &str, snapshot: Value, at: DateTime<Utc>) -> Value {
    envelope("shop.updated", shop_id, at, json!({"shop": snapshot}))
}

/// `customer.updated` with a snapshot (the caller may have varied it).
pub fn customer_updated(shop_id: &str, snapshot: Value, at: DateTime<Utc>) -> Value {
    envelope("customer.updated", shop_id, at, json!({"customer": snapshot}))
}

/// `customer.deleted`: the profile is gone as of `version`.
pub fn customer_deleted(shop_id: &str, customer_id: &str, version: i64, at: DateTime<Utc>) -> Value {
    envelope("customer.deleted", shop_id, at, json!({"customer_id": customer_id, "version": version}))
}

/// A star-menu interaction: who clicked "Send Customer Portal Invitation" on which customer of which
/// shop. Both of its messages carry the snapshots, as the host sends them.
#[derive(Debug, Clone)]
pub struct StarMenu<'a> {
    pub shop: &'a Shop,
    pub shop_version: i64,
    /// The customer's snapshot (the caller may have varied it).
    pub customer: &'a Value,
    pub user: Staff<'a>,
    /// The same for the click and the submission of one dialog.
    pub interaction: &'a str,
}

impl StarMenu<'_> {
    /// `action.invoked`: the click, answered with the dialog.
    pub fn invoked(&self, at: DateTime<Utc>) -> Value {
        envelope("action.invoked", &self.shop.id, at, self.data(None))
    }

    /// `dialog.submitted` with the chosen channel (`None` leaves the dialog's values out, as a
    /// broken host might).
    pub fn submitted(&self, channel: Option<&str>, at: DateTime<Utc>) -> Value {
        envelope("dialog.submitted", &self.shop.id, at, self.data(channel))
    }

    /// `action.invoked` of "Customer Portal access" (§9): the click, answered with the status.
    pub fn access_invoked(&self, at: DateTime<Utc>) -> Value {
        envelope("action.invoked", &self.shop.id, at, self.data_of("portal-access", None))
    }

    /// `dialog.submitted` of "Customer Portal access" with the chosen `action` (`None` leaves the
    /// values out).
    pub fn access_submitted(&self, choice: Option<&str>, at: DateTime<Utc>) -> Value {
        let values = choice.map(|choice| json!({"action": choice}));
        envelope("dialog.submitted", &self.shop.id, at, self.data_of("portal-access", values))
    }

    fn data(&self, channel: Option<&str>) -> Value {
        let values = channel.map(|channel| json!({"channel": channel}));
        self.data_of("send-portal-invitation", values)
    }

    fn data_of(&self, action_key: &str, values: Option<Value>) -> Value {
        let mut data = json!({"action_key": action_key, "interaction_id": self.interaction,
                              "user": self.user.json(), "shop": self.shop.snapshot(self.shop_version),
                              "customer": self.customer});
        if let Some(values) = values {
            data["values"] = values;
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shapes are the contract's (§4): a change here changes what every caller sends.
    #[test]
    fn the_messages_have_the_contracts_shape() {
        let at = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().to_utc();
        let owner = Staff { id: "usr_1", name: "Owner" };
        let shop = json!({"id": "shop_1", "name": "Southside Auto Care", "subscription_tier": "gold",
            "customer_portal_active": true, "timezone": "Australia/Brisbane", "locale": "en-AU",
            "email": "service@southside.example", "phone": "+61 7 3000 0000", "version": 3});
        assert_eq!(
            plugin_installed(&Shop::example("shop_1"), 3, owner, at),
            json!({"type": "plugin.installed", "timestamp": "2026-11-23T10:00:00+00:00", "shop_id": "shop_1",
                   "data": {"shop": shop, "installed_by": {"id": "usr_1", "name": "Owner"}}})
        );
        let with_portal = Shop {
            portal: Some(Portal::at("https://my.workshop.example/portal", "shop_1")),
            ..Shop::example("shop_1")
        };
        assert_eq!(
            with_portal.snapshot(3)["portal"],
            json!({"url": "https://my.workshop.example/portal/shop_1",
                   "redirect_uris": ["https://my.workshop.example/portal/oidc/callback"],
                   "post_logout_redirect_uris": ["https://my.workshop.example/portal/shop_1/signed-out"]})
        );
        assert_eq!(
            plugin_uninstalled("shop_1", owner, at)["data"],
            json!({"uninstalled_by": {"id": "usr_1", "name": "Owner"}})
        );
        assert_eq!(
            customer_deleted("shop_1", "cus_1", 4, at)["data"],
            json!({"customer_id": "cus_1", "version": 4})
        );

        let customer = Customer::example("cus_1", Some("jana@example.com"), None).snapshot(2);
        assert_eq!(
            customer,
            json!({"id": "cus_1", "first_name": "Jana", "last_name": "Kowalski", "email": "jana@example.com",
                   "mobile": null, "version": 2})
        );
        let menu = StarMenu {
            shop: &Shop::example("shop_1"),
            shop_version: 3,
            customer: &customer,
            user: Staff { id: "usr_9", name: "Sam (front desk)" },
            interaction: "int_1",
        };
        let click = json!({"action_key": "send-portal-invitation", "interaction_id": "int_1",
            "user": {"id": "usr_9", "name": "Sam (front desk)"}, "shop": shop, "customer": customer});
        assert_eq!(menu.invoked(at)["type"], "action.invoked");
        assert_eq!(menu.invoked(at)["data"], click);
        let mut submission = click;
        submission["values"] = json!({"channel": "sms"});
        assert_eq!(menu.submitted(Some("sms"), at)["type"], "dialog.submitted");
        assert_eq!(menu.submitted(Some("sms"), at)["data"], submission);
    }
}
