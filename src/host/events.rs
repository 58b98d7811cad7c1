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
    domain::{CustomerId, E164Number, EmailAddress, Locale, ShopId, SubscriptionTier, Text, TimeZone},
    shops::snapshot::{CustomerSnapshot, MAX_NAME, MAX_PHONE, ShopSnapshot},
};

/// The envelope around every message (contract §4); `data` is parsed once `type` is known.
#[derive(Deserialize)]
pub struct RawEnvelope<'a> {
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the event happened on the host.
    pub timestamp: DateTime<Utc>,
    /// The shop concerned.
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
    /// Grows with every change.
    pub version: u64,
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

/// A checked lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// The shop installed the plugin.
    Installed(ShopSnapshot),
    /// The shop removed the plugin.
    Uninstalled,
    /// The shop changed.
    ShopUpdated(ShopSnapshot),
    /// A customer changed.
    CustomerUpdated(CustomerSnapshot),
    /// A customer was deleted.
    CustomerDeleted {
        /// Who.
        customer_id: CustomerId,
        /// Their version at deletion.
        version: i64,
    },
}

impl LifecycleEvent {
    /// The customer the event concerns, if any.
    pub fn customer_id(&self) -> Option<&CustomerId> {
        match self {
            Self::CustomerUpdated(customer) => Some(&customer.id),
            Self::CustomerDeleted { customer_id, .. } => Some(customer_id),
            _ => None,
        }
    }
}

