//! Committing lifecycle events. Each event is claimed (with its answer), applied and committed before
//! the host gets its `204`. On SQLite the events that arrive while one commit is in progress are
//! committed together in the next transaction (group commit): a bulk import of thousands of
//! `customer.updated` costs one `fsync` per batch instead of one per event, and no answer is given
//! before its batch is durably committed. If any event of a batch fails (an unknown shop, say), the
//! batch is rolled back and its events are applied one by one, so one bad event never fails another.
//!
//! PostgreSQL needs none of this: concurrent transactions there commit independently and its WAL
//! writer already groups their flushes, and instances sharing the database must not hold row locks
//! for each other's batches. There each event is a transaction of its own, which locks the rows its
//! decision rests on (the shop, then the customer: [`crate::shops::records::lock_shop`]) so that
//! it takes turns with a star-menu submission or the erasure deciding on the same rows. The SQLite
//! batches take no locks: they hold the single write lock.

use chrono::{DateTime, Utc};
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

/// Commits lifecycle events: batched on SQLite, one transaction each on PostgreSQL.
pub struct LifecycleWriter {
    db: Database,
    batches: Option<mpsc::UnboundedSender<Job>>,
}

impl LifecycleWriter {
    /// Starts the batching task when the database is SQLite.
    pub fn start(db: Database) -> Self {
        let batches = (db.backend() == sea_orm::DbBackend::Sqlite).then(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(run_batches(db.clone(), receiver));
            sender
        });
        Self { db, batches }
    }

    /// Commits one event and returns its outcome once it is durably stored.
    pub async fn commit(&self, pending: PendingEvent) -> Result<EventOutcome, HostError> {
        match &self.batches {
            Some(batches) => {
                let (reply, outcome) = oneshot::channel();
                batches
                    .send((pending, reply))
                    .map_err(|_| HostError::Internal("the event writer stopped".into()))?;
                outcome.await.map_err(|_| HostError::Internal("the event writer stopped".into()))?
            }
            None => self.db.write(move |txn| Box::pin(async move { apply(txn, &pending).await })).await,
        }
    }
}

impl std::fmt::Debug for LifecycleWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LifecycleWriter").field("batched", &self.batches.is_some()).finish()
    }
}

/// Whether a batch had to be redone event by event.
struct BatchFailed;

impl From<sea_orm::DbErr> for BatchFailed {
    fn from(_: sea_orm::DbErr) -> Self {
        Self
    }
}

async fn run_batches(db: Database, mut receiver: mpsc::UnboundedReceiver<Job>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let events: Vec<PendingEvent> = jobs.iter().map(|(pending, _)| pending.clone()).collect();
        let together = db
            .write(move |txn| {
                Box::pin(async move {
                    if let Some(outcomes) = super::lifecycle_bulk::apply_customer_updates(txn, &events)
                        .await
                        .map_err(|_| BatchFailed)?
                    {
                        return Ok(outcomes);
                    }
                    let mut outcomes = Vec::with_capacity(events.len());
                    for pending in &events {
                        outcomes.push(apply(txn, pending).await.map_err(|_| BatchFailed)?);
                    }
                    Ok::<_, BatchFailed>(outcomes)
                })
            })
            .await;
        match together {
            Ok(outcomes) => {
                for ((_, reply), outcome) in jobs.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(BatchFailed) => {
                for (pending, reply) in jobs.drain(..) {
                    let outcome =
                        db.write(move |txn| Box::pin(async move { apply(txn, &pending).await })).await;
                    let _ = reply.send(outcome);
                }
            }
        }
    }
}
