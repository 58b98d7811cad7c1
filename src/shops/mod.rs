//! The shop's world as the host describes it: shops, their customers, and what the lifecycle and data
//! events do to them (contract §5).

pub mod cache;
pub mod records;
pub mod snapshot;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};

use crate::{
    domain::{CustomerId, ShopId},
    entities::{customer, shop},
    invitations,
};
pub use records::Applied;
use snapshot::{CustomerSnapshot, ShopSnapshot};

/// A change the host reports about a shop or one of its customers, checked (the host edge parses
/// its wire form into this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShopEvent {
    Installed(ShopSnapshot),
    Uninstalled,
    ShopUpdated(ShopSnapshot),
    CustomerUpdated(CustomerSnapshot),
    CustomerDeleted {
        customer_id: CustomerId,
        /// The customer's version at deletion.
        version: i64,
    },
}

impl ShopEvent {
    /// The customer the event concerns, if any.
    pub fn customer_id(&self) -> Option<&CustomerId> {
        match self {
            Self::CustomerUpdated(customer) => Some(&customer.id),
            Self::CustomerDeleted { customer_id, .. } => Some(customer_id),
            _ => None,
        }
    }
}

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The shop never installed the plugin.
    #[error("unknown shop {0}")]
    UnknownShop(ShopId),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Applies one lifecycle or data event of shop `shop_id` that happened at `occurred_at`.
pub async fn apply_event<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
    occurred_at: DateTime<Utc>,
    event: &ShopEvent,
    now: DateTime<Utc>,
) -> Result<Applied, ApplyError> {
    let applied = match event {
        ShopEvent::Installed(snapshot) => records::record_install(conn, snapshot, occurred_at, now).await?,
        ShopEvent::Uninstalled => {
            require_shop(conn, shop_id).await?;
            records::record_uninstall(conn, shop_id, occurred_at, now).await?
        }
        ShopEvent::ShopUpdated(snapshot) => {
            require_shop(conn, shop_id).await?;
            records::store_shop(conn, snapshot, now).await?
        }
        ShopEvent::CustomerUpdated(snapshot) => {
            let shop = require_shop(conn, shop_id).await?;
            update_customer(conn, &shop, snapshot, now).await?.0
        }
        ShopEvent::CustomerDeleted { customer_id, version } => {
            // The same locks, in the same order, as a submission of the star-menu dialog: whichever
            // comes second sees what the first committed, so an invitation issued a moment earlier
            // is erased here, and one asked for a moment later finds the customer deleted.
            records::lock_shop(conn, shop_id)
                .await?
                .ok_or_else(|| ApplyError::UnknownShop(shop_id.clone()))?;
            records::lock_customer(conn, shop_id, customer_id).await?;
            records::delete_customer(conn, shop_id, customer_id, *version, now).await?;
            invitations::erase_customer(conn, shop_id, customer_id, now).await?;
            Applied::Stored
        }
    };
    Ok(applied)
}

/// Stores a customer snapshot (from `customer.updated` or a star-menu action) and, when it changed the
/// email, lets the portal account follow. Returns what happened and the customer's row as it now is.
pub async fn update_customer<C: ConnectionTrait>(
    conn: &C,
    shop: &shop::Model,
    snapshot: &CustomerSnapshot,
    now: DateTime<Utc>,
) -> Result<(Applied, Option<customer::Model>), DbErr> {
    // Locked, so that the row this decides on is the one a concurrent deletion leaves behind.
    let shop_id = shop.shop_id();
    let before = records::lock_customer(conn, &shop_id, &snapshot.id).await?;
    let applied = records::store_customer(conn, shop, before.as_ref(), snapshot, now).await?;
    if applied != Applied::Stored {
        return Ok((applied, before));
    }
    // A customer seen for the first time has no portal account yet: nothing can follow.
    if let Some(before) = &before
        && before.email.as_deref() != snapshot.email.as_ref().map(|e| e.as_str())
    {
        invitations::follow_email_change(
            conn,
            &shop_id,
            &snapshot.id,
            before.email.as_deref(),
            snapshot.email.as_ref(),
            now,
        )
        .await?;
    }
    Ok((applied, Some(records::customer_row(&shop_id, snapshot, now))))
}

/// The shop's row, or [`ApplyError::UnknownShop`] when it never installed the plugin.
pub async fn require_shop<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
) -> Result<crate::entities::shop::Model, ApplyError> {
    records::find_shop(conn, shop_id).await?.ok_or_else(|| ApplyError::UnknownShop(shop_id.clone()))
}
