//! Sign-ins the stand-in has started and not finished, kept in memory under their `state`: the nonce
//! and PKCE verifier never leave the server, so a browser cannot choose them.
//!
//! The map is bounded: a flood of started sign-ins pushes out the oldest ones (whose customers then
//! start again) instead of growing without end. A flow is used once and lives [`FLOW_LIFETIME`].

use std::{collections::HashMap, sync::Mutex};

use chrono::{DateTime, TimeDelta, Utc};

/// Long enough for a customer sent to the login page to log in, short enough to forget abandoned
/// sign-ins soon.
pub const FLOW_LIFETIME: TimeDelta = TimeDelta::minutes(10);
/// Most sign-ins waiting at once.
pub const MAX_FLOWS: usize = 1024;

/// One sign-in on its way through the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub shop_id: String,
    pub nonce: String,
    pub verifier: String,
    /// The issuer the flow was started with; the answer must name it (RFC 9207).
    pub issuer: String,
}

#[derive(Default)]
pub struct Flows {
    waiting: Mutex<HashMap<String, (DateTime<Utc>, Flow)>>,
}

impl Flows {
    /// Keeps `flow` under `state`, making room when the map is full.
    pub fn insert(&self, state: String, flow: Flow, now: DateTime<Utc>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if waiting.len() >= MAX_FLOWS {
            waiting.retain(|_, (started, _)| now - *started < FLOW_LIFETIME);
        }
        while waiting.len() >= MAX_FLOWS {
            let oldest = waiting.iter().min_by_key(|(_, (started, _))| *started).map(|(s, _)| s.clone());
            match oldest {
                Some(state) => waiting.remove(&state),
                None => break,
            };
        }
        waiting.insert(state, (now, flow));
    }

    /// The flow of `state`, once: a second answer with the same state finds nothing.
    pub fn take(&self, state: &str, now: DateTime<Utc>) -> Option<Flow> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (started, flow) = waiting.remove(state)?;
        (now - started < FLOW_LIFETIME).then_some(flow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(shop: &str) -> Flow {
        Flow {
            shop_id: shop.into(),
            nonce: "n".into(),
            verifier: "v".into(),
            issuer: format!("http://127.0.0.1/p/{shop}"),
        }
    }

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().to_utc()
    }

    #[test]
    fn a_flow_is_found_once_and_not_after_it_expired() {
        let flows = Flows::default();
        flows.insert("a".into(), flow("shop_1"), start());
        flows.insert("b".into(), flow("shop_2"), start());
        assert_eq!(flows.take("a", start() + TimeDelta::minutes(9)), Some(flow("shop_1")));
        assert_eq!(flows.take("a", start() + TimeDelta::minutes(9)), None);
        assert_eq!(flows.take("b", start() + FLOW_LIFETIME), None);
        assert_eq!(flows.take("never", start()), None);
    }

    #[test]
    fn a_full_map_drops_the_expired_then_the_oldest() {
        let flows = Flows::default();
        flows.insert("old".into(), flow("shop_old"), start());
        for i in 1..MAX_FLOWS {
            flows.insert(format!("s{i}"), flow("shop_1"), start() + TimeDelta::seconds(1));
        }
        // Full, nothing expired: the oldest makes room.
        let later = start() + TimeDelta::seconds(2);
        flows.insert("new".into(), flow("shop_new"), later);
        assert_eq!(flows.take("old", later), None);
        assert_eq!(flows.take("new", later), Some(flow("shop_new")));
        assert!(flows.take("s1", later).is_some());
        // Full of expired flows: they all go at once.
        flows.insert("x".into(), flow("shop_1"), later);
        flows.insert("y".into(), flow("shop_1"), later);
        let much_later = later + FLOW_LIFETIME;
        flows.insert("z".into(), flow("shop_z"), much_later);
        assert_eq!(flows.waiting.lock().unwrap().len(), 1);
    }
}
