//! The stored world an action is judged against: the shop and the customer after the payload's
//! snapshots were applied (each only if newer than what is stored), locked until the transaction
//! ends on PostgreSQL.

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, DbErr};

use super::{Action, info};
use crate::{
    domain::{ShopId, WebhookId},
    host::staff_text::Audience,
    inbox::{self, Claim},
    invitations::eligibility::{Opened, World},
    links,
    shops::{self, records},
};

/// Claims the message; if it was answered before, that answer, otherwise the world after the
/// payload's snapshots were applied.
pub(super) async fn open(
    txn: &DatabaseTransaction,
    id: &WebhookId,
    action: &Action,
    shop_id: &ShopId,
    now: DateTime<Utc>,
) -> Result<Opened, DbErr> {
    Ok(match inbox::claim(txn, &info(id, shop_id, action), now).await? {
        Claim::Fresh => Opened::Fresh(Box::new(load_and_update(txn, action, shop_id, now).await?)),
        Claim::Answered(answer) => Opened::Answered(answer),
        Claim::InProgress => Opened::InProgress,
    })
}

async fn load_and_update(
    txn: &DatabaseTransaction,
    action: &Action,
    shop_id: &ShopId,
    now: DateTime<Utc>,
) -> Result<World, DbErr> {
    // Locked on PostgreSQL, the shop first and then (in `update_customer`) the customer, as a
    // deletion of the customer locks them: the rules judge rows nobody else changes until this
    // transaction ends.
    let Some(stored) = records::lock_shop(txn, shop_id).await? else {
        // Never installed: nothing is stored for a shop we do not serve.
        return Ok(World { shop: None, customer: None });
    };
    let shop = if action.shop.version > stored.version {
        records::store_shop(txn, &action.shop, now).await?;
        records::shop_row(stored, &action.shop, now)
    } else {
        stored
    };
    let (_, customer) = shops::update_customer(txn, &shop, &action.customer, now).await?;
    Ok(World { shop: Some(shop), customer })
}

/// Who the staff texts are about, with the login page of the stored shop.
pub(super) fn audience<'a>(world: &'a World, public_url: &url::Url) -> Audience<'a> {
    Audience {
        shop: world.shop.as_ref(),
        customer: world.customer.as_ref(),
        login_url: world.shop.as_ref().map(|s| links::login(public_url, &s.id)).unwrap_or_default(),
    }
}
