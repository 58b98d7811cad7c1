//! Changes to messages made outside an attempt: one found delivered after all, messages cancelled
//! before they went, the look-ups that find them, and erasure.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, sea_query::Expr};

use super::{MessageKind, OutboxStatus};
use crate::{clock::to_millis, entities::outbox_message};

/// Records that a pending message arrived although its sender did not learn it (its link was just
/// used): sent, with no address and no link kept. Returns whether it was still pending. For a row that
/// carries an invitation, callers go through `invitations::state` (`link_arrived`), which marks it sent.
pub async fn mark_delivered<C: ConnectionTrait>(
    conn: &C,
    message: &outbox_message::Model,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let settled = outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::Status, Expr::value(OutboxStatus::Sent.as_str()))
        .col_expr(outbox_message::Column::SentAt, Expr::value(to_millis(now)))
        .col_expr(outbox_message::Column::Recipient, Expr::value(Option::<String>::None))
        .col_expr(outbox_message::Column::SealedToken, Expr::value(Option::<String>::None))
        .col_expr(outbox_message::Column::LeaseUntil, Expr::value(Option::<i64>::None))
        .col_expr(outbox_message::Column::ClaimToken, Expr::value(Option::<String>::None))
        .filter(outbox_message::Column::Id.eq(message.id.as_str()))
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending.as_str()))
        .exec(conn)
        .await?;
    Ok(settled.rows_affected == 1)
}

/// Cancels messages not yet delivered (a sender holding one finds it so when it records, and does
/// not retry); they keep no address and no link. Returns how many were cancelled. When a row carries
/// an invitation, callers go through `invitations::state` (`cancel_undelivered`), which fails it.
pub async fn cancel<C: ConnectionTrait>(
    conn: &C,
    messages: &[outbox_message::Model],
    reason: &str,
) -> Result<u64, DbErr> {
    if messages.is_empty() {
        return Ok(0);
    }
    let cancelled = outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::Status, Expr::value(OutboxStatus::Cancelled.as_str()))
        .col_expr(outbox_message::Column::Recipient, Expr::value(Option::<String>::None))
        .col_expr(outbox_message::Column::SealedToken, Expr::value(Option::<String>::None))
        .col_expr(outbox_message::Column::LastError, Expr::value(reason))
        .filter(outbox_message::Column::Id.is_in(messages.iter().map(|m| m.id.clone())))
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending.as_str()))
        .exec(conn)
        .await?;
    Ok(cancelled.rows_affected)
}

/// The customer's messages not yet delivered, given up or cancelled.
pub async fn pending_for_customer<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    customer_id: &str,
) -> Result<Vec<outbox_message::Model>, DbErr> {
    outbox_message::Entity::find()
        .filter(outbox_message::Column::ShopId.eq(shop_id))
        .filter(outbox_message::Column::CustomerId.eq(customer_id))
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending.as_str()))
        .all(conn)
        .await
}

/// Pending messages of `kind` that name no customer yet, only one of the typed `addresses` (a reset
/// asked for on `/forgot`, before its sender found the account).
pub async fn pending_requests_to<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    kind: MessageKind,
    addresses: Vec<String>,
) -> Result<Vec<outbox_message::Model>, DbErr> {
    outbox_message::Entity::find()
        .filter(outbox_message::Column::ShopId.eq(shop_id))
        .filter(outbox_message::Column::CustomerId.is_null())
        .filter(outbox_message::Column::Kind.eq(kind.as_str()))
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending.as_str()))
        .filter(outbox_message::Column::Recipient.is_in(addresses))
        .all(conn)
        .await
}

/// Erases every message of the customer, whatever its status (an erasure keeps no address), and
/// the gateway's reports about them.
pub async fn erase_customer<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    customer_id: &str,
) -> Result<(), DbErr> {
    super::reports::erase_for_customer(conn, shop_id, customer_id).await?;
    outbox_message::Entity::delete_many()
        .filter(outbox_message::Column::ShopId.eq(shop_id))
        .filter(outbox_message::Column::CustomerId.eq(customer_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Erases every message of the shop, whatever its status, and the gateway's reports about them.
pub async fn erase_shop<C: ConnectionTrait>(conn: &C, shop_id: &str) -> Result<(), DbErr> {
    super::reports::erase_shop(conn, shop_id).await?;
    outbox_message::Entity::delete_many()
        .filter(outbox_message::Column::ShopId.eq(shop_id))
        .exec(conn)
        .await?;
    Ok(())
}
