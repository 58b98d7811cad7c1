//! The outbox: messages queued in the same transaction as the change that causes them, claimed by a
//! sender with a lease, and marked sent, retried with backoff, or given up.
//!
//! Claiming takes a lease (`lease_until`, `lease_owner`) in a short transaction. On PostgreSQL the
//! rows are selected `FOR UPDATE SKIP LOCKED`, so instances sharing the database never claim the same
//! row; on SQLite there is only one writer. A sender that dies loses its lease when it expires, and
//! the row is claimed again: after a crash, every pending message is still sent.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, LockBehavior, LockType},
};

use crate::{
    clock::to_millis,
    db::Database,
    entities::{invitation, outbox_message},
    invitations::{Channel, InvitationStatus},
    tokens,
};

/// How long a claimed message belongs to its sender: far longer than one attempt can take (the SMTP
/// timeout is 15 s), so it only runs out when the sender died.
pub const LEASE: TimeDelta = TimeDelta::seconds(60);
/// Attempts before a message is given up.
pub const MAX_ATTEMPTS: i32 = 10;
/// The first retry waits up to this long; each further retry doubles it, up to [`BACKOFF_CAP`].
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest wait between two attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30 * 60);

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// The invitation (email with two links, or SMS with the set-up link).
    Invitation,
    /// A password-reset link.
    PasswordReset,
    /// "Your password was changed".
    PasswordChanged,
}

impl MessageKind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invitation => "invitation",
            Self::PasswordReset => "password_reset",
            Self::PasswordChanged => "password_changed",
        }
    }

    /// Parses the stored form.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "invitation" => Some(Self::Invitation),
            "password_reset" => Some(Self::PasswordReset),
            "password_changed" => Some(Self::PasswordChanged),
            _ => None,
        }
    }
}

/// A message to queue.
pub struct NewMessage<'a> {
    /// The shop.
    pub shop_id: &'a str,
    /// The customer.
    pub customer_id: Option<&'a str>,
    /// What it is.
    pub kind: MessageKind,
    /// How it goes.
    pub channel: Channel,
    /// Where it goes.
    pub recipient: &'a str,
    /// The invitation it delivers.
    pub invitation_id: Option<&'a str>,
    /// The token whose link it carries.
    pub token_id: Option<&'a str>,
}

/// Queues a message. With `leased_to`, the row starts claimed by that sender (the request that will
/// make the first attempt itself); otherwise any worker may take it at once.
pub async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    new: NewMessage<'_>,
    leased_to: Option<&str>,
    now: DateTime<Utc>,
) -> Result<outbox_message::Model, DbErr> {
    let row = outbox_message::Model {
        id: crate::random::id("msg"),
        shop_id: new.shop_id.to_owned(),
        customer_id: new.customer_id.map(str::to_owned),
        kind: new.kind.as_str().to_owned(),
        channel: new.channel.as_str().to_owned(),
        recipient: Some(new.recipient.to_owned()),
        invitation_id: new.invitation_id.map(str::to_owned),
        token_id: new.token_id.map(str::to_owned),
        status: "pending".to_owned(),
        attempts: 0,
        next_attempt_at: to_millis(now),
        lease_until: leased_to.map(|_| to_millis(now + LEASE)),
        lease_owner: leased_to.map(str::to_owned),
        last_error: None,
        created_at: to_millis(now),
        sent_at: None,
    };
    outbox_message::Entity::insert(outbox_message::ActiveModel::from(row.clone()))
        .exec_without_returning(conn)
        .await?;
    Ok(row)
}

fn due(now: DateTime<Utc>) -> Condition {
    let now = to_millis(now);
    Condition::all()
        .add(outbox_message::Column::Status.eq("pending"))
        .add(outbox_message::Column::NextAttemptAt.lte(now))
        .add(
            Condition::any()
                .add(outbox_message::Column::LeaseUntil.is_null())
                .add(outbox_message::Column::LeaseUntil.lt(now)),
        )
}

