//! Committing lifecycle events. Each event is claimed (with its answer), applied and committed before
//! the host gets its `204`. The events that arrive while one batch is being committed are committed
//! together in the next (group commit, at most `MAX_BATCH`), on SQLite and PostgreSQL alike: a bulk
//! import of thousands of `customer.updated` costs one commit (and one `fsync`) per batch instead of
//! one per event, and no answer is given before its batch has committed.
//!
//! A batch's `customer.updated` events go through [`super::lifecycle_bulk`], a handful of statements
//! for all of them. The other kinds (install, uninstall, `shop.updated`, `customer.deleted`) are rare,
//! and each is applied alone, in a transaction of its own, before the updates it arrived with. So is
//! an update the fast path hands back (a shop it does not know, a message still in progress
//! elsewhere). If the fast path fails (a deadlock with another instance, a database fault), its
//! transaction is rolled back and its events are applied one by one, so one bad event never fails
//! another.
//!
//! On PostgreSQL, instances sharing the database each run their own batches side by side: the inbox
//! claims and the row locks (shop, then customer: [`crate::shops::records`]) make a message count
//! once and an older snapshot lose, whichever instance commits first. On SQLite the batches need no
//! locks: they hold the single write lock.

use std::{panic::AssertUnwindSafe, sync::Arc};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::{events::LifecycleEventType, problem::HostError};
use crate::{
    db::Database,
    domain::{ShopId, WebhookId},
    inbox::{self, Claim, Endpoint, MessageInfo, StoredAnswer},
    shops::{self, Applied, ApplyError, ShopEvent},
};

/// Events committed together at most.
const MAX_BATCH: usize = 256;

/// A verified, parsed event, ready to apply.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub id: WebhookId,
    pub kind: LifecycleEventType,
    pub shop_id: ShopId,
    /// When it happened on the host.
    pub occurred_at: DateTime<Utc>,
    pub event: ShopEvent,
    pub now: DateTime<Utc>,
}

/// The answer, and what the event did (`None` for a repeat).
pub type EventOutcome = (StoredAnswer, Option<Applied>);

/// Claims and applies one event in `txn`.
pub async fn apply<C: sea_orm::ConnectionTrait>(
    txn: &C,
    pending: &PendingEvent,
) -> Result<EventOutcome, HostError> {
    let info = MessageInfo {
        id: &pending.id,
        endpoint: Endpoint::Lifecycle,
        event_type: pending.kind.name(),
        shop_id: &pending.shop_id,
        customer_id: pending.event.customer_id(),
    };
    // A lifecycle event's answer is known before it is applied: if applying fails, the transaction
    // rolls back and takes the claim and its answer with it.
    let answer = StoredAnswer::no_content();
    match inbox::claim_answered(txn, &info, &answer, pending.now).await? {
        Claim::Fresh => {}
        Claim::Answered(stored) => return Ok((stored, None)),
        Claim::InProgress => return Err(HostError::Busy),
    }
    let applied = shops::apply_event(txn, &pending.shop_id, pending.occurred_at, &pending.event, pending.now)
        .await
        .map_err(|e| match e {
            ApplyError::UnknownShop(shop) => HostError::UnknownShop(shop),
            ApplyError::Db(db) => HostError::from(db),
        })?;
    Ok((answer, Some(applied)))
}

type Job = (PendingEvent, oneshot::Sender<Result<EventOutcome, HostError>>);

/// Commits lifecycle events in batches, from one task per instance.
pub struct LifecycleWriter {
    jobs: mpsc::UnboundedSender<Job>,
}

impl LifecycleWriter {
    /// Starts the batching task.
    pub fn start(db: Database) -> Self {
        let (jobs, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run_batches(db, receiver));
        Self { jobs }
    }

    /// Commits one event and returns its outcome once it is durably stored.
    pub async fn commit(&self, pending: PendingEvent) -> Result<EventOutcome, HostError> {
        let stopped = || HostError::Internal("the event writer stopped".into());
        let (reply, outcome) = oneshot::channel();
        self.jobs.send((pending, reply)).map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

impl std::fmt::Debug for LifecycleWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LifecycleWriter").finish_non_exhaustive()
    }
}

async fn run_batches(db: Database, mut receiver: mpsc::UnboundedReceiver<Job>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        commit_batch(&db, std::mem::take(&mut jobs)).await;
    }
}

async fn commit_batch(db: &Database, jobs: Vec<Job>) {
    let (updates, others): (Vec<Job>, Vec<Job>) =
        jobs.into_iter().partition(|(pending, _)| matches!(pending.event, ShopEvent::CustomerUpdated(_)));
    // First: an install then comes before the first updates of its shop that arrived with it.
    apply_each(db, others).await;
    if updates.is_empty() {
        return;
    }

    let (events, replies): (Vec<PendingEvent>, Vec<_>) = updates.into_iter().unzip();
    let events = Arc::new(events);
    let shared = events.clone();
    let together = guarded(db.write(move |txn| {
        Box::pin(async move {
            super::lifecycle_bulk::apply_customer_updates(txn, &shared).await.map_err(HostError::from)
        })
    }))
    .await;

    let outcomes = match together {
        Ok(outcomes) => outcomes,
        Err(error) => {
            tracing::warn!(%error, events = events.len(), "a batch of customer updates failed; applying its events one by one");
            vec![None; events.len()]
        }
    };
    let mut alone = Vec::new();
    for ((pending, reply), outcome) in events.iter().zip(replies).zip(outcomes) {
        match outcome {
            Some(outcome) => {
                let _ = reply.send(Ok(outcome));
            }
            None => alone.push((pending.clone(), reply)),
        }
    }
    apply_each(db, alone).await;
}

/// Applies each event in a transaction of its own, all at once (on SQLite the writer commits them
/// together, each in its own savepoint), and answers each as soon as its own has committed.
async fn apply_each(db: &Database, jobs: Vec<Job>) {
    let each = jobs.into_iter().map(|(pending, reply)| async move {
        let outcome = guarded(db.write(move |txn| Box::pin(async move { apply(txn, &pending).await }))).await;
        let _ = reply.send(outcome);
    });
    futures_util::future::join_all(each).await;
}

/// `work`, with a panic (a bug) turned into an error: the batching task must outlive one bad event,
/// or every later event would wait for an answer that never comes.
async fn guarded<T>(work: impl Future<Output = Result<T, HostError>>) -> Result<T, HostError> {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(HostError::Internal("applying a lifecycle event panicked".into())))
}
