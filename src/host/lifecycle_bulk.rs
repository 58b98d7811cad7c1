//! The fast path for the `customer.updated` events of a batch (a bulk import, or the host's steady
//! stream of edits): a handful of statements for the whole batch instead of several per event, on
//! SQLite and PostgreSQL alike. In order:
//!
//! 1. the batch's shops, read (and on PostgreSQL locked `FOR SHARE`, in id order) in one statement;
//! 2. every message claimed, answered `204`, in one insert (through the inbox), in id order; the
//!    answers of those claimed before are read in one more statement, only if there are any;
//! 3. the stored customers of the installed shops, read (and on PostgreSQL locked `FOR NO KEY
//!    UPDATE`, in `(shop_id, id)` order) in one statement;
//! 4. the version rule applied in memory in arrival order ([`records::judge_customer`]), then the
//!    latest snapshot of each customer written in one upsert whose `WHERE` applies the rule again
//!    (a customer it did not write, because another instance created it meanwhile with a newer
//!    version, has its events counted stale);
//! 5. a changed email followed to the portal account (rare: one call per changed customer).
//!
//! On SQLite the single write lock makes reading first and writing after safe. On PostgreSQL the
//! locks do: the decision about a customer rests on its row (and its shop's), and nobody can change
//! them until the batch commits. They are taken in the order every other writer takes them (shop,
//! then customer; several of a kind in key order), so two instances' batches wait for each other
//! rather than deadlock. One lock can come out of turn: a customer that did not exist when the batch
//! locked its customers, created meanwhile by another batch, is locked by the upsert. If that ever
//! closes a circle, PostgreSQL breaks it (after `deadlock_timeout`, a second by default) by failing
//! one of the batches, which the caller then applies event by event.
//!
//! An event the batch cannot settle on its own (a shop it does not know, a message still in
//! progress elsewhere) is left out and handed back, to be applied alone.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};

use super::lifecycle_writer::{EventOutcome, PendingEvent};
use crate::{
    db::ROWS_PER_STATEMENT,
    domain::ShopId,
    entities::{customer, shop},
    inbox::{self, Claim, Endpoint, MessageInfo, StoredAnswer},
    invitations,
    shops::{Applied, ShopEvent, records, snapshot::CustomerSnapshot},
};

/// A customer as the batch keys it: `(shop_id, customer_id)`.
type Key<'a> = (&'a str, &'a str);
/// A `customer.updated` event with its place in the batch and its snapshot.
type Update<'a> = (usize, &'a PendingEvent, &'a CustomerSnapshot);

