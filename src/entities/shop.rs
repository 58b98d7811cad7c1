//! A shop (a branch) that installed the plugin at some point.

use sea_orm::entity::prelude::*;

use crate::domain::{HostPortal, ShopId, SubscriptionTier, TimeZone};

/// One row of `shops`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "shops")]
pub struct Model {
    /// The host's shop id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Shown on every page and message.
    pub name: String,
    /// `bronze`, `silver`, `gold` or `platinum`.
    pub subscription_tier: String,
    /// Whether the shop activated its Customer Portal on the host.
    pub portal_active: bool,
    /// IANA time zone for dates we show.
    pub timezone: String,
    /// BCP 47 tag for the pages' language.
    pub locale: String,
    /// The shop's contact address, for customers who need help.
    pub email: Option<String>,
    /// The shop's phone number, for customers who need help.
    pub phone: Option<String>,
    /// The host's own Customer Portal (`HostPortal` as JSON); `None` where the host has none.
    pub portal: Option<String>,
    /// The host's snapshot version; older snapshots are ignored.
    pub version: i64,
    /// Installed now (false after `plugin.uninstalled`).
    pub installed: bool,
    /// Event time of the latest install or uninstall applied.
    pub lifecycle_at: i64,
    /// When the shop's personal data is erased, if it stays uninstalled.
    pub erase_due_at: Option<i64>,
    /// First seen.
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

// The row's checked values, read once here instead of re-parsed by every rule.
impl Model {
    pub fn shop_id(&self) -> ShopId {
        ShopId::from_stored(self.id.clone())
    }

    /// `None` for a tier this version does not know.
    pub fn tier(&self) -> Option<SubscriptionTier> {
        self.subscription_tier.parse().ok()
    }

    /// UTC when the stored name cannot be read (a row older than the checks).
    pub fn time_zone(&self) -> TimeZone {
        TimeZone::or_utc(&self.timezone)
    }

    /// The host's own Customer Portal, when the host runs one for this shop.
    pub fn host_portal(&self) -> Option<HostPortal> {
        HostPortal::from_stored(self.portal.as_deref())
    }

    /// Whether the shop serves its Customer Portal now: installed, on a tier that includes it, and
    /// activated. (The star-menu rules check the same three, one refusal each.)
    pub fn serves_portal(&self) -> bool {
        self.installed && self.portal_active && self.tier().is_some_and(SubscriptionTier::includes_portal)
    }

    /// The contract's example shop, installed, gold, portal active, in Brisbane (unit tests).
    #[cfg(test)]
    pub fn example() -> Self {
        Self {
            id: "shop_1".into(),
            name: "Southside Auto Care".into(),
            subscription_tier: "gold".into(),
            portal_active: true,
            timezone: "Australia/Brisbane".into(),
            locale: "en-AU".into(),
            email: None,
            phone: None,
            portal: None,
            version: 1,
            installed: true,
            lifecycle_at: 0,
            erase_due_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }
}
