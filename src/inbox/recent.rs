//! The ids of lifecycle messages this instance answered lately (always `204`, and never changed
//! afterwards), so the host's retries are answered from memory without touching the database. A miss
//! goes the normal way, through the stored answers. Beside each id a small value is kept (the
//! message's type, so a repeat is counted by type without parsing its body again).
//!
//! Each id is kept as a 128-bit fingerprint ([`crate::fingerprint`]): 16 bytes in the eviction queue
//! and 16 plus the value in the map instead of two copies of the id, enough entries to cover a minute
//! of intake at full speed in a few tens of MiB. A shared fingerprint would answer a new message as a
//! repeat; the odds are about one in 2^128 per pair.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use crate::{
    domain::WebhookId,
    fingerprint::{Fingerprint, Fingerprints},
};

/// Remembers the ids of recently answered messages, each with a `V`, forgetting the oldest beyond its
/// capacity.
pub struct RecentlyAnswered<V> {
    keys: Fingerprints,
    inner: Mutex<(HashMap<Fingerprint, V>, VecDeque<Fingerprint>)>,
    capacity: usize,
}

impl<V: Copy> RecentlyAnswered<V> {
    /// Remembers at most `capacity` ids.
    pub fn new(capacity: usize) -> Self {
        Self { keys: Fingerprints::new(), inner: Mutex::default(), capacity }
    }

    fn fingerprint(&self, id: &WebhookId) -> Fingerprint {
        self.keys.of(id.as_str().as_bytes())
    }

    /// What was kept with `id`, when it was answered lately.
    pub fn get(&self, id: &WebhookId) -> Option<V> {
        let fingerprint = self.fingerprint(id);
        self.inner.lock().expect("answers lock").0.get(&fingerprint).copied()
    }

    /// Remembers that `id` was answered, with `value`.
    pub fn insert(&self, id: &WebhookId, value: V) {
        let fingerprint = self.fingerprint(id);
        let mut inner = self.inner.lock().expect("answers lock");
        let (map, order) = &mut *inner;
        if map.insert(fingerprint, value).is_none() {
            order.push_back(fingerprint);
            if order.len() > self.capacity
                && let Some(oldest) = order.pop_front()
            {
                map.remove(&oldest);
            }
        }
    }
}

impl<V> std::fmt::Debug for RecentlyAnswered<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentlyAnswered").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> WebhookId {
        WebhookId::parse(s).unwrap()
    }

    #[test]
    fn recent_answers_forget_the_oldest_beyond_capacity() {
        let recent = RecentlyAnswered::new(2);
        recent.insert(&id("a"), 1);
        recent.insert(&id("b"), 2);
        recent.insert(&id("a"), 1);
        assert_eq!((recent.get(&id("a")), recent.get(&id("b"))), (Some(1), Some(2)));
        recent.insert(&id("c"), 3);
        assert_eq!(recent.get(&id("a")), None);
        assert_eq!((recent.get(&id("b")), recent.get(&id("c"))), (Some(2), Some(3)));
    }

    #[test]
    fn only_remembered_ids_are_recognised() {
        let recent = RecentlyAnswered::new(10_000);
        for n in 0..10_000u32 {
            recent.insert(&id(&format!("msg_{n}")), n);
        }
        assert!((0..10_000).all(|n| recent.get(&id(&format!("msg_{n}"))) == Some(n)));
        assert!((10_000..20_000).all(|n| recent.get(&id(&format!("msg_{n}"))).is_none()));
    }
}
