//! Every change of an invitation's state, in one place: issued (pending, its message queued), sent
//! (its message accepted for delivery, or its link used although its sender never learned of the
//! delivery), failed (its message rejected, given up or cancelled: its link dies and a new invitation
//! may be sent), and the answer its star-menu interaction got. Each runs in the caller's transaction,
//! beside the outbox change that causes it, except [`record_attempt_alone`], which takes one of its
//! own for a sender that holds none (the worker, or a first attempt that outlasted its submission).

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, sea_query::Expr,
};

use crate::{
    clock::to_millis,
    db::Database,
    domain::{CustomerId, InteractionId, ShopId},
    entities::{invitation, outbox_message, token},
    outbox::{self, Attempt, Recorded},
    tokens,
};

mod receipts;
use receipts::audit_delivery;
pub use receipts::{Reported, apply_sms_report, record_sms_report};

/// Where an invitation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationStatus {
    /// Issued; not yet accepted by the mail server or SMS gateway.
    Pending,
    /// Accepted for delivery: it cannot be sent again.
    Sent,
    /// Rejected for good or retries ran out: its token is dead and a new invitation may be sent.
    Failed,
}

impl InvitationStatus {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Failed].into_iter().find(|s| s.as_str() == value)
    }

    /// The status of a stored invitation (`None` for a value this version does not know).
    pub fn of(invitation: &invitation::Model) -> Option<Self> {
        Self::parse(&invitation.status)
    }
}

