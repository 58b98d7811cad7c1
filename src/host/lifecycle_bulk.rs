//! The fast path for a SQLite batch made only of `customer.updated` (a bulk import): a handful of
//! statements for the whole batch instead of several per event. It reads which messages were already
//! answered (through the inbox), the shops and the stored customers in one query each, applies the
//! version rule in memory in arrival order, then writes every claim (through the inbox) and every
//! customer in one statement each.
//!
//! Reading first and writing after is safe only because the batch holds SQLite's single write lock:
//! nobody else can write in between. Anything unusual (another event type, an unknown shop, a message
//! still in progress elsewhere) hands the batch back to the event-by-event path.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::{
    lifecycle_writer::{EventOutcome, PendingEvent},
    problem::HostError,
};
use crate::{
    db::ROWS_PER_STATEMENT,
    domain::{ShopId, WebhookId},
    entities::{customer, shop},
    inbox::{self, Endpoint, MessageInfo, StoredAnswer},
    invitations,
    shops::{Applied, ShopEvent, records, snapshot::CustomerSnapshot},
};

/// Applies a batch of `customer.updated` events; `Ok(None)` when the batch is not one (the caller then
/// applies its events one by one).
pub async fn apply_customer_updates<C: ConnectionTrait>(
    txn: &C,
    events: &[PendingEvent],
) -> Result<Option<Vec<EventOutcome>>, HostError> {
    let updates: Vec<(&PendingEvent, &CustomerSnapshot)> = events
        .iter()
        .filter_map(|e| match &e.event {
            ShopEvent::CustomerUpdated(snapshot) => Some((e, snapshot)),
            _ => None,
        })
        .collect();
    if updates.len() != events.len() || events.is_empty() {
        return Ok(None);
    }

    // Messages answered before.
    let ids: Vec<&WebhookId> = events.iter().map(|e| &e.id).collect();
    let Some(answered) = inbox::answered_among(txn, &ids).await? else { return Ok(None) };

    let mut outcomes: Vec<Option<EventOutcome>> = vec![None; events.len()];
    let mut fresh: Vec<usize> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for (i, (pending, _)) in updates.iter().enumerate() {
        if let Some(stored) = answered.get(pending.id.as_str()) {
            outcomes[i] = Some((stored.clone(), None));
        } else if !seen.insert(pending.id.as_str()) {
            // The same message twice in one batch: the second is a repeat.
            outcomes[i] = Some((StoredAnswer::no_content(), None));
        } else {
            fresh.push(i);
        }
    }

    // Their shops, which must all be known.
    let shop_ids: Vec<ShopId> =
        fresh.iter().map(|&i| updates[i].0.shop_id.clone()).collect::<HashSet<_>>().into_iter().collect();
    let shops: HashMap<String, shop::Model> = shop::Entity::find()
        .filter(shop::Column::Id.is_in(shop_ids.iter().map(ShopId::as_str)))
        .all(txn)
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    if shops.len() != shop_ids.len() {
        return Ok(None);
    }

    // One claim per fresh message, answered 204: the transaction commits them all or none.
    let claims: Vec<(MessageInfo<'_>, DateTime<Utc>)> = fresh
        .iter()
        .map(|&i| {
            let (pending, snapshot) = updates[i];
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
    inbox::claim_many_answered(txn, &claims, &StoredAnswer::no_content()).await?;

    for shop_id in shop_ids {
        let shop = &shops[shop_id.as_str()];
        let mine: Vec<usize> = fresh.iter().copied().filter(|&i| updates[i].0.shop_id == shop_id).collect();
        if !shop.installed {
            for i in mine {
                outcomes[i] = Some((StoredAnswer::no_content(), Some(Applied::ShopUninstalled)));
            }
            continue;
        }
        let customer_ids: Vec<String> = mine
            .iter()
            .map(|&i| updates[i].1.id.as_str().to_owned())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut before: HashMap<String, customer::Model> = HashMap::new();
        for chunk in customer_ids.chunks(ROWS_PER_STATEMENT) {
            let rows = customer::Entity::find()
                .filter(customer::Column::ShopId.eq(shop_id.as_str()))
                .filter(customer::Column::Id.is_in(chunk.to_vec()))
                .all(txn)
                .await?;
            before.extend(rows.into_iter().map(|c| (c.id.clone(), c)));
        }
        // The version rule, in arrival order, as the upsert's WHERE applies it.
        let mut versions: HashMap<&str, (i64, bool)> =
            before.iter().map(|(id, c)| (id.as_str(), (c.version, c.deleted_at.is_some()))).collect();
        let mut latest: BTreeMap<&str, &CustomerSnapshot> = BTreeMap::new();
        for i in mine {
            let snapshot = updates[i].1;
            let applied =
                records::judge_customer(versions.get(snapshot.id.as_str()).copied(), snapshot.version);
            if applied == Applied::Stored {
                versions.insert(snapshot.id.as_str(), (snapshot.version, false));
                latest.insert(snapshot.id.as_str(), snapshot);
            }
            outcomes[i] = Some((StoredAnswer::no_content(), Some(applied)));
        }
        let rows: Vec<CustomerSnapshot> = latest.values().map(|s| (*s).clone()).collect();
        let now = updates[0].0.now;
        for chunk in rows.chunks(ROWS_PER_STATEMENT / 10) {
            records::upsert_customers(txn, &shop_id, chunk, now).await?;
        }
        // A changed email moves a portal username (rare in a bulk import, so one at a time).
        for (snapshot, old_email) in rows.iter().filter_map(|s| {
            let old_email = before.get(s.id.as_str())?.email.as_deref();
            (old_email != s.email.as_ref().map(|e| e.as_str())).then_some((s, old_email))
        }) {
            invitations::follow_email_change(
                txn,
                &shop_id,
                &snapshot.id,
                old_email,
                snapshot.email.as_ref(),
                now,
            )
            .await?;
        }
    }
    Ok(Some(outcomes.into_iter().map(|o| o.expect("every event has an outcome")).collect()))
}
