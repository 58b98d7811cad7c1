//! The shop's world as the host describes it: shops, their customers, and what the lifecycle and data
//! events do to them (contract §5).

pub mod records;
pub mod snapshot;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};

use crate::{domain::ShopId, host::events::LifecycleEvent};
pub use records::Applied;

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
    event: &LifecycleEvent,
    now: DateTime<Utc>,
) -> Result<Applied, ApplyError> {
    let applied = match event {
        LifecycleEvent::Installed(snapshot) => {
            records::record_install(conn, snapshot, occurred_at, now).await?
        }
        LifecycleEvent::Uninstalled => {
            require_shop(conn, shop_id).await?;
            records::record_uninstall(conn, shop_id, occurred_at, now).await?
        }
        LifecycleEvent::ShopUpdated(snapshot) => {
            require_shop(conn, shop_id).await?;
            records::store_shop(conn, snapshot, now).await?
        }
        LifecycleEvent::CustomerUpdated(snapshot) => {
            let shop = require_shop(conn, shop_id).await?;
            records::store_customer(conn, &shop, snapshot, now).await?
        }
        LifecycleEvent::CustomerDeleted { customer_id, version } => {
            require_shop(conn, shop_id).await?;
            records::delete_customer(conn, shop_id, customer_id, *version, now).await?;
            Applied::Stored
        }
    };
    Ok(applied)
}

/// The shop's row, or [`ApplyError::UnknownShop`] when it never installed the plugin.
pub async fn require_shop<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
) -> Result<crate::entities::shop::Model, ApplyError> {
    records::find_shop(conn, shop_id).await?.ok_or_else(|| ApplyError::UnknownShop(shop_id.clone()))
}
