//! Claiming due messages under a lease, recording an attempt under the claim it was made with, and
//! giving leases back.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType},
};

use super::{Attempt, MAX_ATTEMPTS, OutboxStatus, Recorded, backoff};
use crate::{clock::to_millis, db::Database, entities::outbox_message};

/// "Now" in milliseconds on the clock that judges leases: the database's on PostgreSQL, the
/// service's on SQLite.
fn lease_clock(backend: DbBackend, now: DateTime<Utc>) -> Expr {
    match backend {
        DbBackend::Postgres => Expr::cust("(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint"),
        _ => Expr::value(to_millis(now)),
    }
}

pub(super) fn lease_until(backend: DbBackend, lease: TimeDelta, now: DateTime<Utc>) -> Expr {
    lease_clock(backend, now).add(lease.num_milliseconds())
}

fn due(backend: DbBackend, now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(outbox_message::Column::Status.eq(OutboxStatus::Pending.as_str()))
        .add(outbox_message::Column::NextAttemptAt.lte(to_millis(now)))
        .add(
            Condition::any()
                .add(outbox_message::Column::LeaseUntil.is_null())
                .add(Expr::col(outbox_message::Column::LeaseUntil).lt(lease_clock(backend, now))),
        )
}

/// The messages still to be sent, and how long the oldest of them has waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub pending: i64,
    /// `None` when nothing is pending.
    pub oldest_age: Option<TimeDelta>,
}

/// Reads the [`Backlog`] (a metrics scrape asks, so nothing reads it while nobody scrapes).
pub async fn backlog(db: &Database, now: DateTime<Utc>) -> Result<Backlog, DbErr> {
    let row = outbox_message::Entity::find()
        .select_only()
        .column_as(Expr::col(outbox_message::Column::Id).count(), "pending")
        .column_as(Expr::col(outbox_message::Column::CreatedAt).min(), "oldest")
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending.as_str()))
        .into_tuple::<(i64, Option<i64>)>()
        .one(db.conn())
        .await?;
    let (pending, oldest) = row.unwrap_or((0, None));
    let oldest_age = oldest.map(|created| TimeDelta::milliseconds(to_millis(now).saturating_sub(created)));
    Ok(Backlog { pending, oldest_age })
}

/// Whether any message is due (a cheap read, so an idle worker does not take the write lock).
pub async fn any_due(db: &Database, now: DateTime<Utc>) -> Result<bool, DbErr> {
    Ok(outbox_message::Entity::find().filter(due(db.backend(), now)).one(db.conn()).await?.is_some())
}

/// Claims up to `limit` due messages for `owner`, each with a lease of `lease` and a new claim token.
pub async fn claim_due(
    db: &Database,
    owner: &str,
    limit: u64,
    lease: TimeDelta,
    now: DateTime<Utc>,
) -> Result<Vec<outbox_message::Model>, DbErr> {
    let owner = owner.to_owned();
    db.write(move |txn| {
        Box::pin(async move {
            let backend = txn.get_database_backend();
            let mut select = outbox_message::Entity::find()
                .filter(due(backend, now))
                .order_by_asc(outbox_message::Column::NextAttemptAt)
                .limit(limit);
            if backend == DbBackend::Postgres {
                select = select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
            }
            let mut rows = select.all(txn).await?;
            if rows.is_empty() {
                return Ok(rows);
            }
            let claim = crate::random::id("clm");
            outbox_message::Entity::update_many()
                .col_expr(outbox_message::Column::LeaseUntil, lease_until(backend, lease, now))
                .col_expr(outbox_message::Column::LeaseOwner, Expr::value(owner.clone()))
                .col_expr(outbox_message::Column::ClaimToken, Expr::value(claim.clone()))
                .filter(outbox_message::Column::Id.is_in(rows.iter().map(|r| r.id.clone())))
                .exec(txn)
                .await?;
            for row in &mut rows {
                row.lease_owner = Some(owner.clone());
                row.claim_token = Some(claim.clone());
            }
            Ok(rows)
        })
    })
    .await
}