/// Applies the `customer.updated` events among `events`. Returns one entry per event: its outcome,
/// or `None` when it must be applied alone (another kind of event, or one the batch cannot settle;
/// nothing of it was written here).
pub async fn apply_customer_updates<C: ConnectionTrait>(
    txn: &C,
    events: &[PendingEvent],
) -> Result<Vec<Option<EventOutcome>>, DbErr> {
    let mut outcomes: Vec<Option<EventOutcome>> = vec![None; events.len()];
    // Each with its place in `events` (and `outcomes`).
    let updates: Vec<Update<'_>> = events
        .iter()
        .enumerate()
        .filter_map(|(i, pending)| match &pending.event {
            ShopEvent::CustomerUpdated(snapshot) => Some((i, pending, snapshot)),
            _ => None,
        })
        .collect();
    let Some(&(_, first, _)) = updates.first() else { return Ok(outcomes) };

    let shop_ids: BTreeSet<&str> = updates.iter().map(|(_, pending, _)| pending.shop_id.as_str()).collect();
    let shop_ids: Vec<&str> = shop_ids.into_iter().collect();
    let shops: HashMap<String, shop::Model> =
        records::share_shops(txn, &shop_ids).await?.into_iter().map(|s| (s.id.clone(), s)).collect();

    // A stranger's event is not claimed here: alone, it gets the unknown shop's answer.
    let known: Vec<Update<'_>> =
        updates.into_iter().filter(|(_, pending, _)| shops.contains_key(pending.shop_id.as_str())).collect();
    let claims: Vec<(MessageInfo<'_>, DateTime<Utc>)> = known
        .iter()
        .map(|&(_, pending, snapshot)| {
            let info = MessageInfo {
                id: &pending.id,
                endpoint: Endpoint::Lifecycle,
                event_type: pending.kind.name(),
                shop_id: &pending.shop_id,
                customer_id: Some(&snapshot.id),
            };
            (info, pending.now)
        })
        .collect();
    let claimed = inbox::claim_many_answered(txn, &claims, &StoredAnswer::no_content()).await?;

    let mut fresh: Vec<Update<'_>> = Vec::with_capacity(known.len());
    let mut seen: HashSet<&str> = HashSet::new();
    for update @ (i, pending, _) in known {
        let id = pending.id.as_str();
        match claimed.get(id) {
            Some(Claim::Fresh) if seen.insert(id) => fresh.push(update),
            // The same message twice in one batch: the second is a repeat.
            Some(Claim::Fresh) => outcomes[i] = Some((StoredAnswer::no_content(), None)),
            Some(Claim::Answered(stored)) => outcomes[i] = Some((stored.clone(), None)),
            Some(Claim::InProgress) | None => {}
        }
    }

    let installed = |pending: &PendingEvent| shops[pending.shop_id.as_str()].installed;
    let keys: BTreeSet<Key<'_>> =
        fresh.iter().filter(|(_, pending, _)| installed(pending)).map(|&(_, p, s)| key(p, s)).collect();
    let keys: Vec<Key<'_>> = keys.into_iter().collect();
    let before: HashMap<Key<'_>, customer::Model> = records::lock_customers(txn, &keys)
        .await?
        .into_iter()
        .filter_map(|c| {
            let at = keys.binary_search(&(c.shop_id.as_str(), c.id.as_str())).ok()?;
            Some((keys[at], c))
        })
        .collect();

    // The version rule, in arrival order, as the upsert's WHERE applies it.
    let mut versions: HashMap<Key<'_>, (i64, bool)> =
        before.iter().map(|(k, c)| (*k, (c.version, c.deleted_at.is_some()))).collect();
    let mut latest: BTreeMap<Key<'_>, (&ShopId, &CustomerSnapshot)> = BTreeMap::new();
    let mut stored: Vec<(usize, Key<'_>)> = Vec::new();
    for (i, pending, snapshot) in fresh {
        let applied = if installed(pending) {
            let k = key(pending, snapshot);
            let verdict = records::judge_customer(versions.get(&k).copied(), snapshot.version);
            if verdict == Applied::Stored {
                versions.insert(k, (snapshot.version, false));
                latest.insert(k, (&pending.shop_id, snapshot));
                stored.push((i, k));
            }
            verdict
        } else {
            // No new personal data for a shop that uninstalled.
            Applied::ShopUninstalled
        };
        outcomes[i] = Some((StoredAnswer::no_content(), Some(applied)));
    }

    let rows: Vec<(&ShopId, &CustomerSnapshot)> = latest.values().copied().collect();
    let now = first.now;
    let mut written: HashSet<(String, String)> = HashSet::with_capacity(rows.len());
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        written.extend(records::upsert_customers(txn, chunk, now).await?);
    }
    if written.len() < latest.len() {
        // A customer that was not there to lock, created meanwhile by another instance with a newer
        // version: nothing of this batch was written for it, so each of its events was stale.
        for &(i, (shop_id, id)) in &stored {
            if !written.contains(&(shop_id.to_owned(), id.to_owned())) {
                outcomes[i] = Some((StoredAnswer::no_content(), Some(Applied::Stale)));
            }
        }
    }
    // A changed email moves a portal username; in key order, like every lock of the batch.
    for (k, (shop_id, snapshot)) in &latest {
        let Some(old_email) = before.get(k).map(|c| c.email.as_deref()) else { continue };
        if old_email != snapshot.email.as_ref().map(|e| e.as_str()) {
            invitations::follow_email_change(
                txn,
                shop_id,
                &snapshot.id,
                old_email,
                snapshot.email.as_ref(),
                now,
            )
            .await?;
        }
    }
    Ok(outcomes)
}

fn key<'a>(pending: &'a PendingEvent, snapshot: &'a CustomerSnapshot) -> Key<'a> {
    (pending.shop_id.as_str(), snapshot.id.as_str())
}
