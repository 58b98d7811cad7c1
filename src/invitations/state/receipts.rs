//! What the SMS gateway's reports on an invitation's message mean for the invitation (contract
//! §10), and the audit trail's record of what reached the customer. A child of `state`, the one
//! writer of an invitation's status.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, sea_query::Expr};

use super::{InvitationStatus, link_used};
use crate::{
    audit::{self, Event},
    clock::to_millis,
    db::Database,
    domain::{Channel, DeliveryFailure},
    entities::{invitation, outbox_message, token},
    outbox::{self, Advanced, MessageKind},
    tokens,
    twilio::{MessageStatus, StatusReport},
};

/// What a verified report did.
#[derive(Debug)]
pub struct Reported {
    /// The outbox row it was about.
    pub message_id: String,
    pub advanced: Advanced,
}

/// A verified report from the gateway, in one transaction of its own: its message found by the
/// sid (or, when the report outran our record of the sid, by the message its callback URL names),
/// and the report kept and applied ([`record_sms_report`]). `None` for a message we do not know.
pub async fn apply_sms_report(
    db: &Database,
    report: StatusReport,
    named: Option<String>,
    now: DateTime<Utc>,
) -> Result<Option<Reported>, DbErr> {
    db.write(move |txn| {
        Box::pin(async move {
            let Some(message) = outbox::message_reported(txn, &report.sid, named.as_deref()).await? else {
                return Ok(None);
            };
            let advanced = record_sms_report(txn, &message, &report, now).await?;
            Ok(Some(Reported { message_id: message.id, advanced }))
        })
    })
    .await
}

/// Keeps the gateway's verified report on an SMS (contract §10) and applies what it means, in the
/// caller's transaction. A copy of a report already kept does nothing at all; a report of a stage
/// the message already passed, or of a status we do not act on, is kept and changes nothing. For an
/// invitation's SMS: `delivered` goes into the
/// customer's audit trail; a final `undelivered` or `failed` fails the invitation (even a sent one:
/// the customer did not get it), its link dies and a new invitation may be sent, unless its link was
/// used (then the message evidently arrived, and the invitation stays sent).
pub async fn record_sms_report<C: ConnectionTrait>(
    conn: &C,
    message: &outbox_message::Model,
    report: &StatusReport,
    now: DateTime<Utc>,
) -> Result<Advanced, DbErr> {
    let advanced = outbox::record_report(conn, message, report, now).await?;
    let Advanced::To(status) = advanced else { return Ok(advanced) };
    let Some(invitation_id) = message.invitation_id.as_deref() else { return Ok(advanced) };
    if status == MessageStatus::Delivered {
        audit_delivery(conn, message, Event::Delivered { channel: Channel::Sms }, now).await?;
    } else if status.is_failure() {
        let reason = DeliveryFailure::from_sms_error(report.error_code.as_deref());
        if fail_undelivered(conn, message, invitation_id, reason, now).await? {
            let event = Event::DeliveryFailed { channel: Channel::Sms, reason };
            audit_delivery(conn, message, event, now).await?;
        }
    }
    Ok(advanced)
}

/// Fails the invitation whose SMS did not reach the customer, pending or sent, and kills its link;
/// returns whether it did. The link dies first, by an `UPDATE` that skips a used token, and only then
/// is the link's use looked at: of this and a customer using the link at the same moment, one comes
/// first and the other sees it, so a link in use is never failed under the customer.
async fn fail_undelivered<C: ConnectionTrait>(
    conn: &C,
    message: &outbox_message::Model,
    invitation_id: &str,
    reason: DeliveryFailure,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let token_id = message.token_id.as_deref();
    if let Some(token_id) = token_id {
        tokens::revoke_where(conn, Condition::all().add(token::Column::Id.eq(token_id)), now).await?;
    }
    if link_used(conn, token_id).await? {
        return Ok(false);
    }
    let failed = invitation::Entity::update_many()
        .col_expr(invitation::Column::Status, Expr::value(InvitationStatus::Failed.as_str()))
        .col_expr(
            invitation::Column::Failure,
            Expr::value(format!("the gateway reported the SMS undelivered ({})", reason.as_str())),
        )
        .col_expr(invitation::Column::FailedAt, Expr::value(to_millis(now)))
        .filter(invitation::Column::Id.eq(invitation_id))
        .filter(
            invitation::Column::Status
                .is_in([InvitationStatus::Pending.as_str(), InvitationStatus::Sent.as_str()]),
        )
        .exec(conn)
        .await?;
    // Nothing changed for an invitation already failed (cancelled by staff, say): no event for it.
    Ok(failed.rows_affected == 1)
}

/// Appends an event about an invitation's message to its customer's audit trail (other messages'
/// deliveries are not the trail's business).
pub(super) async fn audit_delivery<C: ConnectionTrait>(
    conn: &C,
    message: &outbox_message::Model,
    event: Event,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let Some(customer_id) = message.customer_id.as_deref() else { return Ok(()) };
    if MessageKind::parse(&message.kind) != Some(MessageKind::Invitation) {
        return Ok(());
    }
    audit::record(conn, &message.shop_id, customer_id, event, None, now).await
}
