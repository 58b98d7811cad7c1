//! The sender's half of a reset asked for on `/forgot`: finding the account behind the typed address
//! and minting its link under the attempt's claim (until `accounts/` owns reset links).

use chrono::TimeDelta;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
    sea_query::Expr,
};

use super::{
    Delivery,
    send::{Prepared, cancel},
};
use crate::{
    clock::to_millis,
    entities::{customer, outbox_message, portal_account, token},
    outbox::OutboxStatus,
    tokens::{self, NewToken, Purpose, RawToken},
};

/// Reset links sent for one account within an hour, at most.
pub const RESETS_PER_HOUR: u64 = 3;

/// A reset asked for on `/forgot` names only the address that was typed. The sender decides, so the
/// page does the same work whether or not the address has an account: the account of the shop with
/// that username, if any and if it has had fewer than [`RESETS_PER_HOUR`] links in the last hour,
/// gets a reset token, sealed into this row, which then goes to the customer's email; otherwise the
/// row is cancelled. All under this attempt's claim.
pub(super) async fn mint_reset_link(
    delivery: &Delivery,
    message: &mut outbox_message::Model,
) -> Result<RawToken, Prepared> {
    let now = delivery.clock.now();
    let ttl = TimeDelta::from_std(delivery.reset_ttl).unwrap_or(TimeDelta::hours(1));
    let row = message.clone();
    let sealer = delivery.sealer.clone();
    let minted = delivery
        .db
        .write(move |txn| {
            Box::pin(async move {
                let typed = row.recipient.as_deref().unwrap_or_default();
                let mut find = portal_account::Entity::find()
                    .filter(portal_account::Column::ShopId.eq(row.shop_id.as_str()))
                    .filter(portal_account::Column::Username.eq(typed));
                if txn.get_database_backend() == DbBackend::Postgres {
                    // Requests for one account are decided one at a time, so the hourly cap holds
                    // when several are attempted at once (SQLite has its single writer).
                    find = find.lock_exclusive();
                }
                let Some(account) = find.one(txn).await? else {
                    return Ok(Err("no portal account has the address that was typed"));
                };
                let recent = token::Entity::find()
                    .filter(token::Column::AccountId.eq(account.id.as_str()))
                    .filter(token::Column::Purpose.eq(Purpose::Reset.as_str()))
                    .filter(token::Column::CreatedAt.gt(to_millis(now - TimeDelta::hours(1))))
                    .count(txn)
                    .await?;
                if recent >= RESETS_PER_HOUR {
                    return Ok(Err("reset links for this account are capped for this hour"));
                }
                let (token_id, raw) = tokens::issue(
                    txn,
                    NewToken {
                        shop_id: &row.shop_id,
                        account_id: &account.id,
                        purpose: Purpose::Reset,
                        invitation_id: None,
                        expires_at: now + ttl,
                    },
                    now,
                )
                .await?;
                let customer =
                    customer::Entity::find_by_id((row.shop_id.clone(), account.customer_id.clone()))
                        .one(txn)
                        .await?;
                let recipient = customer.and_then(|c| c.email).unwrap_or_else(|| account.username.clone());
                let sealed = sealer.seal(&row.id, &raw);
                let updated = outbox_message::Entity::update_many()
                    .col_expr(outbox_message::Column::TokenId, Expr::value(token_id.clone()))
                    .col_expr(outbox_message::Column::SealedToken, Expr::value(sealed.clone()))
                    .col_expr(outbox_message::Column::CustomerId, Expr::value(account.customer_id.clone()))
                    .col_expr(outbox_message::Column::Recipient, Expr::value(recipient.clone()))
                    .filter(outbox_message::Column::Id.eq(row.id.as_str()))
                    .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending.as_str()))
                    .filter(outbox_message::Column::ClaimToken.eq(row.claim_token.clone()))
                    .exec(txn)
                    .await?;
                if updated.rows_affected != 1 {
                    // Lost the claim: roll back, the new claim's holder decides.
                    return Err(DbErr::Custom("the claim on the reset request was lost".into()));
                }
                Ok(Ok((token_id, raw, account.customer_id, recipient, sealed)))
            })
        })
        .await?;
    match minted {
        Ok((token_id, raw, customer_id, recipient, sealed)) => {
            message.token_id = Some(token_id);
            message.customer_id = Some(customer_id);
            message.recipient = Some(recipient);
            message.sealed_token = Some(sealed);
            Ok(raw)
        }
        Err(reason) => Err(cancel(reason)),
    }
}
