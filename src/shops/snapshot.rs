//! Shop and customer snapshots as the host sends them (contract §4), after every field was checked.

use crate::domain::{
    CustomerId, E164Number, EmailAddress, HostPortal, Locale, ShopId, SubscriptionTier, Text, TimeZone,
};

/// Longest name we keep, in characters.
pub const MAX_NAME: usize = 200;
/// Longest free-form phone number we keep, in characters.
pub const MAX_PHONE: usize = 40;

/// A shop as the host last described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopSnapshot {
    pub id: ShopId,
    /// Display name, e.g. "Southside Auto Care".
    pub name: Text,
    pub tier: SubscriptionTier,
    /// Whether the Customer Portal is activated on the host.
    pub portal_active: bool,
    /// For dates we show.
    pub timezone: TimeZone,
    /// For the pages' language.
    pub locale: Locale,
    /// Contact address for customers.
    pub email: Option<EmailAddress>,
    /// Contact phone for customers, as the shop writes it.
    pub phone: Option<Text>,
    /// The host's own Customer Portal, when it runs one (the shop's OpenID client, §8).
    pub portal: Option<HostPortal>,
    /// Grows with every change on the host.
    pub version: i64,
}

/// A customer as the host last described them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerSnapshot {
    /// The host's id, unique within the shop.
    pub id: CustomerId,
    pub first_name: Option<Text>,
    pub last_name: Option<Text>,
    /// Email address: the portal username.
    pub email: Option<EmailAddress>,
    /// Mobile number for SMS.
    pub mobile: Option<E164Number>,
    /// Grows with every change on the host.
    pub version: i64,
}
