//! What the SMS gateway reported about a message after it accepted it (contract §10): each verified
//! report kept once in `sms_reports`, the furthest state on the message's row (a final one never
//! reverts), and the messages still without a final word a day later, to be looked up once. What a
//! report means for an invitation is the caller's (`invitations::state`), in the same transaction.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr, sea_query::OnConflict,
};
use sha2::{Digest, Sha256};

use super::OutboxStatus;
use crate::{
    clock::to_millis,
    domain::Channel,
    entities::{outbox_message, sms_report},
    twilio::{MessageStatus, StatusReport},
};

/// The message a report is about: the one the gateway gave this `sid`, or else the SMS its callback
/// URL names (`named`) if no sid was recorded for it yet: a report can outrun the gateway's answer
/// to the request that sent the message. `None` for a message we do not know.
pub async fn message_reported<C: ConnectionTrait>(
    conn: &C,
    sid: &str,
    named: Option<&str>,
) -> Result<Option<outbox_message::Model>, DbErr> {
    let sms = || outbox_message::Column::Channel.eq(Channel::Sms.as_str());
    let by_sid =
        outbox_message::Entity::find().filter(sms()).filter(outbox_message::Column::ProviderRef.eq(sid));
    if let Some(found) = by_sid.one(conn).await? {
        return Ok(Some(found));
    }
    let Some(named) = named else { return Ok(None) };
    outbox_message::Entity::find_by_id(named)
        .filter(sms())
        .filter(outbox_message::Column::ProviderRef.is_null())
        .one(conn)
        .await
}

/// What a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advanced {
    /// A copy of a report already kept: nothing done.
    Repeated,
    /// Kept; its status is not one we act on, or not later than the message's: nothing else done.
    Kept,
    /// Kept, and the message's furthest state is now this.
    To(MessageStatus),
}

/// Keeps a report about `message` and moves the message's furthest state forward if the report is a
/// later stage. A report is kept once: a copy (the same sid, status and code) has the same id, and
/// its insert does nothing. The state moves with one conditional `UPDATE`, so of two reports racing
/// one final state wins, and no later one replaces it.
pub async fn record_report<C: ConnectionTrait>(
    conn: &C,
    message: &outbox_message::Model,
    report: &StatusReport,
    now: DateTime<Utc>,
) -> Result<Advanced, DbErr> {
    let row = sms_report::ActiveModel {
        id: Set(report_id(&message.id, report)),
        outbox_id: Set(message.id.clone()),
        shop_id: Set(message.shop_id.clone()),
        message_sid: Set(report.sid.clone()),
        status: Set(report.status.clone()),
        error_code: Set(report.error_code.clone()),
        received_at: Set(to_millis(now)),
    };
    let inserted = sms_report::Entity::insert(row)
        .on_conflict(OnConflict::column(sms_report::Column::Id).do_nothing().to_owned())
        .exec_without_returning(conn)
        .await?;
    if inserted == 0 {
        return Ok(Advanced::Repeated);
    }
    let Some(status) = report.known else { return Ok(Advanced::Kept) };
    let advanced = outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::ReportStatus, Expr::value(status.as_str()))
        .col_expr(outbox_message::Column::ReportError, Expr::value(report.error_code.clone()))
        .col_expr(outbox_message::Column::ReportedAt, Expr::value(to_millis(now)))
        .filter(outbox_message::Column::Id.eq(message.id.as_str()))
        .filter(
            Condition::any()
                .add(outbox_message::Column::ReportStatus.is_null())
                .add(outbox_message::Column::ReportStatus.is_in(status.replaces())),
        )
        .exec(conn)
        .await?;
    Ok(if advanced.rows_affected == 1 { Advanced::To(status) } else { Advanced::Kept })
}

/// A report's id, the same for every copy of it.
fn report_id(message_id: &str, report: &StatusReport) -> String {
    let mut hash = Sha256::new();
    for part in [message_id, &report.sid, &report.status, report.error_code.as_deref().unwrap_or("")] {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("rpt_{hex}")
}

/// Up to `limit` SMS accepted by the gateway between `oldest` and `accepted_before`, with its id
/// for them, never looked up and still without a final report: oldest first.
pub async fn look_up_due<C: ConnectionTrait>(
    conn: &C,
    accepted_before: DateTime<Utc>,
    oldest: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<outbox_message::Model>, DbErr> {
    let finals =
        [MessageStatus::Delivered, MessageStatus::Undelivered, MessageStatus::Failed].map(|s| s.as_str());
    outbox_message::Entity::find()
        .filter(outbox_message::Column::Channel.eq(Channel::Sms.as_str()))
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Sent.as_str()))
        .filter(outbox_message::Column::ProviderRef.is_not_null())
        .filter(outbox_message::Column::LookedUpAt.is_null())
        .filter(outbox_message::Column::SentAt.lte(to_millis(accepted_before)))
        .filter(outbox_message::Column::SentAt.gt(to_millis(oldest)))
        .filter(
            Condition::any()
                .add(outbox_message::Column::ReportStatus.is_null())
                .add(outbox_message::Column::ReportStatus.is_not_in(finals)),
        )
        .order_by_asc(outbox_message::Column::SentAt)
        .limit(limit)
        .all(conn)
        .await
}

/// Claims a message for its one look-up: marks it looked up now, if no one did. Of two rounds (or
/// instances) that found it due, one gets `true`; the message is not looked up again, whatever the
/// answer, unless [`release_look_up`] gives it back.
pub async fn claim_look_up<C: ConnectionTrait>(
    conn: &C,
    message_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let claimed = outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::LookedUpAt, Expr::value(to_millis(now)))
        .filter(outbox_message::Column::Id.eq(message_id))
        .filter(outbox_message::Column::LookedUpAt.is_null())
        .exec(conn)
        .await?;
    Ok(claimed.rows_affected == 1)
}

/// Gives a claimed look-up back, when the gateway could not be asked: the message is due again.
pub async fn release_look_up<C: ConnectionTrait>(conn: &C, message_id: &str) -> Result<(), DbErr> {
    outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::LookedUpAt, Expr::value(Option::<i64>::None))
        .filter(outbox_message::Column::Id.eq(message_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Erases the reports about the customer's messages (they go with the messages), in one statement
/// however many there are.
pub(super) async fn erase_for_customer<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    customer_id: &str,
) -> Result<(), DbErr> {
    let messages = sea_orm::sea_query::Query::select()
        .column(outbox_message::Column::Id)
        .from(outbox_message::Entity)
        .and_where(outbox_message::Column::ShopId.eq(shop_id))
        .and_where(outbox_message::Column::CustomerId.eq(customer_id))
        .to_owned();
    sms_report::Entity::delete_many()
        .filter(sms_report::Column::ShopId.eq(shop_id))
        .filter(sms_report::Column::OutboxId.in_subquery(messages))
        .exec(conn)
        .await?;
    Ok(())
}

/// Erases every report of the shop.
pub(super) async fn erase_shop<C: ConnectionTrait>(conn: &C, shop_id: &str) -> Result<(), DbErr> {
    sms_report::Entity::delete_many().filter(sms_report::Column::ShopId.eq(shop_id)).exec(conn).await?;
    Ok(())
}
