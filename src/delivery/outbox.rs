//! The outbox: messages queued in the same transaction as the change that causes them, claimed by a
//! sender with a lease, and marked sent, retried with backoff, or given up.
//!
//! Claiming takes a lease (`lease_until`) in a short transaction and names the claim with a random
//! `claim_token`: only that claim may record the attempt's result, so a sender whose lease ran out (and
//! whose row was claimed again, by another instance or by itself) records nothing over the new claim.
//! On PostgreSQL the rows are selected `FOR UPDATE SKIP LOCKED`, so instances sharing the database
//! never claim the same row, and leases are measured on the database's clock, so instances whose
//! clocks disagree still agree on whose lease ran out; on SQLite there is only one writer (and one
//! machine). A sender that dies loses its lease when it expires, and the row is claimed again: after a
//! crash, every pending message is still sent, with the same link (see [`crate::sealing`]).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType},
};

use crate::{
    clock::to_millis,
    db::Database,
    entities::{invitation, outbox_message},
    invitations::{Channel, InvitationStatus},
    sealing::Sealer,
    tokens::{self, RawToken},
};

/// Attempts before a message is given up.
pub const MAX_ATTEMPTS: i32 = 10;
/// The first retry waits up to this long; each further retry doubles it, up to [`BACKOFF_CAP`].
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest wait between two attempts; also the most a gateway's `Retry-After` is honoured.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30 * 60);

/// How long a claimed message belongs to its sender, for attempts bounded by `send_timeout`: twice
/// the deadline and half a minute more for reading and recording, so a lease runs out only when its
/// sender died, never while it is still sending.
pub fn lease_for(send_timeout: Duration) -> TimeDelta {
    TimeDelta::from_std(send_timeout.saturating_mul(2)).unwrap_or(TimeDelta::minutes(10))
        + TimeDelta::seconds(30)
}

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// The invitation (email with two links, or SMS with the set-up link).
    Invitation,
    /// A password-reset link: queued for whatever address was typed; the sender finds the account
    /// (if any), mints the link and sends it, or cancels the row.
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

/// The link a message carries: its token's row and its value, to be sealed into the message.
#[derive(Clone, Copy)]
pub struct Link<'a> {
    /// The token's row.
    pub token_id: &'a str,
    /// Its value in clear (kept only sealed).
    pub token: &'a RawToken,
    /// The outbox key.
    pub sealer: &'a Sealer,
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
    /// The link it carries.
    pub link: Option<Link<'a>>,
}

/// Who makes a message's first attempt right away, and for how long it holds the lease.
#[derive(Debug, Clone)]
pub struct FirstAttempt {
    /// The instance.
    pub owner: String,
    /// The lease (see [`lease_for`]).
    pub lease: TimeDelta,
}

/// Queues a message. With `first_attempt`, the row starts claimed by that sender (the request that
/// will make the first attempt itself); otherwise any worker may take it at once.
pub async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    new: NewMessage<'_>,
    first_attempt: Option<&FirstAttempt>,
    now: DateTime<Utc>,
) -> Result<outbox_message::Model, DbErr> {
    let id = crate::random::id("msg");
    let sealed_token = new.link.map(|link| link.sealer.seal(&id, link.token));
    let row = outbox_message::Model {
        id,
        shop_id: new.shop_id.to_owned(),
        customer_id: new.customer_id.map(str::to_owned),
        kind: new.kind.as_str().to_owned(),
        channel: new.channel.as_str().to_owned(),
        recipient: Some(new.recipient.to_owned()),
        invitation_id: new.invitation_id.map(str::to_owned),
        token_id: new.link.map(|link| link.token_id.to_owned()),
        status: "pending".to_owned(),
        attempts: 0,
        next_attempt_at: to_millis(now),
        lease_until: None,
        lease_owner: first_attempt.map(|f| f.owner.clone()),
        claim_token: first_attempt.map(|_| crate::random::id("clm")),
        sealed_token,
        last_error: None,
        created_at: to_millis(now),
        sent_at: None,
    };
    let backend = conn.get_database_backend();
    let mut insert = outbox_message::ActiveModel::from(row.clone());
    match first_attempt {
        Some(first) if backend == DbBackend::Postgres => {
            // The lease is set on the database's clock, which the insert cannot name.
            insert.lease_until = sea_orm::ActiveValue::NotSet;
            outbox_message::Entity::insert(insert).exec_without_returning(conn).await?;
            outbox_message::Entity::update_many()
                .col_expr(outbox_message::Column::LeaseUntil, lease_until(backend, first.lease, now))
                .filter(outbox_message::Column::Id.eq(row.id.as_str()))
                .exec(conn)
                .await?;
        }
        Some(first) => {
            insert.lease_until =
                sea_orm::ActiveValue::Set(Some(to_millis(now) + first.lease.num_milliseconds()));
            outbox_message::Entity::insert(insert).exec_without_returning(conn).await?;
        }
        None => {
            outbox_message::Entity::insert(insert).exec_without_returning(conn).await?;
        }
    }
    Ok(row)
}

/// "Now" in milliseconds on the clock that judges leases: the database's on PostgreSQL, the
/// service's on SQLite.
fn lease_clock(backend: DbBackend, now: DateTime<Utc>) -> Expr {
    match backend {
        DbBackend::Postgres => Expr::cust("(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint"),
        _ => Expr::value(to_millis(now)),
    }
}