/// Gives up the leases `owner` still holds (at shutdown, for sends abandoned in flight), so another
/// instance may send those messages at once, with the same link.
pub async fn release_leases<C: ConnectionTrait>(conn: &C, owner: &str) -> Result<u64, DbErr> {
    let result = outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::LeaseUntil, Expr::value(Option::<i64>::None))
        .col_expr(outbox_message::Column::ClaimToken, Expr::value(Option::<String>::None))
        .filter(outbox_message::Column::LeaseOwner.eq(owner))
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending.as_str()))
        .filter(outbox_message::Column::ClaimToken.is_not_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}

/// Records an attempt on a message under the claim it was made with (`message.claim_token`). What it
/// means for the message's invitation is the caller's to record, in the same transaction: for a row
/// that carries an invitation, callers go through `invitations::state` (`record_attempt`).
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    message: &outbox_message::Model,
    attempt: &Attempt,
    now: DateTime<Utc>,
) -> Result<Recorded, DbErr> {
    let attempts = message.attempts + 1;
    let (status, recorded, error) = match attempt {
        Attempt::Sent { .. } => (OutboxStatus::Sent, Recorded::Sent, None),
        Attempt::Cancelled { reason } => (OutboxStatus::Cancelled, Recorded::Cancelled, Some(reason.clone())),
        Attempt::Permanent { reason } => {
            (OutboxStatus::Failed, Recorded::Failed(reason.clone()), Some(reason.clone()))
        }
        Attempt::Transient { reason, .. } if attempts >= MAX_ATTEMPTS => {
            let why = format!("gave up after {attempts} attempts: {reason}");
            (OutboxStatus::Failed, Recorded::Failed(why.clone()), Some(why))
        }
        Attempt::Transient { reason, retry_after } => {
            let wait = TimeDelta::from_std(backoff(attempts, *retry_after)).unwrap_or(TimeDelta::minutes(30));
            let at = now.checked_add_signed(wait).unwrap_or(now);
            (OutboxStatus::Pending, Recorded::Retrying(at), Some(reason.clone()))
        }
    };
    let finished = status != OutboxStatus::Pending;
    let mut update = outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::Status, Expr::value(status.as_str()))
        .col_expr(outbox_message::Column::Attempts, Expr::value(attempts))
        .col_expr(outbox_message::Column::LastError, Expr::value(error))
        .col_expr(outbox_message::Column::LeaseUntil, Expr::value(Option::<i64>::None))
        .col_expr(outbox_message::Column::LeaseOwner, Expr::value(Option::<String>::None))
        .col_expr(outbox_message::Column::ClaimToken, Expr::value(Option::<String>::None));
    if let Recorded::Retrying(at) = &recorded {
        update = update.col_expr(outbox_message::Column::NextAttemptAt, Expr::value(to_millis(*at)));
    }
    if finished {
        // A finished message keeps no address and no link: only that it happened.
        update = update
            .col_expr(outbox_message::Column::Recipient, Expr::value(Option::<String>::None))
            .col_expr(outbox_message::Column::SealedToken, Expr::value(Option::<String>::None));
    }
    if recorded == Recorded::Sent {
        update = update.col_expr(outbox_message::Column::SentAt, Expr::value(to_millis(now)));
    }
    if let Attempt::Sent { provider_ref: Some(reference) } = attempt {
        update = update.col_expr(outbox_message::Column::ProviderRef, Expr::value(reference.as_str()));
    }
    let Some(claim) = message.claim_token.as_deref() else {
        return Ok(Recorded::LeaseLost);
    };
    let result = update
        .filter(outbox_message::Column::Id.eq(message.id.as_str()))
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending.as_str()))
        .filter(outbox_message::Column::ClaimToken.eq(claim))
        .exec(conn)
        .await?;
    if result.rows_affected == 0 {
        return Ok(Recorded::LeaseLost);
    }
    Ok(recorded)
}
