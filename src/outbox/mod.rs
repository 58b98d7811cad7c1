//! The outbox: messages queued in the same transaction as the change that causes them, claimed by a
//! sender with a lease, and marked sent, retried with backoff, or given up. A generic queue: it
//! knows a row's status, lease and link, never what the message means to an invitation or an account
//! (the callers of [`record`] and [`mark_delivered`] decide that, in the same transaction).
//!
//! Claiming takes a lease (`lease_until`) in a short transaction and names the claim with a random
//! `claim_token`: only that claim may record the attempt's result, so a sender whose lease ran out (and
//! whose row was claimed again, by another instance or by itself) records nothing over the new claim.
//! On PostgreSQL the rows are selected `FOR UPDATE SKIP LOCKED`, so instances sharing the database
//! never claim the same row, and leases are measured on the database's clock, so instances whose
//! clocks disagree still agree on whose lease ran out; on SQLite there is only one writer (and one
//! machine). A sender that dies loses its lease when it expires, and the row is claimed again: after a
//! crash, every pending message is still sent, with the same link (see [`crate::sealing`]).

mod claims;
mod links;
mod reports;
mod rows;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter};

pub use claims::{Backlog, any_due, backlog, claim_due, record, release_leases};
pub use links::attach_link;
pub use reports::{Advanced, claim_look_up, look_up_due, message_reported, record_report, release_look_up};
pub use rows::{
    cancel, erase_customer, erase_shop, mark_delivered, pending_for_customer, pending_requests_to,
};

use crate::{
    clock::to_millis,
    domain::{Channel, CustomerId, RawToken, ShopId},
    entities::outbox_message,
    sealing::Sealer,
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

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// Accepted by the mail server or gateway.
    Sent,
    /// Rejected for good, or retries ran out.
    Failed,
    /// Not to be sent any more.
    Cancelled,
}

impl OutboxStatus {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Failed, Self::Cancelled].into_iter().find(|s| s.as_str() == value)
    }

    /// The status of a stored row (`None` for a value this version does not know).
    pub fn of(message: &outbox_message::Model) -> Option<Self> {
        Self::parse(&message.status)
    }
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
    pub token_id: &'a str,
    /// Its value in clear (kept only sealed).
    pub token: &'a RawToken,
    pub sealer: &'a Sealer,
}

/// A message to queue.
pub struct NewMessage<'a> {
    pub shop_id: &'a ShopId,
    pub customer_id: Option<&'a CustomerId>,
    pub kind: MessageKind,
    pub channel: Channel,
    pub recipient: &'a str,
    pub invitation_id: Option<&'a str>,
    pub link: Option<Link<'a>>,
}

/// Who makes a message's first attempt right away, and for how long it holds the lease.
#[derive(Debug, Clone)]
pub struct FirstAttempt {
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
        shop_id: new.shop_id.as_str().to_owned(),
        customer_id: new.customer_id.map(|id| id.as_str().to_owned()),
        kind: new.kind.as_str().to_owned(),
        channel: new.channel.as_str().to_owned(),
        recipient: Some(new.recipient.to_owned()),
        invitation_id: new.invitation_id.map(str::to_owned),
        token_id: new.link.map(|link| link.token_id.to_owned()),
        status: OutboxStatus::Pending.as_str().to_owned(),
        attempts: 0,
        next_attempt_at: to_millis(now),
        lease_until: None,
        lease_owner: first_attempt.map(|f| f.owner.clone()),
        claim_token: first_attempt.map(|_| crate::random::id("clm")),
        sealed_token,
        last_error: None,
        created_at: to_millis(now),
        sent_at: None,
        provider_ref: None,
        report_status: None,
        report_error: None,
        reported_at: None,
        looked_up_at: None,
    };
    let backend = conn.get_database_backend();
    let mut insert = outbox_message::ActiveModel::from(row.clone());
    match first_attempt {
        Some(first) if backend == DbBackend::Postgres => {
            // The lease is set on the database's clock, which the insert cannot name.
            insert.lease_until = sea_orm::ActiveValue::NotSet;
            outbox_message::Entity::insert(insert).exec_without_returning(conn).await?;
            outbox_message::Entity::update_many()
                .col_expr(outbox_message::Column::LeaseUntil, claims::lease_until(backend, first.lease, now))
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

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The mail server or gateway accepted it.
    Sent {
        /// The gateway's id for the message (an SMS's `sid`), checked, for its status reports.
        provider_ref: Option<String>,
    },
    /// Worth trying again (timeout, 4xx from SMTP, 429/5xx from the gateway).
    Transient {
        /// Why, for the log and operators.
        reason: String,
        /// What the gateway asked for (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Rejected for good (5xx from SMTP, 4xx from the gateway).
    Permanent { reason: String },
    /// Nothing to send any more (the token was used or revoked, the invitation abandoned).
    Cancelled { reason: String },
}

/// What became of the message after an attempt was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
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

/// One log line for a recorded attempt, and its count (called once per attempt, after its commit).
pub fn log(message: &outbox_message::Model, attempt: &Attempt, recorded: &Result<Recorded, DbErr>) {
    count(message, recorded);
    match recorded {
        Ok(Recorded::Sent) => {
            tracing::info!(message_id = %message.id, kind = %message.kind, channel = %message.channel, "message delivered")
        }
        Ok(Recorded::Retrying(at)) => {
            tracing::warn!(message_id = %message.id, kind = %message.kind, next_attempt_at = %at, outcome = ?attempt, "delivery failed; will retry")
        }
        Ok(Recorded::Failed(reason)) => {
            tracing::warn!(message_id = %message.id, kind = %message.kind, %reason, "delivery failed for good")
        }
        Ok(Recorded::Cancelled) => {
            tracing::info!(message_id = %message.id, outcome = ?attempt, "message cancelled")
        }
        Ok(Recorded::LeaseLost) => {
            tracing::warn!(message_id = %message.id, "lease lost to another sender; result not recorded")
        }
        Err(e) => {
            tracing::error!(message_id = %message.id, error = %e, "could not record a delivery attempt; the lease will expire and it will be retried")
        }
    }
}

/// Sends by channel, kind and outcome, and the invitation funnel's delivered and failed steps. The
/// labels come from fixed sets (a stored value outside them is `other`), never from the message.
fn count(message: &outbox_message::Model, recorded: &Result<Recorded, DbErr>) {
    let outcome = match recorded {
        Ok(Recorded::Sent) => "sent",
        Ok(Recorded::Retrying(_)) => "retrying",
        Ok(Recorded::Failed(_)) => "failed",
        Ok(Recorded::Cancelled) => "cancelled",
        Ok(Recorded::LeaseLost) => "lease_lost",
        Err(_) => "not_recorded",
    };
    let channel = Channel::parse(&message.channel).map_or("other", Channel::as_str);
    let kind = MessageKind::parse(&message.kind);
    let kind_label = kind.map_or("other", MessageKind::as_str);
    metrics::counter!("portal_sends_total", "channel" => channel, "kind" => kind_label, "outcome" => outcome)
        .increment(1);
    if kind == Some(MessageKind::Invitation) {
        let step = match recorded {
            Ok(Recorded::Sent) => "delivered",
            Ok(Recorded::Failed(_)) => "failed",
            _ => return,
        };
        metrics::counter!("portal_invitation_funnel_total", "step" => step).increment(1);
    }
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