/// Parses the `data` of a lifecycle event of type `kind` for shop `shop_id`.
pub fn parse_lifecycle(
    kind: LifecycleEventType,
    envelope: &RawEnvelope<'_>,
    shop_id: &ShopId,
) -> Result<LifecycleEvent, HostError> {
    Ok(match kind {
        LifecycleEventType::PluginInstalled => {
            let data: PluginInstalledData = envelope.data()?;
            LifecycleEvent::Installed(check_shop(&data.shop, shop_id, "data.shop")?)
        }
        LifecycleEventType::PluginUninstalled => {
            let _: PluginUninstalledData = envelope.data()?;
            LifecycleEvent::Uninstalled
        }
        LifecycleEventType::ShopUpdated => {
            let data: ShopUpdatedData = envelope.data()?;
            LifecycleEvent::ShopUpdated(check_shop(&data.shop, shop_id, "data.shop")?)
        }
        LifecycleEventType::CustomerUpdated => {
            let data: CustomerUpdatedData = envelope.data()?;
            LifecycleEvent::CustomerUpdated(check_customer(&data.customer, "data.customer")?)
        }
        LifecycleEventType::CustomerDeleted => {
            let data: CustomerDeletedData = envelope.data()?;
            LifecycleEvent::CustomerDeleted {
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
mod tests {
    use super::*;
    use crate::{domain::hostile, host::actions::ActionData};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn parse(body: &str) -> Result<LifecycleEvent, HostError> {
        let envelope = RawEnvelope::parse(body.as_bytes())?;
        let kind = LifecycleEventType::from_name(&envelope.event_type)
            .ok_or_else(|| HostError::UnknownType(envelope.event_type.clone()))?;
        let shop_id = envelope.shop_id()?;
        parse_lifecycle(kind, &envelope, &shop_id)
    }

    const SHOP: &str = r#"{"id": "shop_8f2k", "name": "Southside Auto Care", "subscription_tier": "gold",
        "customer_portal_active": true, "timezone": "Australia/Brisbane", "locale": "en-AU",
        "email": "service@southside.example", "phone": "+61 7 3000 0000", "version": 12, "new_field": [1]}"#;

    #[test]
    fn the_contract_examples_parse() {
        let installed = format!(
            r#"{{"type": "plugin.installed", "timestamp": "2026-11-23T10:15:00Z", "shop_id": "shop_8f2k",
                "data": {{"shop": {SHOP}, "installed_by": {{"id": "usr_1", "name": "Owner"}}}}}}"#
        );
        let LifecycleEvent::Installed(shop) = parse(&installed).unwrap() else { panic!("not an install") };
        assert_eq!(shop.name.as_str(), "Southside Auto Care");
        assert_eq!(shop.tier, SubscriptionTier::Gold);
        assert_eq!(shop.version, 12);

        let updated = r#"{"type": "customer.updated", "timestamp": "2026-11-23T10:15:00Z", "shop_id": "shop_8f2k",
            "data": {"customer": {"id": "cus_456", "first_name": "Jana", "last_name": "Kowalski",
            "email": "jana@example.com", "mobile": "+61412345678", "version": 3}}}"#;
        let LifecycleEvent::CustomerUpdated(customer) = parse(updated).unwrap() else { panic!() };
        assert_eq!(customer.email.unwrap().as_str(), "jana@example.com");

        let no_contact = r#"{"type": "customer.updated", "timestamp": "2026-11-23T10:15:00Z", "shop_id": "shop_8f2k",
            "data": {"customer": {"id": "cus_457", "first_name": "Ola", "last_name": "N", "email": null, "version": 1}}}"#;
        let LifecycleEvent::CustomerUpdated(customer) = parse(no_contact).unwrap() else { panic!() };
        assert!(customer.email.is_none() && customer.mobile.is_none());
    }

    #[test]
    fn shape_errors_are_400_and_rule_errors_are_422() {
        let status = |body: &str| match parse(body) {
            Err(HostError::Malformed(_) | HostError::UnknownType(_)) => 400,
            Err(HostError::Rule(_)) => 422,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(status("not json"), 400);
        assert_eq!(status("[]"), 400);
        assert_eq!(status(r#"{"type": "plugin.installed"}"#), 400);
        assert_eq!(
            status(
                r#"{"type": "order.created", "timestamp": "2026-11-23T10:15:00Z", "shop_id": "s", "data": {}}"#
            ),
            400
        );
        assert_eq!(
            status(
                r#"{"type": "customer.deleted", "timestamp": "2026-11-23T10:15:00Z", "shop_id": "s", "data": {"customer_id": 5, "version": 1}}"#
            ),
            400
        );
        assert_eq!(
            status(
                r#"{"type": "customer.deleted", "timestamp": "2026-11-23T10:15:00Z", "shop_id": "s/../x", "data": {"customer_id": "c", "version": 1}}"#
            ),
            422
        );
        assert_eq!(
            status(
                r#"{"type": "customer.updated", "timestamp": "2026-11-23T10:15:00Z", "shop_id": "s",
                "data": {"customer": {"id": "c", "mobile": "0412 345 678", "version": 1}}}"#
            ),
            422
        );
        let other_shop = format!(
            r#"{{"type": "shop.updated", "timestamp": "2026-11-23T10:15:00Z", "shop_id": "shop_other", "data": {{"shop": {SHOP}}}}}"#
        );
        assert_eq!(status(&other_shop), 422);
        let bad_tier = SHOP.replace("\"gold\"", "\"diamond\"");
        let bad_tier = format!(
            r#"{{"type": "shop.updated", "timestamp": "2026-11-23T10:15:00Z", "shop_id": "shop_8f2k", "data": {{"shop": {bad_tier}}}}}"#
        );
        assert_eq!(status(&bad_tier), 422);
    }

    #[test]
    fn a_rule_error_names_the_field() {
        let body = r#"{"type": "customer.updated", "timestamp": "2026-11-23T10:15:00Z", "shop_id": "s",
            "data": {"customer": {"id": "c", "email": "not-an-address", "version": 1}}}"#;
        let Err(HostError::Rule(message)) = parse(body) else { panic!() };
        assert!(message.starts_with("data.customer.email"), "{message}");
    }

    #[test]
    fn the_webhook_event_names_are_the_contracts_and_the_manifests() {
        // Contract §5: the lifecycle and data events `POST /webhooks` receives, spelled as the host sends them.
        let contract = [
            "plugin.installed",
            "plugin.uninstalled",
            "shop.updated",
            "customer.updated",
            "customer.deleted",
        ];
        let ours: Vec<&str> = LifecycleEventType::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(ours, contract);
        for name in contract {
            assert_eq!(LifecycleEventType::from_name(name).map(LifecycleEventType::name), Some(name));
            assert!(
                crate::manifest::EMBEDDED.contains(&format!("\"{name}\"")),
                "{name} is not in the manifest"
            );
        }
        for other in ["action.invoked", "dialog.submitted", "Plugin.Installed", "plugin.installed ", ""] {
            assert_eq!(LifecycleEventType::from_name(other), None, "{other:?}");
        }
    }

    /// The `data` of every message the service parses, as the contract's examples give them.
    fn valid_data() -> Vec<(&'static str, Value)> {
        let shop: Value = serde_json::from_str(SHOP).unwrap();
        let customer = json!({"id": "cus_456", "first_name": "Jana", "last_name": "Kowalski",
            "email": "jana@example.com", "mobile": "+61412345678", "version": 3});
        let actor = json!({"id": "usr_1", "name": "Owner"});
        vec![
            ("plugin.installed", json!({"shop": shop, "installed_by": actor})),
            ("plugin.uninstalled", json!({"uninstalled_by": actor})),
            ("shop.updated", json!({"shop": shop})),
            ("customer.updated", json!({"customer": customer})),
            ("customer.deleted", json!({"customer_id": "cus_456", "version": 4})),
            (
                "dialog.submitted",
                json!({"action_key": "send-portal-invitation", "interaction_id": "int_1", "user": actor,
                       "shop": shop, "customer": customer, "values": {"channel": "email"}}),
            ),
        ]
    }

    /// Every JSON pointer inside `value`, the root included.
    fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    pointers(inner, format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")), out);
                }
            }
            Value::Array(items) => {
                for (i, inner) in items.iter().enumerate() {
                    pointers(inner, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
        out.push(at);
    }

    /// A valid `data` with a few of its values replaced by hostile ones or removed: the inputs that
    /// get past the shape checks and reach the rules.
    fn near_valid_data() -> impl Strategy<Value = (&'static str, Value)> {
        let mutation = (any::<prop::sample::Index>(), proptest::option::of(hostile::json()));
        (prop::sample::select(valid_data()), prop::collection::vec(mutation, 1..4)).prop_map(
            |((kind, mut data), mutations)| {
                for (which, replacement) in mutations {
                    let mut all = Vec::new();
                    pointers(&data, String::new(), &mut all);
                    let target = which.get(&all).clone();
                    match replacement {
                        Some(value) => match data.pointer_mut(&target) {
                            Some(slot) => *slot = value,
                            None => data = value,
                        },
                        None => {
                            let (parent, key) = target.rsplit_once('/').unwrap_or(("", ""));
                            if let Some(Value::Object(map)) = data.pointer_mut(parent) {
                                map.remove(&key.replace("~1", "/").replace("~0", "~"));
                            }
                        }
                    }
                }
                (kind, data)
            },
        )
    }

    /// Parses a body through every step the endpoints take, for every type the data might be.
    /// Only the answers of the contract are acceptable: 400 or 422, never a panic or a 500.
    fn parse_every_way(body: &[u8]) -> Result<(), TestCaseError> {
        let acceptable = |result: Result<(), HostError>| match result {
            Ok(()) | Err(HostError::Malformed(_) | HostError::UnknownType(_) | HostError::Rule(_)) => Ok(()),
            Err(other) => Err(TestCaseError::fail(format!("unexpected {other:?}"))),
        };
        let Ok(envelope) = RawEnvelope::parse(body) else { return Ok(()) };
        let shop_id = match envelope.shop_id() {
            Ok(id) => id,
            Err(e) => return acceptable(Err(e)),
        };
        for kind in LifecycleEventType::ALL {
            acceptable(parse_lifecycle(kind, &envelope, &shop_id).map(|_| ()))?;
        }
        acceptable(envelope.data::<ActionData>().and_then(|data| {
            check_shop(&data.shop, &shop_id, "data.shop")?;
            check_customer(&data.customer, "data.customer")?;
            Ok(())
        }))
    }

    fn envelope_with(kind: &str, shop_id: &str, data: &Value) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"type": kind, "timestamp": "2026-11-23T10:15:00Z", "shop_id": shop_id, "data": data}),
        )
        .unwrap()
    }

    proptest! {
        #[test]
        fn any_bytes_are_an_event_or_a_400_or_422(body in hostile::bytes()) {
            parse_every_way(&body)?;
        }

        #[test]
        fn any_envelope_fields_are_an_event_or_a_400_or_422(
            kind in prop_oneof![prop::sample::select(valid_data()).prop_map(|(k, _)| k.to_owned()), hostile::text()],
            timestamp in prop_oneof![Just(json!("2026-11-23T10:15:00Z")), hostile::json()],
            shop_id in prop_oneof![Just(json!("shop_8f2k")), hostile::json()],
            data in hostile::json(),
        ) {
            let body = serde_json::to_vec(&json!({"type": kind, "timestamp": timestamp, "shop_id": shop_id, "data": data})).unwrap();
            parse_every_way(&body)?;
        }

        #[test]
        fn near_valid_data_is_an_event_or_a_400_or_422((kind, data) in near_valid_data()) {
            parse_every_way(&envelope_with(kind, "shop_8f2k", &data))?;
        }

        #[test]
        fn an_accepted_snapshot_holds_exactly_what_was_sent(
            name in hostile::text(), email in proptest::option::of(hostile::text()),
            mobile in proptest::option::of(hostile::text()), version in any::<u64>(),
        ) {
            let wire = CustomerWire {
                id: "cus_1".into(), first_name: Some(name.clone()), last_name: None,
                email: email.clone(), mobile: mobile.clone(), version,
            };
            let result = check_customer(&wire, "data.customer");
            // Versions are BIGINT columns: a larger one is refused, never wrapped.
            prop_assert!(version <= i64::MAX as u64 || result.is_err());
            if let Ok(customer) = result {
                // Blank means absent (host UIs send "" for "no value").
                let sent = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
                prop_assert_eq!(customer.first_name.map(Text::into_string), sent(Some(name)));
                let email_sent = sent(email);
                prop_assert_eq!(customer.email.map(|e| e.as_str().to_owned()), email_sent);
                prop_assert_eq!(customer.mobile.is_some(), mobile.is_some_and(|m| !m.trim().is_empty()));
                prop_assert_eq!(customer.version as u64, version);
            }
        }
    }

    #[test]
    fn deeply_nested_data_is_a_400_not_a_stack_overflow() {
        for (kind, _) in valid_data() {
            let nested = hostile::nested_arrays(100_000);
            let body = format!(
                r#"{{"type": "{kind}", "timestamp": "2026-11-23T10:15:00Z", "shop_id": "shop_8f2k", "data": {nested}}}"#
            );
            parse_every_way(body.as_bytes()).unwrap();
            let inside = format!(r#"{{"customer": {{"id": "c", "first_name": {nested}, "version": 1}}}}"#);
            let body = format!(
                r#"{{"type": "{kind}", "timestamp": "2026-11-23T10:15:00Z", "shop_id": "shop_8f2k", "data": {inside}}}"#
            );
            parse_every_way(body.as_bytes()).unwrap();
            assert!(matches!(
                RawEnvelope::parse(nested.as_bytes()).map(|_| ()),
                Err(HostError::Malformed(_))
            ));
        }
    }

    #[test]
    fn numbers_beyond_the_wire_types_are_refused_not_wrapped() {
        for version in ["18446744073709551616", "1e400", "-1", "9223372036854775808", "1.5"] {
            let body = format!(
                r#"{{"type": "customer.deleted", "timestamp": "2026-11-23T10:15:00Z", "shop_id": "s",
                    "data": {{"customer_id": "c", "version": {version}}}}}"#
            );
            let result = parse(&body);
            assert!(
                matches!(result, Err(HostError::Malformed(_) | HostError::Rule(_))),
                "{version}: {result:?}"
            );
        }
    }
}
