//! A short-lived in-memory copy of shop rows for the customer pages, which read the shop on every
//! request. Entries live two seconds; this instance forgets a shop as soon as it changes it, and other
//! instances sharing the database see a change within those two seconds.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use sea_orm::{DbErr, EntityTrait};

use crate::{db::Database, domain::ShopId, entities::shop};

/// How long an entry is trusted.
pub const TTL: Duration = Duration::from_secs(2);
/// Entries kept at most (shops and unknown ids); past it the cache starts over.
const MAX_ENTRIES: usize = 10_000;

/// A shop (or the fact that there is none) and when it was read.
type Entry = (Instant, Option<Arc<shop::Model>>);

#[derive(Default)]
pub struct ShopCache {
    entries: RwLock<HashMap<String, Entry>>,
}

impl ShopCache {
    /// The shop with this id, from memory when fresh, else from the database.
    pub async fn get(&self, db: &Database, id: &ShopId) -> Result<Option<Arc<shop::Model>>, DbErr> {
        let id = id.as_str();
        if let Some((at, shop)) = self.entries.read().expect("cache lock").get(id)
            && at.elapsed() < TTL
        {
            return Ok(shop.clone());
        }
        let loaded = shop::Entity::find_by_id(id).one(db.conn()).await?.map(Arc::new);
        let mut entries = self.entries.write().expect("cache lock");
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(id.to_owned(), (Instant::now(), loaded.clone()));
        Ok(loaded)
    }

    /// Drops the entry of a shop this instance just changed.
    pub fn forget(&self, id: &ShopId) {
        self.entries.write().expect("cache lock").remove(id.as_str());
    }
}

impl std::fmt::Debug for ShopCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopCache").finish_non_exhaustive()
    }
}
