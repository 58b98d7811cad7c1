//! Server-side sessions. The cookie holds 32 random bytes; the database holds only their SHA-256.
//! A session belongs to one shop's portal, ends after a stretch of inactivity or at an absolute limit,
//! whichever comes first, and a new one (with a new id) is started at every login, so an id planted
//! before login is worthless after it.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set, sea_query::Expr};

use super::Accounts;
use crate::{
    clock::to_millis,
    domain::ShopId,
    entities::{customer, portal_account, session},
    tokens::RawToken,
};

/// Only refresh `last_seen_at` when it is older than this, so reading pages does not mean writing.
const TOUCH_EVERY: TimeDelta = TimeDelta::seconds(60);

/// Starts a session for `account_id` in shop `shop_id`; returns the id for the cookie.
pub async fn start<C: ConnectionTrait>(
    conn: &C,
    account_id: &str,
    shop_id: &ShopId,
    lifetime: Duration,
    now: DateTime<Utc>,
) -> Result<RawToken, DbErr> {
    let id = RawToken::generate();
    let lifetime = TimeDelta::from_std(lifetime).unwrap_or(TimeDelta::hours(12));
    let row = session::ActiveModel {
        id_hash: Set(id.hash()),
        account_id: Set(account_id.to_owned()),
        shop_id: Set(shop_id.as_str().to_owned()),
        created_at: Set(to_millis(now)),
        last_seen_at: Set(to_millis(now)),
        expires_at: Set(to_millis(now + lifetime)),
    };
    session::Entity::insert(row).exec_without_returning(conn).await?;
    Ok(id)
}

/// The live session with this cookie value in shop `shop_id`, if any. Sessions of another shop do not
/// count here, even for the same email: each shop's portal is separate.
pub async fn find<C: ConnectionTrait>(
    conn: &C,
    cookie: &str,
    shop_id: &ShopId,
    idle: Duration,
    now: DateTime<Utc>,
) -> Result<Option<session::Model>, DbErr> {
    let Some(id) = RawToken::parse(cookie) else { return Ok(None) };
    let idle = TimeDelta::from_std(idle).unwrap_or(TimeDelta::minutes(30));
    let found = session::Entity::find_by_id(id.hash()).one(conn).await?;
    Ok(found.filter(|s| {
        s.shop_id == shop_id.as_str()
            && s.expires_at > to_millis(now)
            && s.last_seen_at > to_millis(now - idle)
    }))
}

/// Records activity, at most once a minute.
pub async fn touch<C: ConnectionTrait>(
    conn: &C,
    session: &session::Model,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if session.last_seen_at > to_millis(now - TOUCH_EVERY) {
        return Ok(());
    }
    session::Entity::update_many()
        .col_expr(session::Column::LastSeenAt, Expr::value(to_millis(now)))
        .filter(session::Column::IdHash.eq(session.id_hash.as_str()))
        .exec(conn)
        .await?;
    Ok(())
}

/// Ends the session with this cookie value (log out, or a new login replacing it).
pub async fn end<C: ConnectionTrait>(conn: &C, cookie: &str) -> Result<(), DbErr> {
    if let Some(id) = RawToken::parse(cookie) {
        session::Entity::delete_by_id(id.hash()).exec(conn).await?;
    }
    Ok(())
}

/// Ends every session of an account (after a password reset).
pub async fn end_all<C: ConnectionTrait>(conn: &C, account_id: &str) -> Result<u64, DbErr> {
    let result =
        session::Entity::delete_many().filter(session::Column::AccountId.eq(account_id)).exec(conn).await?;
    Ok(result.rows_affected)
}

/// Deletes sessions that can no longer be used (housekeeping).
pub async fn purge_expired<C: ConnectionTrait>(
    conn: &C,
    idle: Duration,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let idle = TimeDelta::from_std(idle).unwrap_or(TimeDelta::minutes(30));
    let result = session::Entity::delete_many()
        .filter(
            sea_orm::Condition::any()
                .add(session::Column::ExpiresAt.lte(to_millis(now)))
                .add(session::Column::LastSeenAt.lte(to_millis(now - idle))),
        )
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}

/// Whose a live session is: the account, and the customer's profile when it still exists.
pub struct Holder {
    pub account: portal_account::Model,
    pub customer: Option<customer::Model>,
}

impl Accounts {
    /// The live session with this cookie value in the shop, if any.
    pub async fn find_session(
        &self,
        cookie: &str,
        shop_id: &ShopId,
    ) -> Result<Option<session::Model>, DbErr> {
        find(self.db.conn(), cookie, shop_id, self.settings.session_idle, self.clock.now()).await
    }

    /// Who holds a live session, recording the visit as activity; `None` when the account is gone.
    pub async fn visit(&self, active: &session::Model) -> Result<Option<Holder>, DbErr> {
        let conn = self.db.conn();
        let now = self.clock.now();
        let Some(account) = portal_account::Entity::find_by_id(active.account_id.as_str()).one(conn).await?
        else {
            return Ok(None);
        };
        let customer = customer::Entity::find_by_id((account.shop_id.clone(), account.customer_id.clone()))
            .one(conn)
            .await?;
        let touched = active.clone();
        self.db.write(move |txn| Box::pin(async move { touch(txn, &touched, now).await })).await?;
        Ok(Some(Holder { account, customer }))
    }

    /// Logs out: ends the session with this cookie value.
    pub async fn end_session(&self, cookie: &str) -> Result<(), DbErr> {
        let cookie = cookie.to_owned();
        self.db.write(move |txn| Box::pin(async move { end(txn, &cookie).await })).await
    }
}