/// Whether any message is due (a cheap read, so an idle worker does not take the write lock).
pub async fn any_due(db: &Database, now: DateTime<Utc>) -> Result<bool, DbErr> {
    Ok(outbox_message::Entity::find().filter(due(now)).one(db.conn()).await?.is_some())
}

/// Claims up to `limit` due messages for `owner`.
pub async fn claim_due(
    db: &Database,
    owner: &str,
    limit: u64,
    now: DateTime<Utc>,
) -> Result<Vec<outbox_message::Model>, DbErr> {
    let owner = owner.to_owned();
    db.write(move |txn| {
        Box::pin(async move {
            let mut select = outbox_message::Entity::find()
                .filter(due(now))
                .order_by_asc(outbox_message::Column::NextAttemptAt)
                .limit(limit);
            if txn.get_database_backend() == DbBackend::Postgres {
                select = select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
            }
            let mut rows = select.all(txn).await?;
            if rows.is_empty() {
                return Ok(rows);
            }
            let lease_until = to_millis(now + LEASE);
            outbox_message::Entity::update_many()
                .col_expr(outbox_message::Column::LeaseUntil, Expr::value(lease_until))
                .col_expr(outbox_message::Column::LeaseOwner, Expr::value(owner.clone()))
                .filter(outbox_message::Column::Id.is_in(rows.iter().map(|r| r.id.clone())))
                .exec(txn)
                .await?;
            for row in &mut rows {
                row.lease_until = Some(lease_until);
                row.lease_owner = Some(owner.clone());
            }
            Ok(rows)
        })
    })
    .await
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The mail server or gateway accepted it.
    Sent,
    /// Worth trying again (timeout, 4xx from SMTP, 429/5xx from the gateway).
    Transient {
        /// Why, for the log and operators.
        reason: String,
        /// What the gateway asked for (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Rejected for good (5xx from SMTP, 4xx from the gateway).
    Permanent {
        /// Why.
        reason: String,
    },
    /// Nothing to send any more (the token was used or revoked, the invitation abandoned).
    Cancelled {
        /// Why.
        reason: String,
    },
}

/// What became of the message after an attempt was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Delivered.
    Sent,
    /// Will be retried at this time.
    Retrying(DateTime<Utc>),
    /// Given up (rejected, or retries ran out).
    Failed(String),
    /// Not sent, and not to be.
    Cancelled,
    /// The lease was lost to another sender; nothing recorded.
    LeaseLost,
}

/// The wait before attempt `attempts + 1`: exponential backoff with full jitter, and never less than
/// what the gateway asked for.
pub fn backoff(attempts: i32, retry_after: Option<Duration>) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let ceiling = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(exponent)).min(BACKOFF_CAP);
    let random = u64::from_le_bytes(crate::random::bytes::<8>());
    let jittered = Duration::from_millis(random % (ceiling.as_millis() as u64 + 1));
    jittered.max(retry_after.unwrap_or_default())
}

