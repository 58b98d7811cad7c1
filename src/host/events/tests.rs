//! The envelope and events against the contract's examples, and hostile input against every parser.

use super::*;
use crate::{domain::hostile, host::actions::ActionData};
use proptest::prelude::*;
use serde_json::{Value, json};

fn parse(body: &str) -> Result<ShopEvent, HostError> {
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
    let ShopEvent::Installed(shop) = parse(&installed).unwrap() else { panic!("not an install") };
    assert_eq!(shop.name.as_str(), "Southside Auto Care");
    assert_eq!(shop.tier, SubscriptionTier::Gold);
    assert_eq!(shop.version, 12);

    let updated = r#"{"type": "customer.updated", "timestamp": "2026-11-23T10:15:00Z", "shop_id": "shop_8f2k",
        "data": {"customer": {"id": "cus_456", "first_name": "Jana", "last_name": "Kowalski",
        "email": "jana@example.com", "mobile": "+61412345678", "version": 3}}}"#;
    let ShopEvent::CustomerUpdated(customer) = parse(updated).unwrap() else { panic!() };
    assert_eq!(customer.email.unwrap().as_str(), "jana@example.com");

    let no_contact = r#"{"type": "customer.updated", "timestamp": "2026-11-23T10:15:00Z", "shop_id": "shop_8f2k",
        "data": {"customer": {"id": "cus_457", "first_name": "Ola", "last_name": "N", "email": null, "version": 1}}}"#;
    let ShopEvent::CustomerUpdated(customer) = parse(no_contact).unwrap() else { panic!() };
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
    let contract =
        ["plugin.installed", "plugin.uninstalled", "shop.updated", "customer.updated", "customer.deleted"];
    let ours: Vec<&str> = LifecycleEventType::ALL.iter().map(|kind| kind.name()).collect();
    assert_eq!(ours, contract);
    for name in contract {
        assert_eq!(LifecycleEventType::from_name(name).map(LifecycleEventType::name), Some(name));
        assert!(crate::manifest::EMBEDDED.contains(&format!("\"{name}\"")), "{name} is not in the manifest");
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

/// A valid `data` with a few of its values replaced by hostile ones or removed: the inputs that
/// get past the shape checks and reach the rules.
fn near_valid_data() -> impl Strategy<Value = (&'static str, Value)> {
    let mutation = (any::<prop::sample::Index>(), proptest::option::of(hostile::json()));
    (prop::sample::select(valid_data()), prop::collection::vec(mutation, 1..4)).prop_map(
        |((kind, mut data), mutations)| {
            for (which, replacement) in mutations {
                let all = hostile::pointers(&data);
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
        assert!(matches!(RawEnvelope::parse(nested.as_bytes()).map(|_| ()), Err(HostError::Malformed(_))));
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
        assert!(matches!(result, Err(HostError::Malformed(_) | HostError::Rule(_))), "{version}: {result:?}");
    }
}
