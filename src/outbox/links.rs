//! Giving a queued message its link after it was queued: a reset asked for on `/forgot` is queued
//! with only the typed address, and gets its token, customer and recipient from its sender, under
//! the sender's claim.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, sea_query::Expr};

use super::{Link, OutboxStatus};
use crate::entities::outbox_message;

/// Seals `link` into the claimed, still pending `row` and names the customer and the address it
/// goes to. Returns whether the claim still held; only then is `row` changed to match what was
/// written. A caller that lost the claim should roll back: the new claim's holder decides.
pub async fn attach_link<C: ConnectionTrait>(
    conn: &C,
    row: &mut outbox_message::Model,
    link: Link<'_>,
    customer_id: &str,
    recipient: &str,
) -> Result<bool, DbErr> {
    let sealed = link.sealer.seal(&row.id, link.token);
    let updated = outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::TokenId, Expr::value(link.token_id))
        .col_expr(outbox_message::Column::SealedToken, Expr::value(sealed.as_str()))
        .col_expr(outbox_message::Column::CustomerId, Expr::value(customer_id))
        .col_expr(outbox_message::Column::Recipient, Expr::value(recipient))
        .filter(outbox_message::Column::Id.eq(row.id.as_str()))
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending.as_str()))
        .filter(outbox_message::Column::ClaimToken.eq(row.claim_token.clone()))
        .exec(conn)
        .await?;
    if updated.rows_affected != 1 {
        return Ok(false);
    }
    row.token_id = Some(link.token_id.to_owned());
    row.sealed_token = Some(sealed);
    row.customer_id = Some(customer_id.to_owned());
    row.recipient = Some(recipient.to_owned());
    Ok(true)
}
