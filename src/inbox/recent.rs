//! The ids of lifecycle messages this instance answered lately (always `204`, and never changed
//! afterwards), so the host's retries are answered from memory without touching the database. A miss
//! goes the normal way, through the stored answers.
//!
//! Each id is kept as a 128-bit fingerprint (two independently keyed SipHashes, keys drawn at start),
//! 16 bytes in the set and 16 in the eviction queue instead of two copies of the id: enough
//! entries to cover a minute of intake at full speed in a few tens of MiB. Two different ids share a
//! fingerprint with odds of about one in 2^128 per pair, and nobody outside knows the keys to aim for
//! one; a shared fingerprint would answer a new message as a repeat.

use std::{
    collections::{HashSet, VecDeque},
    hash::{BuildHasher, RandomState},
    sync::Mutex,
};

use crate::domain::WebhookId;

/// Remembers the ids of recently answered messages, forgetting the oldest beyond its capacity.
pub struct RecentlyAnswered {
    keys: (RandomState, RandomState),
    inner: Mutex<(HashSet<u128>, VecDeque<u128>)>,
    capacity: usize,
}

impl RecentlyAnswered {
    /// Remembers at most `capacity` ids.
    pub fn new(capacity: usize) -> Self {
        Self { keys: (RandomState::new(), RandomState::new()), inner: Mutex::default(), capacity }
    }

    fn fingerprint(&self, id: &WebhookId) -> u128 {
        let (high, low) = (self.keys.0.hash_one(id.as_str()), self.keys.1.hash_one(id.as_str()));
        (u128::from(high) << 64) | u128::from(low)
    }

    /// Whether `id` was answered lately.
    pub fn contains(&self, id: &WebhookId) -> bool {
        let fingerprint = self.fingerprint(id);
        self.inner.lock().expect("answers lock").0.contains(&fingerprint)
    }

    /// Remembers that `id` was answered.
    pub fn insert(&self, id: &WebhookId) {
        let fingerprint = self.fingerprint(id);
        let mut inner = self.inner.lock().expect("answers lock");
        let (set, order) = &mut *inner;
        if set.insert(fingerprint) {
            order.push_back(fingerprint);
            if order.len() > self.capacity
                && let Some(oldest) = order.pop_front()
            {
                set.remove(&oldest);
            }
        }
    }
}

impl std::fmt::Debug for RecentlyAnswered {
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
        recent.insert(&id("a"));
        recent.insert(&id("b"));
        recent.insert(&id("a"));
        assert!(recent.contains(&id("a")) && recent.contains(&id("b")));
        recent.insert(&id("c"));
        assert!(!recent.contains(&id("a")));
        assert!(recent.contains(&id("b")) && recent.contains(&id("c")));
    }

    #[test]
    fn only_remembered_ids_are_recognised() {
        let recent = RecentlyAnswered::new(10_000);
        for n in 0..10_000 {
            recent.insert(&id(&format!("msg_{n}")));
        }
        assert!((0..10_000).all(|n| recent.contains(&id(&format!("msg_{n}")))));
        assert!((10_000..20_000).all(|n| !recent.contains(&id(&format!("msg_{n}")))));
    }
}
