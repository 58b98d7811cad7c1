//! The sender's half of a reset asked for on `/forgot`: in one transaction under the attempt's
//! claim, the account rules decide whether a link is sent and to whom
//! ([`accounts::reset::mint_link_for_request`]), and the outbox seals that link into the row
//! ([`outbox::attach_link`]); a request that gets no link is cancelled.

use sea_orm::DbErr;

use super::{
    Delivery,
    send::{Prepared, cancel},
};
use crate::{
    accounts::{self, reset::MintedLink},
    domain::ShopId,
    entities::outbox_message,
    outbox::{self, Link},
    tokens::RawToken,
};

/// Mints the link for the reset request `message` (claimed by this attempt) and returns its token
/// in clear, with `message` updated to what was written; or the cancellation to record.
pub(super) async fn mint_reset_link(
    delivery: &Delivery,
    message: &mut outbox_message::Model,
) -> Result<RawToken, Prepared> {
    let now = delivery.clock.now();
    let ttl = delivery.reset_ttl;
    let mut row = message.clone();
    let sealer = delivery.sealer.clone();
    let minted = delivery
        .db
        .write(move |txn| {
            Box::pin(async move {
                let typed = row.recipient.clone().unwrap_or_default();
                let shop_id = ShopId::from_stored(row.shop_id.clone());
                let minted =
                    match accounts::reset::mint_link_for_request(txn, &shop_id, &typed, ttl, now).await? {
                        Ok(minted) => minted,
                        Err(not_sent) => return Ok(Err(not_sent)),
                    };
                let MintedLink { token_id, token, customer_id, recipient } = minted;
                let link = Link { token_id: &token_id, token: &token, sealer: &sealer };
                if !outbox::attach_link(txn, &mut row, link, &customer_id, &recipient).await? {
                    // Lost the claim: roll back, the new claim's holder decides.
                    return Err(DbErr::Custom("the claim on the reset request was lost".into()));
                }
                Ok(Ok((row, token)))
            })
        })
        .await?;
    match minted {
        Ok((row, token)) => {
            *message = row;
            Ok(token)
        }
        Err(not_sent) => Err(cancel(not_sent.reason())),
    }
}