fn lease_until(backend: DbBackend, lease: TimeDelta, now: DateTime<Utc>) -> Expr {
    lease_clock(backend, now).add(lease.num_milliseconds())
}

fn due(backend: DbBackend, now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(outbox_message::Column::Status.eq("pending"))
        .add(outbox_message::Column::NextAttemptAt.lte(to_millis(now)))
        .add(
            Condition::any()
                .add(outbox_message::Column::LeaseUntil.is_null())
                .add(Expr::col(outbox_message::Column::LeaseUntil).lt(lease_clock(backend, now))),
        )
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
        .filter(outbox_message::Column::Status.eq("pending"))
        .filter(outbox_message::Column::ClaimToken.is_not_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
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
    let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX - 1);
    let jittered = Duration::from_millis(random % (ceiling_ms + 1));
    // A gateway's wish is honoured up to the cap: whatever it says, the message is tried again.
    jittered.max(retry_after.unwrap_or_default().min(BACKOFF_CAP))
}

/// Records an attempt on a message under the claim it was made with (`message.claim_token`), and
/// what it means for its invitation.
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    message: &outbox_message::Model,
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
            let at = now.checked_add_signed(wait).unwrap_or(now);
            ("pending", Recorded::Retrying(at), Some(reason.clone()))
        }
    };
    let finished = status != "pending";
    let mut update = outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::Status, Expr::value(status))
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
    let Some(claim) = message.claim_token.as_deref() else {
        return Ok(Recorded::LeaseLost);
    };
    let result = update
        .filter(outbox_message::Column::Id.eq(message.id.as_str()))
        .filter(outbox_message::Column::Status.eq("pending"))
        .filter(outbox_message::Column::ClaimToken.eq(claim))
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

/// Records that a pending message arrived although its sender did not learn it (its link was just
/// used): sent, with no address and no link kept, and its invitation sent.
pub async fn settle_as_delivered<C: ConnectionTrait>(
    conn: &C,
    message: &outbox_message::Model,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let settled = outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::Status, Expr::value("sent"))
        .col_expr(outbox_message::Column::SentAt, Expr::value(to_millis(now)))
        .col_expr(outbox_message::Column::Recipient, Expr::value(Option::<String>::None))
        .col_expr(outbox_message::Column::SealedToken, Expr::value(Option::<String>::None))
        .col_expr(outbox_message::Column::LeaseUntil, Expr::value(Option::<i64>::None))
        .col_expr(outbox_message::Column::ClaimToken, Expr::value(Option::<String>::None))
        .filter(outbox_message::Column::Id.eq(message.id.as_str()))
        .filter(outbox_message::Column::Status.eq("pending"))
        .exec(conn)
        .await?;
    if let (1, Some(invitation_id)) = (settled.rows_affected, &message.invitation_id) {
        follow_invitation(conn, invitation_id, message.token_id.as_deref(), &Recorded::Sent, now).await?;
    }
    Ok(())
}

/// An invitation is sent once its message is, and failed (its token dead) once its message failed.
/// One whose link was used meanwhile was delivered, whatever its message says: it is not failed.
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
        Recorded::Failed(_) | Recorded::Cancelled if link_used(conn, token_id).await? => {
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

/// Whether the token was used (its link reached the customer).
async fn link_used<C: ConnectionTrait>(conn: &C, token_id: Option<&str>) -> Result<bool, DbErr> {
    let Some(token_id) = token_id else { return Ok(false) };
    Ok(crate::entities::token::Entity::find_by_id(token_id)
        .one(conn)
        .await?
        .is_some_and(|token| token.used_at.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_full_jitter_up_to_the_cap_and_honours_retry_after() {
        // The largest wait before each attempt: 10 s, doubling, never over half an hour.
        let ceilings = [10, 20, 40, 80, 160, 320, 640, 1280, 1800, 1800, 1800, 1800];
        for (attempts, ceiling) in (1..).zip(ceilings) {
            for _ in 0..50 {
                assert!(backoff(attempts, None) <= Duration::from_secs(ceiling), "attempt {attempts}");
            }
        }
        // Full jitter spreads retries: 50 draws are not all equal.
        let draws: std::collections::HashSet<_> = (0..50).map(|_| backoff(5, None)).collect();
        assert!(draws.len() > 1);
        assert!(backoff(1, Some(Duration::from_secs(120))) >= Duration::from_secs(120));
    }

    #[test]
    fn an_absurd_retry_after_is_held_to_the_cap() {
        for absurd in [Duration::from_secs(10_000_000_000_000), Duration::MAX] {
            assert_eq!(backoff(1, Some(absurd)), BACKOFF_CAP);
        }
        for attempts in [i32::MIN, -1, 0, i32::MAX] {
            assert!(backoff(attempts, None) <= BACKOFF_CAP);
        }
    }

    #[test]
    fn a_lease_outlasts_the_send_deadline() {
        for secs in [1, 30, 120] {
            let deadline = Duration::from_secs(secs);
            assert!(lease_for(deadline) > TimeDelta::from_std(deadline).unwrap() * 2);
        }
        assert!(lease_for(Duration::MAX) > TimeDelta::zero());
    }
}
