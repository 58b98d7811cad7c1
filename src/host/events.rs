//! The envelope and the lifecycle events of `POST /webhooks` (contract §4, §5): wire types, their
//! OpenAPI schemas, and their conversion into checked domain values.
//!
//! Parsing happens in two steps, because the contract answers them differently: a body that is not
//! JSON of the right shape, or names an unknown `type`, is `400`; a well-formed body whose values
//! break a rule (an id outside the alphabet, a tier that does not exist, a shop id that disagrees
//! with the envelope) is `422`. Fields we do not know are ignored.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object, Union};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::value::RawValue;

use super::problem::HostError;
use crate::{
    domain::{
        CustomerId, E164Number, EmailAddress, HostPortal, Locale, ShopId, SubscriptionTier, Text, TimeZone,
    },
    shops::{
        ShopEvent,
        snapshot::{CustomerSnapshot, MAX_NAME, MAX_PHONE, ShopSnapshot},
    },
};

/// The envelope around every message (contract §4); `data` is parsed once `type` is known.
#[derive(Deserialize)]
pub struct RawEnvelope<'a> {
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the event happened on the host.
    pub timestamp: DateTime<Utc>,
    pub shop_id: String,
    /// The event's data, still unparsed.
    #[serde(borrow)]
    pub data: &'a RawValue,
}

impl<'a> RawEnvelope<'a> {
    /// Parses the envelope of a body (`400` when it is not one).
    pub fn parse(body: &'a [u8]) -> Result<Self, HostError> {
        serde_json::from_slice(body).map_err(|e| HostError::Malformed(e.to_string()))
    }

    /// The envelope's shop id, checked.
    pub fn shop_id(&self) -> Result<ShopId, HostError> {
        ShopId::parse(&self.shop_id).map_err(|e| HostError::Rule(e.to_string()))
    }

    /// Parses `data` as `T` (`400` when its shape is wrong).
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, HostError> {
        serde_json::from_str(self.data.get()).map_err(|e| HostError::Malformed(format!("data: {e}")))
    }
}

/// The lifecycle and data events `POST /webhooks` handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum LifecycleEventType {
    /// The shop installed the plugin.
    #[oai(rename = "plugin.installed")]
    PluginInstalled,
    /// The shop removed the plugin.
    #[oai(rename = "plugin.uninstalled")]
    PluginUninstalled,
    /// The shop's settings changed.
    #[oai(rename = "shop.updated")]
    ShopUpdated,
    /// A customer profile changed.
    #[oai(rename = "customer.updated")]
    CustomerUpdated,
    /// A customer was deleted.
    #[oai(rename = "customer.deleted")]
    CustomerDeleted,
}

impl LifecycleEventType {
    /// Every event, as the manifest must list them.
    pub const ALL: [Self; 5] = [
        Self::PluginInstalled,
        Self::PluginUninstalled,
        Self::ShopUpdated,
        Self::CustomerUpdated,
        Self::CustomerDeleted,
    ];

    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::PluginInstalled => "plugin.installed",
            Self::PluginUninstalled => "plugin.uninstalled",
            Self::ShopUpdated => "shop.updated",
            Self::CustomerUpdated => "customer.updated",
            Self::CustomerDeleted => "customer.deleted",
        }
    }

    /// The event with this wire name, if `POST /webhooks` handles it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The shop snapshot on the wire.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct ShopWire {
    /// The host's shop id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `bronze`, `silver`, `gold` or `platinum`.
    pub subscription_tier: String,
    /// Whether the Customer Portal is activated.
    pub customer_portal_active: bool,
    /// IANA time zone.
    pub timezone: String,
    /// BCP 47 language tag.
    pub locale: String,
    /// Contact address.
    #[serde(default)]
    pub email: Option<String>,
    /// Contact phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// The host's own Customer Portal; absent or null where the host has none.
    #[serde(default)]
    pub portal: Option<PortalWire>,
    /// Grows with every change.
    pub version: u64,
}

/// The `portal` object of a shop snapshot (§4, §8).
#[derive(Debug, Clone, Deserialize, Object)]
pub struct PortalWire {
    /// The portal's start page.
    pub url: String,
    /// Where authorization responses may be sent (exact match).
    pub redirect_uris: Vec<String>,
    /// Where a logout may return the customer (exact match).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
}

/// The customer snapshot on the wire.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct CustomerWire {
    /// The host's customer id.
    pub id: String,
    /// Given name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(default)]
    pub last_name: Option<String>,
    /// Email address (the portal username); may be null or absent.
    #[serde(default)]
    pub email: Option<String>,
    /// E.164 mobile number; may be null or absent.
    #[serde(default)]
    pub mobile: Option<String>,
    /// Grows with every change.
    pub version: u64,
}

/// A staff member or operator on the host.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct ActorWire {
    /// The host's user id.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// `data` of `plugin.installed`.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct PluginInstalledData {
    /// The shop.
    pub shop: ShopWire,
    /// Who installed it.
    pub installed_by: ActorWire,
}

/// `data` of `plugin.uninstalled`.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct PluginUninstalledData {
    /// Who removed it.
    pub uninstalled_by: ActorWire,
}

/// `data` of `shop.updated`.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct ShopUpdatedData {
    /// The shop as it is now.
    pub shop: ShopWire,
}

/// `data` of `customer.updated`.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct CustomerUpdatedData {
    /// The customer as they are now.
    pub customer: CustomerWire,
}

/// `data` of `customer.deleted`.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct CustomerDeletedData {
    /// The deleted customer's id.
    pub customer_id: String,
    /// The customer's version at deletion.
    pub version: u64,
}

