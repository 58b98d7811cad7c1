//! A signed body, parsed every way the endpoints parse one: the envelope, the data of every
//! lifecycle event and of the star-menu action, and the snapshots' rules. Only 400 and 422 answers
//! (`Malformed`, `UnknownType`, `Rule`) may come out of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portal_invites::host::{
    actions::ActionData,
    events::{LifecycleEventType, RawEnvelope, check_customer, check_shop, parse_lifecycle},
    problem::HostError,
};

fn acceptable<T>(result: Result<T, HostError>) {
    match result {
        Ok(_) | Err(HostError::Malformed(_) | HostError::UnknownType(_) | HostError::Rule(_)) => {}
        Err(other) => panic!("a body must be a 400 or a 422, not {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = RawEnvelope::parse(data) else { return };
    let _ = LifecycleEventType::from_name(&envelope.event_type);
    let shop_id = match envelope.shop_id() {
        Ok(id) => id,
        Err(e) => return acceptable::<()>(Err(e)),
    };
    for kind in LifecycleEventType::ALL {
        acceptable(parse_lifecycle(kind, &envelope, &shop_id));
    }
    acceptable(envelope.data::<ActionData>().and_then(|action| {
        check_shop(&action.shop, &shop_id, "data.shop")?;
        check_customer(&action.customer, "data.customer")
    }));
});
