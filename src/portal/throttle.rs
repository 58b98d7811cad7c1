//! Login throttling: after a few failures in a row, each further attempt must wait, twice as long
//! each time, up to a cap. Never a permanent lock-out, which an attacker could impose on a customer.
//!
//! Counters are kept by a hash of the typed username (per account, whether or not it exists, so the
//! throttle tells nothing about accounts) and of the client's address.

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ConnectionTrait, DbErr, EntityTrait, Set,
    sea_query::{Alias, Expr, ExprTrait, OnConflict},
};
use sha2::{Digest, Sha256};

use crate::{
    clock::{from_millis, to_millis},
    entities::login_throttle,
};

/// How failures turn into waits.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures allowed before any wait.
    pub free: i32,
    /// The longest wait.
    pub cap: TimeDelta,
}

/// Per username: 5 free failures, then 1 s, 2 s, 4 s… up to 5 minutes.
pub const PER_ACCOUNT: Policy = Policy { free: 5, cap: TimeDelta::minutes(5) };
/// Per client address (many accounts): 30 free failures, then up to 15 minutes.
pub const PER_ADDRESS: Policy = Policy { free: 30, cap: TimeDelta::minutes(15) };
/// A streak of failures is forgotten after an hour without one.
pub const FORGET_AFTER: TimeDelta = TimeDelta::hours(1);

/// The throttle key for a username in a shop.
pub fn account_key(shop_id: &str, username: &str) -> String {
    hash(&format!("account|{shop_id}|{username}"))
}

/// The throttle key for a client address.
pub fn address_key(ip: IpAddr) -> String {
    hash(&format!("address|{ip}"))
}

fn hash(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The wait after `failures` failures in a row.
pub fn wait_after(failures: i32, policy: Policy) -> TimeDelta {
    if failures < policy.free {
        return TimeDelta::zero();
    }
    let exponent = std::cmp::min(u32::try_from(failures - policy.free).unwrap_or(0), 30);
    TimeDelta::seconds(1i64 << exponent).min(policy.cap)
}

/// Until when attempts on `key` must wait, if they must.
pub async fn blocked_until<C: ConnectionTrait>(
    conn: &C,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    let row = login_throttle::Entity::find_by_id(key).one(conn).await?;
    Ok(row.map(|r| from_millis(r.blocked_until)).filter(|until| *until > now))
}

/// Counts a failure on `key` and sets its next wait.
pub async fn record_failure<C: ConnectionTrait>(
    conn: &C,
    key: &str,
    policy: Policy,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use login_throttle::Column as C;
    let row = login_throttle::ActiveModel {
        key: Set(key.to_owned()),
        failures: Set(1),
        last_failure_at: Set(to_millis(now)),
        blocked_until: Set(to_millis(now + wait_after(1, policy))),
    };
    let stored = |c: C| Expr::col((login_throttle::Entity, c));
    // One statement, so concurrent failures each count: a streak older than an hour starts again at 1.
    let failures = Expr::case(stored(C::LastFailureAt).lt(to_millis(now - FORGET_AFTER)), Expr::value(1))
        .finally(stored(C::Failures).add(1));
    login_throttle::Entity::insert(row)
        .on_conflict(
            OnConflict::column(C::Key)
                .value(C::Failures, failures)
                .value(C::LastFailureAt, Expr::col((Alias::new("excluded"), C::LastFailureAt)))
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    if let Some(row) = login_throttle::Entity::find_by_id(key).one(conn).await? {
        login_throttle::Entity::update(login_throttle::ActiveModel {
            key: Set(row.key),
            blocked_until: Set(to_millis(now + wait_after(row.failures, policy))),
            ..Default::default()
        })
        .exec(conn)
        .await?;
    }
    Ok(())
}

/// Deletes counters whose streak is over and whose wait has passed (housekeeping).
pub async fn purge_stale<C: ConnectionTrait>(conn: &C, now: DateTime<Utc>) -> Result<u64, DbErr> {
    use sea_orm::{ColumnTrait, QueryFilter};
    let result = login_throttle::Entity::delete_many()
        .filter(login_throttle::Column::LastFailureAt.lt(to_millis(now - FORGET_AFTER)))
        .filter(login_throttle::Column::BlockedUntil.lt(to_millis(now)))
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}

/// Forgets the failures on `key` (after a successful login or a password reset).
pub async fn clear<C: ConnectionTrait>(conn: &C, key: &str) -> Result<(), DbErr> {
    login_throttle::Entity::delete_by_id(key).exec(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_after_the_free_failures_and_stop_at_the_cap() {
        let waits: Vec<i64> = (1..=16).map(|n| wait_after(n, PER_ACCOUNT).num_seconds()).collect();
        assert_eq!(&waits[..4], &[0, 0, 0, 0]);
        assert_eq!(&waits[4..10], &[1, 2, 4, 8, 16, 32]);
        assert!(waits.iter().all(|w| *w <= 300));
        assert_eq!(wait_after(1_000, PER_ACCOUNT), TimeDelta::minutes(5));
        assert_eq!(wait_after(1_000, PER_ADDRESS), TimeDelta::minutes(15));
    }

    #[test]
    fn keys_do_not_reveal_what_they_count() {
        let key = account_key("shop_1", "jana@example.com");
        assert_eq!(key.len(), 64);
        assert!(!key.contains("jana"));
        assert_ne!(key, account_key("shop_2", "jana@example.com"));
    }
}
