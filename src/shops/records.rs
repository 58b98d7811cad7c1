//! Keeping the shop's world as the host describes it: each change is one statement that applies the
//! `version` rule inside the database (`ON CONFLICT … DO UPDATE … WHERE stored.version <
//! new.version`), so two instances, or a retry racing a newer event, can never let an older snapshot
//! win.
//!
//! Where a decision rests on more than one statement (invite this customer? erase this shop?), the
//! rows it rests on are locked first on PostgreSQL, always the shop before the customer, so that two
//! such decisions about the same rows take turns: [`lock_shop`], [`lock_customer`]. A batch of
//! customer updates locks many at once, in the same order: [`share_shops`] (which lets two batches
//! of one shop proceed side by side) and [`lock_customers`]. SQLite needs no locks: its single
//! writer runs one transaction at a time.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Select, Set,
    sea_query::{Alias, Asterisk, Expr, ExprTrait, LockType, OnConflict, Query},
};

use super::snapshot::{CustomerSnapshot, ShopSnapshot};
use crate::{
    clock::to_millis,
    db::ROWS_PER_STATEMENT,
    domain::{CustomerId, HostPortal, ShopId},
    entities::{customer, shop},
};

/// How long an uninstalled shop's personal data is kept, in case it is installed again.
pub const ERASURE_GRACE: TimeDelta = TimeDelta::hours(48);

/// What became of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Stored,
    /// Ignored: we already hold this or a newer version.
    Stale,
    /// Ignored: the customer was deleted, and deletion is final.
    Deleted,
    /// Ignored: the shop is uninstalled, so we keep no new personal data for it.
    ShopUninstalled,
}

fn excluded(column: impl sea_orm::IdenStatic) -> Expr {
    Expr::col((Alias::new("excluded"), column))
}

/// The shop row, if the shop ever installed the plugin.
pub async fn find_shop<C: ConnectionTrait>(conn: &C, id: &ShopId) -> Result<Option<shop::Model>, DbErr> {
    shop::Entity::find_by_id(id.as_str()).one(conn).await
}

/// The shop row, locked (on PostgreSQL) until the transaction ends: a submission, a deletion, an
/// install and the erasure that take it see each other's committed work, one after the other.
pub async fn lock_shop<C: ConnectionTrait>(conn: &C, id: &ShopId) -> Result<Option<shop::Model>, DbErr> {
    for_decision(conn, shop::Entity::find_by_id(id.as_str())).one(conn).await
}

/// The customer's row, locked like [`lock_shop`] (take the shop's lock first, where both are needed).
pub async fn lock_customer<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
    customer_id: &CustomerId,
) -> Result<Option<customer::Model>, DbErr> {
    for_decision(
        conn,
        customer::Entity::find_by_id((shop_id.as_str().to_owned(), customer_id.as_str().to_owned())),
    )
    .one(conn)
    .await
}

/// The shops among `ids` (sorted, without repeats), locked `FOR SHARE` on PostgreSQL in id order
/// until the transaction ends: the lock [`lock_shop`] takes (installs, uninstalls, deletions,
/// star-menu submissions, the erasure) waits for it, and it for them, but two holders of it do not
/// wait for each other. For a batch of customer updates, whose decisions rest on the shop being
/// installed but do not change it.
pub async fn share_shops<C: ConnectionTrait>(conn: &C, ids: &[&str]) -> Result<Vec<shop::Model>, DbErr> {
    let mut shops = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let select = shop::Entity::find()
            .filter(shop::Column::Id.is_in(chunk.iter().copied()))
            .order_by_asc(shop::Column::Id);
        shops.extend(locked(conn, select, LockType::Share).all(conn).await?);
    }
    Ok(shops)
}

/// The stored customers among `keys` (`(shop_id, customer_id)`, sorted, without repeats), locked
/// like [`lock_customer`] in that order: two batches, or a batch and a single event, that want the
/// same customers take them one after the other, never each holding what the other waits for.
pub async fn lock_customers<C: ConnectionTrait>(
    conn: &C,
    keys: &[(&str, &str)],
) -> Result<Vec<customer::Model>, DbErr> {
    use customer::Column as C;
    let mut customers = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        // `IN (VALUES …)` rather than a list of pairs, which PostgreSQL plans as one `OR` branch per
        // pair (ten times slower to plan and run for a full batch).
        let wanted = Query::select()
            .column(Asterisk)
            .from_values(chunk.iter().map(|(shop_id, id)| (shop_id.to_string(), id.to_string())), "wanted")
            .to_owned();
        let select = customer::Entity::find()
            .filter(Expr::tuple([Expr::col(C::ShopId), Expr::col(C::Id)]).in_subquery(wanted))
            .order_by_asc(C::ShopId)
            .order_by_asc(C::Id);
        customers.extend(locked(conn, select, LockType::NoKeyUpdate).all(conn).await?);
    }
    Ok(customers)
}

