//! An invitation as staff need to know it: who sent it, how and when, what became of its message
//! (accepted, delivered, still being retried, not delivered and why, cancelled) and of its set-up
//! link (unused, used, expired, dead). Read from the invitation, its outbox row and its token; the
//! staff's status line (`host::staff_text`) is worded from it.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use super::state::{CANCELLED_BY_STAFF, InvitationStatus};
use crate::{
    clock::{from_millis, to_millis},
    domain::{Channel, DeliveryFailure},
    entities::{invitation, outbox_message, token},
    outbox::{MAX_ATTEMPTS, OutboxStatus},
};

/// An invitation, as staff need to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationStanding {
    pub id: String,
    /// The star-menu interaction that sent it.
    pub interaction_id: Option<String>,
    /// Whether that interaction has its answer: until then its first attempt is still under way.
    pub answered: bool,
    pub status: InvitationStatus,
    pub channel: Channel,
    pub invited_at: DateTime<Utc>,
    /// The staff member's name, when the host gave one.
    pub invited_by: Option<String>,
    pub delivery: Delivery,
    pub link: LinkState,
}

/// What became of an invitation's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Not handed over yet; `attempts` failed so far.
    Sending { attempts: i32 },
    /// Accepted by the customer's mail server (for email: delivered, as far as anyone can know).
    EmailAccepted { at: DateTime<Utc> },
    /// Accepted by the SMS service, with no final report yet.
    SmsAccepted { at: DateTime<Utc> },
    /// The SMS service reported it delivered to the phone.
    SmsDelivered { at: DateTime<Utc> },
    /// It did not reach the customer.
    NotDelivered { at: DateTime<Utc>, reason: DeliveryFailure },
    /// It was withdrawn before it went (by staff, or because the profile changed).
    Cancelled { at: DateTime<Utc>, by_staff: bool },
    /// Its record is gone (erased, or an old one).
    Unknown,
}

/// What became of an invitation's set-up link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// It works until then.
    Unused { expires_at: DateTime<Utc> },
    /// The customer used it.
    Used { at: DateTime<Utc> },
    /// It ran out unused.
    Expired { at: DateTime<Utc> },
    /// It was killed before use (cancelled, failed, superseded).
    Dead,
}

/// Reads what became of `row`.
pub async fn load<C: ConnectionTrait>(
    conn: &C,
    row: invitation::Model,
    now: DateTime<Utc>,
) -> Result<InvitationStanding, DbErr> {
    let channel = Channel::parse(&row.channel).unwrap_or(Channel::Email);
    let status = InvitationStatus::of(&row).unwrap_or(InvitationStatus::Failed);
    let message = outbox_message::Entity::find()
        .filter(outbox_message::Column::InvitationId.eq(row.id.as_str()))
        .one(conn)
        .await?;
    let link =
        token::Entity::find().filter(token::Column::InvitationId.eq(row.id.as_str())).one(conn).await?;
    let link = match link {
        Some(token) => link_state(&token, now),
        None => LinkState::Dead,
    };
    Ok(InvitationStanding {
        delivery: delivery(&row, message.as_ref(), channel, link),
        answered: row.answer.is_some() || row.interaction_id.is_none(),
        interaction_id: row.interaction_id,
        id: row.id,
        status,
        channel,
        invited_at: from_millis(row.created_at),
        invited_by: row.requested_by_name.filter(|n| !n.trim().is_empty()),
        link,
    })
}

fn delivery(
    row: &invitation::Model,
    message: Option<&outbox_message::Model>,
    channel: Channel,
    link: LinkState,
) -> Delivery {
    let Some(message) = message else {
        return match (row.sent_at, row.failed_at) {
            (_, Some(at)) => failed_delivery(row, None, from_millis(at)),
            (Some(at), None) => accepted(channel, from_millis(at)),
            (None, None) => Delivery::Unknown,
        };
    };
    if row.failure.as_deref() == Some(CANCELLED_BY_STAFF) {
        let at = from_millis(row.failed_at.unwrap_or(message.created_at));
        return Delivery::Cancelled { at, by_staff: true };
    }
    let reported = message.reported_at.map(from_millis);
    match (OutboxStatus::of(message), message.report_status.as_deref()) {
        (_, Some("undelivered" | "failed")) => match link {
            // The gateway said it failed, but the customer used its link: it arrived, by then at least.
            LinkState::Used { at } => Delivery::SmsDelivered { at },
            _ => failed_delivery(
                row,
                Some(message),
                reported.unwrap_or_else(|| from_millis(message.created_at)),
            ),
        },
        (_, Some("delivered")) => {
            Delivery::SmsDelivered { at: reported.unwrap_or_else(|| from_millis(message.created_at)) }
        }
        (Some(OutboxStatus::Sent), _) => {
            accepted(channel, from_millis(message.sent_at.or(row.sent_at).unwrap_or(message.created_at)))
        }
        (Some(OutboxStatus::Pending), _) => Delivery::Sending { attempts: message.attempts },
        (Some(OutboxStatus::Cancelled), _) => Delivery::Cancelled {
            at: from_millis(row.failed_at.unwrap_or(message.created_at)),
            by_staff: row.failure.as_deref() == Some(CANCELLED_BY_STAFF),
        },
        (Some(OutboxStatus::Failed), _) => {
            failed_delivery(row, Some(message), from_millis(row.failed_at.unwrap_or(message.created_at)))
        }
        (None, _) => Delivery::Unknown,
    }
}

fn accepted(channel: Channel, at: DateTime<Utc>) -> Delivery {
    match channel {
        Channel::Email => Delivery::EmailAccepted { at },
        Channel::Sms => Delivery::SmsAccepted { at },
    }
}

fn failed_delivery(
    row: &invitation::Model,
    message: Option<&outbox_message::Model>,
    at: DateTime<Utc>,
) -> Delivery {
    if row.failure.as_deref() == Some(CANCELLED_BY_STAFF) {
        return Delivery::Cancelled { at, by_staff: true };
    }
    let reason = match message {
        Some(m) if matches!(m.report_status.as_deref(), Some("undelivered" | "failed")) => {
            DeliveryFailure::from_sms_error(m.report_error.as_deref())
        }
        // A refusal is recorded at the first attempt that got one; running out of retries takes many.
        Some(m) if m.attempts >= MAX_ATTEMPTS => DeliveryFailure::GaveUp,
        Some(m) if OutboxStatus::of(m) == Some(OutboxStatus::Cancelled) => {
            return Delivery::Cancelled { at, by_staff: false };
        }
        _ => DeliveryFailure::Refused,
    };
    Delivery::NotDelivered { at, reason }
}

fn link_state(token: &token::Model, now: DateTime<Utc>) -> LinkState {
    match (token.used_at, token.revoked_at) {
        (Some(at), _) => LinkState::Used { at: from_millis(at) },
        (None, Some(_)) => LinkState::Dead,
        (None, None) if token.expires_at <= to_millis(now) => {
            LinkState::Expired { at: from_millis(token.expires_at) }
        }
        (None, None) => LinkState::Unused { expires_at: from_millis(token.expires_at) },
    }
}