/// The `data` of a lifecycle event, by type.
#[derive(Debug, Clone, Union)]
pub enum LifecycleData {
    /// `plugin.installed`.
    PluginInstalled(PluginInstalledData),
    /// `plugin.uninstalled`.
    PluginUninstalled(PluginUninstalledData),
    /// `shop.updated`.
    ShopUpdated(ShopUpdatedData),
    /// `customer.updated`.
    CustomerUpdated(CustomerUpdatedData),
    /// `customer.deleted`.
    CustomerDeleted(CustomerDeletedData),
}

/// A lifecycle or data event as the host sends it to `POST /webhooks` (the documented schema).
#[derive(Debug, Clone, Object)]
pub struct LifecycleEnvelope {
    /// The event type; `data` has the matching shape.
    #[oai(rename = "type")]
    pub event_type: LifecycleEventType,
    /// When the event happened on the host (RFC 3339).
    pub timestamp: DateTime<Utc>,
    /// The shop concerned.
    pub shop_id: String,
    /// The event's data.
    pub data: LifecycleData,
}

/// Parses the `data` of a lifecycle event of type `kind` for shop `shop_id`.
pub fn parse_lifecycle(
    kind: LifecycleEventType,
    envelope: &RawEnvelope<'_>,
    shop_id: &ShopId,
) -> Result<ShopEvent, HostError> {
    Ok(match kind {
        LifecycleEventType::PluginInstalled => {
            let data: PluginInstalledData = envelope.data()?;
            ShopEvent::Installed(check_shop(&data.shop, shop_id, "data.shop")?)
        }
        LifecycleEventType::PluginUninstalled => {
            let _: PluginUninstalledData = envelope.data()?;
            ShopEvent::Uninstalled
        }
        LifecycleEventType::ShopUpdated => {
            let data: ShopUpdatedData = envelope.data()?;
            ShopEvent::ShopUpdated(check_shop(&data.shop, shop_id, "data.shop")?)
        }
        LifecycleEventType::CustomerUpdated => {
            let data: CustomerUpdatedData = envelope.data()?;
            ShopEvent::CustomerUpdated(check_customer(&data.customer, "data.customer")?)
        }
        LifecycleEventType::CustomerDeleted => {
            let data: CustomerDeletedData = envelope.data()?;
            ShopEvent::CustomerDeleted {
                customer_id: field("data.customer_id", CustomerId::parse(&data.customer_id))?,
                version: check_version(data.version, "data.version")?,
            }
        }
    })
}

/// Names the field in a `422`.
fn field<T, E: std::fmt::Display>(path: &str, result: Result<T, E>) -> Result<T, HostError> {
    result.map_err(|e| HostError::Rule(format!("{path} {e}")))
}

fn optional<T, E: std::fmt::Display>(
    path: &str,
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, HostError> {
    match value {
        None => Ok(None),
        // An empty string means "no value" in many host UIs; treat it as absent.
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => field(path, parse(v)).map(Some),
    }
}

fn check_version(version: u64, path: &str) -> Result<i64, HostError> {
    i64::try_from(version).map_err(|_| HostError::Rule(format!("{path} is larger than 2^63-1")))
}

/// Checks a shop snapshot and that it is the envelope's shop.
pub fn check_shop(wire: &ShopWire, envelope_shop: &ShopId, path: &str) -> Result<ShopSnapshot, HostError> {
    let id = field(&format!("{path}.id"), ShopId::parse(&wire.id))?;
    if &id != envelope_shop {
        return Err(HostError::Rule(format!(
            "{path}.id {id} differs from the envelope's shop_id {envelope_shop}"
        )));
    }
    Ok(ShopSnapshot {
        id,
        name: field(&format!("{path}.name"), Text::parse(&wire.name, MAX_NAME))?,
        tier: field(
            &format!("{path}.subscription_tier"),
            wire.subscription_tier.parse::<SubscriptionTier>(),
        )?,
        portal_active: wire.customer_portal_active,
        timezone: field(&format!("{path}.timezone"), TimeZone::parse(&wire.timezone))?,
        locale: field(&format!("{path}.locale"), Locale::parse(&wire.locale))?,
        email: optional(&format!("{path}.email"), wire.email.as_deref(), EmailAddress::parse)?,
        phone: optional(&format!("{path}.phone"), wire.phone.as_deref(), |v| Text::parse(v, MAX_PHONE))?,
        portal: match &wire.portal {
            None => None,
            Some(p) => Some(
                HostPortal::parse(&p.url, &p.redirect_uris, &p.post_logout_redirect_uris)
                    .map_err(|e| HostError::Rule(format!("{path}.portal.{e}")))?,
            ),
        },
        version: check_version(wire.version, &format!("{path}.version"))?,
    })
}

/// Checks a customer snapshot.
pub fn check_customer(wire: &CustomerWire, path: &str) -> Result<CustomerSnapshot, HostError> {
    Ok(CustomerSnapshot {
        id: field(&format!("{path}.id"), CustomerId::parse(&wire.id))?,
        first_name: optional(&format!("{path}.first_name"), wire.first_name.as_deref(), |v| {
            Text::parse(v, MAX_NAME)
        })?,
        last_name: optional(&format!("{path}.last_name"), wire.last_name.as_deref(), |v| {
            Text::parse(v, MAX_NAME)
        })?,
        email: optional(&format!("{path}.email"), wire.email.as_deref(), EmailAddress::parse)?,
        mobile: optional(&format!("{path}.mobile"), wire.mobile.as_deref(), E164Number::parse)?,
        version: check_version(wire.version, &format!("{path}.version"))?,
    })
}

#[cfg(test)]
mod tests;