/// `FOR NO KEY UPDATE` on PostgreSQL: it excludes every other locker of the row (and its updates),
/// but not the `KEY SHARE` lock that inserting a customer or an account takes on the row it refers
/// to, so a transaction holding it never deadlocks with one that is only adding rows beside it.
fn for_decision<E: EntityTrait, C: ConnectionTrait>(conn: &C, select: Select<E>) -> Select<E> {
    locked(conn, select, LockType::NoKeyUpdate)
}

/// `select` with a row lock on PostgreSQL; unchanged on SQLite, which has none.
fn locked<E: EntityTrait, C: ConnectionTrait>(conn: &C, select: Select<E>, lock: LockType) -> Select<E> {
    if conn.get_database_backend() == DbBackend::Postgres { select.lock(lock) } else { select }
}

/// Stores a shop snapshot unless a newer one is stored. A shop seen for the first time is created
/// uninstalled; only [`record_install`] installs it.
pub async fn store_shop<C: ConnectionTrait>(
    conn: &C,
    snapshot: &ShopSnapshot,
    now: DateTime<Utc>,
) -> Result<Applied, DbErr> {
    let now = to_millis(now);
    let row = shop::ActiveModel {
        id: Set(snapshot.id.as_str().to_owned()),
        name: Set(snapshot.name.as_str().to_owned()),
        subscription_tier: Set(snapshot.tier.as_str().to_owned()),
        portal_active: Set(snapshot.portal_active),
        timezone: Set(snapshot.timezone.name().to_owned()),
        locale: Set(snapshot.locale.as_str().to_owned()),
        email: Set(snapshot.email.as_ref().map(|e| e.as_str().to_owned())),
        phone: Set(snapshot.phone.as_ref().map(|p| p.as_str().to_owned())),
        portal: Set(snapshot.portal.as_ref().map(HostPortal::to_stored)),
        version: Set(snapshot.version),
        installed: Set(false),
        lifecycle_at: Set(i64::MIN),
        erase_due_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    use shop::Column as C;
    let rows = shop::Entity::insert(row)
        .on_conflict(
            OnConflict::column(C::Id)
                .update_columns([
                    C::Name,
                    C::SubscriptionTier,
                    C::PortalActive,
                    C::Timezone,
                    C::Locale,
                    C::Email,
                    C::Phone,
                    C::Portal,
                    C::Version,
                    C::UpdatedAt,
                ])
                .action_and_where(Expr::col((shop::Entity, C::Version)).lt(excluded(C::Version)))
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(if rows == 1 { Applied::Stored } else { Applied::Stale })
}

/// `plugin.installed`: stores the snapshot and installs the shop, unless a later install or
/// uninstall was already applied (a late retry must not undo it). Cancels a pending erasure: the
/// shop's lock makes an erasure that is already under way finish first (then the shop comes back
/// without its customers), or wait and find the shop installed (then it erases nothing).
pub async fn record_install<C: ConnectionTrait>(
    conn: &C,
    snapshot: &ShopSnapshot,
    occurred_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Applied, DbErr> {
    lock_shop(conn, &snapshot.id).await?;
    store_shop(conn, snapshot, now).await?;
    set_lifecycle(conn, &snapshot.id, true, occurred_at, now).await
}

/// `plugin.uninstalled`: the shop is served no more from now on; its personal data is due for
/// erasure 48 hours after the uninstall happened.
pub async fn record_uninstall<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
    occurred_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Applied, DbErr> {
    set_lifecycle(conn, shop_id, false, occurred_at, now).await
}

async fn set_lifecycle<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
    installed: bool,
    occurred_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Applied, DbErr> {
    // The event time orders lifecycle events; the erasure is scheduled from it too, but never from a
    // time that has not come yet on our clock (the host's clock may run ahead).
    let erase_due_at = (!installed).then(|| to_millis(std::cmp::min(occurred_at, now) + ERASURE_GRACE));
    let result = shop::Entity::update_many()
        .col_expr(shop::Column::Installed, Expr::value(installed))
        .col_expr(shop::Column::LifecycleAt, Expr::value(to_millis(occurred_at)))
        .col_expr(shop::Column::EraseDueAt, Expr::value(erase_due_at))
        .col_expr(shop::Column::UpdatedAt, Expr::value(to_millis(now)))
        .filter(shop::Column::Id.eq(shop_id.as_str()))
        .filter(shop::Column::LifecycleAt.lte(to_millis(occurred_at)))
        .exec(conn)
        .await?;
    Ok(if result.rows_affected == 1 { Applied::Stored } else { Applied::Stale })
}

/// `customer.updated`: stores the snapshot unless a newer one is stored, the customer was deleted, or
/// the shop is uninstalled. `before` is the customer's row as just read in the same transaction; the
/// upsert applies the version rule again itself, so a concurrent writer elsewhere cannot make an older
/// snapshot win.
pub async fn store_customer<C: ConnectionTrait>(
    conn: &C,
    shop: &shop::Model,
    before: Option<&customer::Model>,
    snapshot: &CustomerSnapshot,
    now: DateTime<Utc>,
) -> Result<Applied, DbErr> {
    if !shop.installed {
        return Ok(Applied::ShopUninstalled);
    }
    let verdict = judge_customer(before.map(|row| (row.version, row.deleted_at.is_some())), snapshot.version);
    if verdict != Applied::Stored {
        return Ok(verdict);
    }
    let shop_id = shop.shop_id();
    Ok(if upsert_customers(conn, &[(&shop_id, snapshot)], now).await?.is_empty() {
        Applied::Stale
    } else {
        Applied::Stored
    })
}

/// The version rule for a customer snapshot, against what is stored (its version, and whether the
/// customer was deleted): deletion is final, and only a newer version replaces the stored one. The
/// upserts apply the same rule again in SQL, for writers this process does not see.
pub fn judge_customer(stored: Option<(i64, bool)>, incoming_version: i64) -> Applied {
    match stored {
        Some((_, true)) => Applied::Deleted,
        Some((version, false)) if version >= incoming_version => Applied::Stale,
        _ => Applied::Stored,
    }
}

/// The row a stored snapshot becomes.
pub fn customer_row(shop_id: &ShopId, snapshot: &CustomerSnapshot, now: DateTime<Utc>) -> customer::Model {
    customer::Model {
        shop_id: shop_id.as_str().to_owned(),
        id: snapshot.id.as_str().to_owned(),
        first_name: snapshot.first_name.as_ref().map(|t| t.as_str().to_owned()),
        last_name: snapshot.last_name.as_ref().map(|t| t.as_str().to_owned()),
        email: snapshot.email.as_ref().map(|e| e.as_str().to_owned()),
        mobile: snapshot.mobile.as_ref().map(|m| m.as_str().to_owned()),
        version: snapshot.version,
        deleted_at: None,
        updated_at: to_millis(now),
    }
}

/// The row of a stored shop after a newer snapshot was stored over it (its lifecycle unchanged).
pub fn shop_row(stored: shop::Model, snapshot: &ShopSnapshot, now: DateTime<Utc>) -> shop::Model {
    shop::Model {
        name: snapshot.name.as_str().to_owned(),
        subscription_tier: snapshot.tier.as_str().to_owned(),
        portal_active: snapshot.portal_active,
        timezone: snapshot.timezone.name().to_owned(),
        locale: snapshot.locale.as_str().to_owned(),
        email: snapshot.email.as_ref().map(|e| e.as_str().to_owned()),
        phone: snapshot.phone.as_ref().map(|p| p.as_str().to_owned()),
        portal: snapshot.portal.as_ref().map(HostPortal::to_stored),
        version: snapshot.version,
        updated_at: to_millis(now),
        ..stored
    }
}

/// Stores customer snapshots, each with its shop, in one statement (keep it to
/// [`ROWS_PER_STATEMENT`]), each unless a newer version is stored or the customer was deleted.
/// Returns the `(shop_id, id)` of each row written: a snapshot missing there lost to what another
/// writer stored meanwhile (on PostgreSQL, a customer another instance created after it was judged).
pub async fn upsert_customers<C: ConnectionTrait>(
    conn: &C,
    snapshots: &[(&ShopId, &CustomerSnapshot)],
    now: DateTime<Utc>,
) -> Result<Vec<(String, String)>, DbErr> {
    let rows = snapshots
        .iter()
        .map(|(shop_id, snapshot)| customer::ActiveModel::from(customer_row(shop_id, snapshot, now)));
    use customer::Column as C;
    let mut upsert = customer::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::columns([C::ShopId, C::Id])
                .update_columns([C::FirstName, C::LastName, C::Email, C::Mobile, C::Version, C::UpdatedAt])
                .action_and_where(
                    Expr::col((customer::Entity, C::Version))
                        .lt(excluded(C::Version))
                        .and(Expr::col((customer::Entity, C::DeletedAt)).is_null()),
                )
                .to_owned(),
        )
        .into_query();
    upsert.returning(Query::returning().columns([C::ShopId, C::Id]));
    conn.query_all(&upsert)
        .await?
        .iter()
        .map(|row| Ok((row.try_get::<String>("", "shop_id")?, row.try_get::<String>("", "id")?)))
        .collect()
}

/// `customer.deleted`: erases the customer's personal data and leaves a tombstone, so no update,
/// however late, brings them back. Applied whatever the versions: erasing is always safe.
pub async fn delete_customer<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
    customer_id: &CustomerId,
    version: i64,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let now = to_millis(now);
    let tombstone = customer::ActiveModel {
        shop_id: Set(shop_id.as_str().to_owned()),
        id: Set(customer_id.as_str().to_owned()),
        first_name: Set(None),
        last_name: Set(None),
        email: Set(None),
        mobile: Set(None),
        version: Set(version),
        deleted_at: Set(Some(now)),
        updated_at: Set(now),
    };
    use customer::Column as C;
    let stored_version = Expr::col((customer::Entity, C::Version));
    customer::Entity::insert(tombstone)
        .on_conflict(
            OnConflict::columns([C::ShopId, C::Id])
                .update_columns([C::FirstName, C::LastName, C::Email, C::Mobile, C::UpdatedAt])
                // Keep the highest version and the first deletion time (portable GREATEST/COALESCE).
                .value(
                    C::Version,
                    Expr::case(stored_version.clone().gt(excluded(C::Version)), stored_version)
                        .finally(excluded(C::Version)),
                )
                .value(
                    C::DeletedAt,
                    Expr::col((customer::Entity, C::DeletedAt)).if_null(excluded(C::DeletedAt)),
                )
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Erases the personal data of every shop whose 48 hours after uninstalling have passed and that
/// was not installed again: its customers and the shop's own contact details. Returns the shops.
///
/// Each shop is locked and looked at again before anything is erased: a re-install may have been
/// committed since the list was read, or be committing now (the lock waits for it).
pub async fn erase_due_shops<C: ConnectionTrait>(conn: &C, now: DateTime<Utc>) -> Result<Vec<ShopId>, DbErr> {
    // In id order: two instances erasing at once lock the shops in the same order.
    let due: Vec<shop::Model> = shop::Entity::find()
        .filter(shop::Column::EraseDueAt.lte(to_millis(now)))
        .filter(shop::Column::Installed.eq(false))
        .order_by_asc(shop::Column::Id)
        .all(conn)
        .await?;
    let mut erased = Vec::with_capacity(due.len());
    for listed in due {
        let shop_id = ShopId::from_stored(listed.id);
        let Some(shop) = lock_shop(conn, &shop_id).await? else { continue };
        if shop.installed || shop.erase_due_at.is_none_or(|due| due > to_millis(now)) {
            continue;
        }
        crate::invitations::erase_shop(conn, &shop_id).await?;
        customer::Entity::delete_many()
            .filter(customer::Column::ShopId.eq(shop.id.as_str()))
            .exec(conn)
            .await?;
        shop::Entity::update_many()
            .col_expr(shop::Column::Email, Expr::value(Option::<String>::None))
            .col_expr(shop::Column::Phone, Expr::value(Option::<String>::None))
            .col_expr(shop::Column::EraseDueAt, Expr::value(Option::<i64>::None))
            .col_expr(shop::Column::UpdatedAt, Expr::value(to_millis(now)))
            .filter(shop::Column::Id.eq(shop.id.as_str()))
            .filter(shop::Column::Installed.eq(false))
            .exec(conn)
            .await?;
        erased.push(shop_id);
    }
    Ok(erased)
}

#[cfg(test)]
mod tests {
    use super::{Applied, judge_customer};

    #[test]
    fn a_customer_snapshot_replaces_only_an_older_one_and_never_a_deletion() {
        assert_eq!(judge_customer(None, 1), Applied::Stored);
        assert_eq!(judge_customer(Some((4, false)), 5), Applied::Stored);
        assert_eq!(judge_customer(Some((5, false)), 5), Applied::Stale);
        assert_eq!(judge_customer(Some((6, false)), 5), Applied::Stale);
        assert_eq!(judge_customer(Some((1, true)), 9), Applied::Deleted);
    }
}