/// Records an attempt on a message leased by `owner`, and what it means for its invitation.
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    message: &outbox_message::Model,
    owner: &str,
    attempt: &Attempt,
    now: DateTime<Utc>,
) -> Result<Recorded, DbErr> {
    let attempts = message.attempts + 1;
    let (status, recorded, error) = match attempt {
        Attempt::Sent => ("sent", Recorded::Sent, None),
        Attempt::Cancelled { reason } => ("cancelled", Recorded::Cancelled, Some(reason.clone())),
        Attempt::Permanent { reason } => ("failed", Recorded::Failed(reason.clone()), Some(reason.clone())),
        Attempt::Transient { reason, .. } if attempts >= MAX_ATTEMPTS => {
            let why = format!("gave up after {attempts} attempts: {reason}");
            ("failed", Recorded::Failed(why.clone()), Some(why))
        }
        Attempt::Transient { reason, retry_after } => {
            let wait = TimeDelta::from_std(backoff(attempts, *retry_after)).unwrap_or(TimeDelta::minutes(30));
            ("pending", Recorded::Retrying(now + wait), Some(reason.clone()))
        }
    };
    let finished = status != "pending";
    let mut update = outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::Status, Expr::value(status))
        .col_expr(outbox_message::Column::Attempts, Expr::value(attempts))
        .col_expr(outbox_message::Column::LastError, Expr::value(error))
        .col_expr(outbox_message::Column::LeaseUntil, Expr::value(Option::<i64>::None))
        .col_expr(outbox_message::Column::LeaseOwner, Expr::value(Option::<String>::None));
    if let Recorded::Retrying(at) = &recorded {
        update = update.col_expr(outbox_message::Column::NextAttemptAt, Expr::value(to_millis(*at)));
    }
    if finished {
        // A finished message keeps no address: only that it happened.
        update = update.col_expr(outbox_message::Column::Recipient, Expr::value(Option::<String>::None));
    }
    if recorded == Recorded::Sent {
        update = update.col_expr(outbox_message::Column::SentAt, Expr::value(to_millis(now)));
    }
    let result = update
        .filter(outbox_message::Column::Id.eq(message.id.as_str()))
        .filter(outbox_message::Column::Status.eq("pending"))
        .filter(outbox_message::Column::LeaseOwner.eq(owner))
        .exec(conn)
        .await?;
    if result.rows_affected == 0 {
        return Ok(Recorded::LeaseLost);
    }
    if let Some(invitation_id) = &message.invitation_id {
        follow_invitation(conn, invitation_id, message.token_id.as_deref(), &recorded, now).await?;
    }
    Ok(recorded)
}

/// An invitation is sent once its message is, and failed (its token dead) once its message failed.
async fn follow_invitation<C: ConnectionTrait>(
    conn: &C,
    invitation_id: &str,
    token_id: Option<&str>,
    recorded: &Recorded,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let update = invitation::Entity::update_many()
        .filter(invitation::Column::Id.eq(invitation_id))
        .filter(invitation::Column::Status.eq(InvitationStatus::Pending.as_str()));
    match recorded {
        Recorded::Sent => {
            update
                .col_expr(invitation::Column::Status, Expr::value(InvitationStatus::Sent.as_str()))
                .col_expr(invitation::Column::SentAt, Expr::value(to_millis(now)))
                .exec(conn)
                .await?;
        }
        Recorded::Failed(_) | Recorded::Cancelled => {
            let reason = match recorded {
                Recorded::Failed(reason) => reason.clone(),
                _ => "cancelled before delivery".to_owned(),
            };
            update
                .col_expr(invitation::Column::Status, Expr::value(InvitationStatus::Failed.as_str()))
                .col_expr(invitation::Column::Failure, Expr::value(reason))
                .col_expr(invitation::Column::FailedAt, Expr::value(to_millis(now)))
                .exec(conn)
                .await?;
            if let Some(token_id) = token_id {
                tokens::revoke_where(
                    conn,
                    Condition::all().add(crate::entities::token::Column::Id.eq(token_id)),
                    now,
                )
                .await?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_full_jitter_up_to_the_cap_and_honours_retry_after() {
        for attempts in 1..=12 {
            let exponent = u32::try_from(attempts - 1).unwrap();
            let ceiling = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(exponent)).min(BACKOFF_CAP);
            for _ in 0..50 {
                assert!(backoff(attempts, None) <= ceiling);
            }
        }
        // Full jitter spreads retries: 50 draws are not all equal.
        let draws: std::collections::HashSet<_> = (0..50).map(|_| backoff(5, None)).collect();
        assert!(draws.len() > 1);
        assert!(backoff(1, Some(Duration::from_secs(120))) >= Duration::from_secs(120));
    }
}