/// Stores a newly issued invitation (pending).
pub(super) async fn issued<C: ConnectionTrait>(
    conn: &C,
    invitation: &invitation::Model,
) -> Result<(), DbErr> {
    debug_assert_eq!(InvitationStatus::of(invitation), Some(InvitationStatus::Pending));
    invitation::Entity::insert(invitation::ActiveModel::from(invitation.clone()))
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Records an attempt on `message` (under its claim) and what it means for its invitation.
pub async fn record_attempt<C: ConnectionTrait>(
    conn: &C,
    message: &outbox_message::Model,
    attempt: &Attempt,
    now: DateTime<Utc>,
) -> Result<Recorded, DbErr> {
    let recorded = outbox::record(conn, message, attempt, now).await?;
    after_attempt(conn, message, attempt, &recorded, now).await?;
    Ok(recorded)
}

/// [`record_attempt`] in a transaction of its own, logged. A failure to record is logged too, and
/// counts as a lost lease: the lease runs out and the message is tried again.
pub async fn record_attempt_alone(
    db: &Database,
    message: &outbox_message::Model,
    attempt: Attempt,
    now: DateTime<Utc>,
) -> Recorded {
    let row = message.clone();
    let logged = attempt.clone();
    let recorded =
        db.write(move |txn| Box::pin(async move { record_attempt(txn, &row, &attempt, now).await })).await;
    outbox::log(message, &logged, &recorded);
    recorded.unwrap_or(Recorded::LeaseLost)
}

/// What a recorded attempt on `message` means for its invitation, if it delivers one: sent once its
/// message is, failed (its token dead) once its message failed or was cancelled. One whose link was
/// used meanwhile was delivered, whatever its message says: it is not failed. The audit trail gets
/// `delivered` for an email the customer's mail server accepted (all we can know of email, §9; an SMS
/// the gateway accepted waits for its receipt) and `delivery_failed` for a message refused or given
/// up; a message cancelled before it went was not a delivery, and gets nothing.
async fn after_attempt<C: ConnectionTrait>(
    conn: &C,
    message: &outbox_message::Model,
    attempt: &Attempt,
    recorded: &Recorded,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use crate::{
        audit::Event,
        domain::{Channel, DeliveryFailure},
    };
    let Some(invitation_id) = message.invitation_id.as_deref() else { return Ok(()) };
    let token_id = message.token_id.as_deref();
    let channel = Channel::parse(&message.channel);
    match recorded {
        Recorded::Sent => {
            mark_sent(conn, invitation_id, now).await?;
            if channel == Some(Channel::Email) {
                audit_delivery(conn, message, Event::Delivered { channel: Channel::Email }, now).await?;
            }
            Ok(())
        }
        Recorded::Failed(_) | Recorded::Cancelled if link_used(conn, token_id).await? => {
            mark_sent(conn, invitation_id, now).await
        }
        Recorded::Failed(_) | Recorded::Cancelled => {
            let reason = match recorded {
                Recorded::Failed(reason) => reason.as_str(),
                _ => "cancelled before delivery",
            };
            mark_failed(conn, &[invitation_id.to_owned()], reason, now).await?;
            if let Some(token_id) = token_id {
                tokens::revoke_where(conn, Condition::all().add(token::Column::Id.eq(token_id)), now).await?;
            }
            if let (Recorded::Failed(_), Some(channel)) = (recorded, channel) {
                let reason = match attempt {
                    Attempt::Permanent { .. } => DeliveryFailure::Refused,
                    _ => DeliveryFailure::GaveUp,
                };
                audit_delivery(conn, message, Event::DeliveryFailed { channel, reason }, now).await?;
            }
            Ok(())
        }
        Recorded::Retrying(_) | Recorded::LeaseLost => Ok(()),
    }
}

/// The link `message` carried was just used: the message evidently arrived, whatever its sender
/// recorded (a timeout after the data, say), so it and its invitation count as sent, and the
/// invitation cannot be sent again.
pub async fn link_arrived<C: ConnectionTrait>(
    conn: &C,
    message: &outbox_message::Model,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if outbox::mark_delivered(conn, message, now).await? {
        after_attempt(conn, message, &Attempt::Sent { provider_ref: None }, &Recorded::Sent, now).await?;
    }
    Ok(())
}

/// Cancels messages not yet delivered. An invitation among them is abandoned (failed), its link
/// dead, so a new one may be sent. Returns how many messages were cancelled.
pub async fn cancel_undelivered<C: ConnectionTrait>(
    conn: &C,
    messages: &[outbox_message::Model],
    reason: &str,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let cancelled = outbox::cancel(conn, messages, reason).await?;
    let invitations: Vec<String> = messages.iter().filter_map(|m| m.invitation_id.clone()).collect();
    if !invitations.is_empty() {
        mark_failed(conn, &invitations, reason, now).await?;
        tokens::revoke_where(conn, Condition::all().add(token::Column::InvitationId.is_in(invitations)), now)
            .await?;
    }
    Ok(cancelled)
}

/// Keeps the answer the invitation's star-menu interaction got, for a resubmission to get again.
pub async fn remember_answer<C: ConnectionTrait>(
    conn: &C,
    invitation_id: &str,
    body: &str,
) -> Result<(), DbErr> {
    invitation::Entity::update_many()
        .col_expr(invitation::Column::Answer, Expr::value(body))
        .filter(invitation::Column::Id.eq(invitation_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// The customer's invitation that did not fail, if any (at most one: the database enforces it).
pub async fn current_invitation<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
    customer_id: &CustomerId,
) -> Result<Option<invitation::Model>, DbErr> {
    invitation::Entity::find()
        .filter(invitation::Column::ShopId.eq(shop_id.as_str()))
        .filter(invitation::Column::CustomerId.eq(customer_id.as_str()))
        .filter(invitation::Column::Status.ne(InvitationStatus::Failed.as_str()))
        .one(conn)
        .await
}

/// The invitation a star-menu interaction issued (not counting failed ones), if any.
pub async fn invitation_of_interaction<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
    interaction_id: &InteractionId,
) -> Result<Option<invitation::Model>, DbErr> {
    invitation::Entity::find()
        .filter(invitation::Column::ShopId.eq(shop_id.as_str()))
        .filter(invitation::Column::InteractionId.eq(interaction_id.as_str()))
        .filter(invitation::Column::Status.ne(InvitationStatus::Failed.as_str()))
        .order_by_desc(invitation::Column::CreatedAt)
        .one(conn)
        .await
}

async fn mark_sent<C: ConnectionTrait>(
    conn: &C,
    invitation_id: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    invitation::Entity::update_many()
        .col_expr(invitation::Column::Status, Expr::value(InvitationStatus::Sent.as_str()))
        .col_expr(invitation::Column::SentAt, Expr::value(to_millis(now)))
        .filter(invitation::Column::Id.eq(invitation_id))
        .filter(invitation::Column::Status.eq(InvitationStatus::Pending.as_str()))
        .exec(conn)
        .await?;
    Ok(())
}

async fn mark_failed<C: ConnectionTrait>(
    conn: &C,
    invitation_ids: &[String],
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    invitation::Entity::update_many()
        .col_expr(invitation::Column::Status, Expr::value(InvitationStatus::Failed.as_str()))
        .col_expr(invitation::Column::Failure, Expr::value(reason))
        .col_expr(invitation::Column::FailedAt, Expr::value(to_millis(now)))
        .filter(invitation::Column::Id.is_in(invitation_ids.to_vec()))
        .filter(invitation::Column::Status.eq(InvitationStatus::Pending.as_str()))
        .exec(conn)
        .await?;
    Ok(())
}

/// Whether the token was used (its link reached the customer).
async fn link_used<C: ConnectionTrait>(conn: &C, token_id: Option<&str>) -> Result<bool, DbErr> {
    let Some(token_id) = token_id else { return Ok(false) };
    Ok(token::Entity::find_by_id(token_id).one(conn).await?.is_some_and(|token| token.used_at.is_some()))
}

/// The failure recorded on an invitation a staff member cancelled.
pub const CANCELLED_BY_STAFF: &str = "cancelled by staff";

/// A staff member cancels an invitation whose link was never used. Its link dies first, by a
/// conditional update, so a customer using it at this very moment either finds it dead or used it
/// first (then nothing changes and `false` is returned). Its message is withdrawn if still queued,
/// and the invitation fails as cancelled by staff, whether or not it was delivered: a new one may
/// then be sent.
pub async fn cancel_by_staff<C: ConnectionTrait>(
    conn: &C,
    invitation_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let of_invitation = || Condition::all().add(token::Column::InvitationId.eq(invitation_id));
    tokens::revoke_where(conn, of_invitation(), now).await?;
    let used =
        token::Entity::find().filter(of_invitation()).all(conn).await?.iter().any(|t| t.used_at.is_some());
    if used {
        return Ok(false);
    }
    let queued = outbox_message::Entity::find()
        .filter(outbox_message::Column::InvitationId.eq(invitation_id))
        .filter(outbox_message::Column::Status.eq(outbox::OutboxStatus::Pending.as_str()))
        .all(conn)
        .await?;
    outbox::cancel(conn, &queued, CANCELLED_BY_STAFF).await?;
    let failed = invitation::Entity::update_many()
        .col_expr(invitation::Column::Status, Expr::value(InvitationStatus::Failed.as_str()))
        .col_expr(invitation::Column::Failure, Expr::value(CANCELLED_BY_STAFF))
        .col_expr(invitation::Column::FailedAt, Expr::value(to_millis(now)))
        .filter(invitation::Column::Id.eq(invitation_id))
        .filter(invitation::Column::Status.ne(InvitationStatus::Failed.as_str()))
        .exec(conn)
        .await?;
    Ok(failed.rows_affected == 1)
}
