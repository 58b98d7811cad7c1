//! Throttling of guesses and floods: after a few attempts in a row, each further one must wait, twice
//! as long each time, up to a cap; an account that collects [`STREAK_LIMIT`] failures in a row
//! waits a day (NIST SP 800-63B allows at most 100 consecutive failures).
//!
//! An attempt is reserved before any work is done for it: one write counts it as a failure on each
//! of its keys, or refuses it when any key must wait, and a success afterwards gives the count back.
//! Checking and counting in separate steps let a burst that arrived together after a wait be judged
//! in full; reserved, only the first of a burst is judged. On PostgreSQL the rows are locked
//! (`SELECT … FOR UPDATE`, in key order so two attempts never wait on each other); on SQLite every
//! write goes through the single writer, one transaction at a time.
//!
//! Counters are kept by a keyed hash (HMAC-SHA256 with a key derived from the service's cookie key)
//! of what they count: the typed username (per account, whether or not it exists, so the throttle
//! tells nothing about accounts), a device cookie, or a client's network. A bare hash of an email
//! could be reversed by hashing a list of addresses; this one cannot without the key.

use std::net::{IpAddr, Ipv6Addr};

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect, Set,
    sea_query::{Expr, OnConflict},
};
use sha2::Sha256;

use crate::{
    clock::{from_millis, to_millis},
    entities::login_throttle,
};

/// How attempts turn into waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// What is counted, as the security log names it.
    pub name: &'static str,
    /// Attempts allowed before any wait.
    pub free: i32,
    /// The longest wait, short of the day-long one.
    pub cap: TimeDelta,
    /// After this many failures in a row, wait [`LOCKOUT`].
    pub streak_limit: Option<i32>,
    /// Whether a success ends the streak (it proves the owner of what is counted) or only gives its
    /// own attempt back (one client of a shared address proves nothing about the others).
    pub success_ends_streak: bool,
}

/// Failures in a row on one account (or one device of it) before it waits [`LOCKOUT`].
pub const STREAK_LIMIT: i32 = 100;
/// The wait after [`STREAK_LIMIT`] failures in a row.
pub const LOCKOUT: TimeDelta = TimeDelta::hours(24);

/// Per typed username, from browsers that have not logged in to it before: 5 free failures, then
/// 1 s, 2 s, 4 s… up to 5 minutes, and a day after 100 in a row.
pub const PER_ACCOUNT: Policy = Policy {
    name: "account",
    free: 5,
    cap: TimeDelta::minutes(5),
    streak_limit: Some(STREAK_LIMIT),
    success_ends_streak: true,
};
/// Per browser that has logged in to the account before (its device cookie): the same waits, on a
/// count of its own, so failures elsewhere never block it.
pub const PER_DEVICE: Policy = Policy { name: "device", ..PER_ACCOUNT };
/// Per client network, across accounts: 30 free failures, then up to 15 minutes.
pub const PER_ADDRESS: Policy = Policy {
    name: "address",
    free: 30,
    cap: TimeDelta::minutes(15),
    streak_limit: None,
    success_ends_streak: false,
};
/// Reset requests per client network, whatever the address asked for: 5 free, then up to 15
/// minutes, so one client cannot have every customer of a shop sent reset emails.
pub const FORGOT_PER_ADDRESS: Policy = Policy { name: "forgot_address", free: 5, ..PER_ADDRESS };
/// A streak is forgotten after an hour without an attempt.
pub const FORGET_AFTER: TimeDelta = TimeDelta::hours(1);

/// The key the counters' names are made with: HMAC-SHA256 of `"throttle"` under the service's
/// cookie key, so it is shared by every instance and used for nothing else. Derived once, at start.
pub struct Keys([u8; 32]);

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(redacted)")
    }
}

impl Keys {
    /// Derives the key from the service key.
    pub fn derive(service_key: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(service_key).expect("HMAC takes any key");
        mac.update(b"throttle");
        Self(mac.finalize().into_bytes().into())
    }

    /// The counter for a typed username in a shop.
    pub fn account(&self, shop_id: &str, username: &str) -> String {
        self.name(&["account", shop_id, username])
    }

    /// The counter for one browser's attempts on a username in a shop.
    pub fn device(&self, shop_id: &str, username: &str, device: &str) -> String {
        self.name(&["device", shop_id, username, device])
    }

    /// The counter for failed logins from a client network.
    pub fn login_address(&self, network: IpNet) -> String {
        self.name(&["address", &network.to_string()])
    }

    /// The counter for reset requests from a client network.
    pub fn forgot_address(&self, network: IpNet) -> String {
        self.name(&["forgot", &network.to_string()])
    }

    fn name(&self, parts: &[&str]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key");
        // Each part with its length, so no two lists of parts read alike.
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The network an address limit counts `ip` in. An IPv6 client usually holds a whole /64 (every
/// address in it is theirs to use), so it counts as one client; an IPv4 address, and an IPv4 address
/// written as IPv6 (`::ffff:203.0.113.9`), counts alone.
pub fn network(ip: IpAddr) -> IpNet {
    match ip {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpNet::V4(Ipv4Net::from(v4)),
            None => {
                let prefix = Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX));
                IpNet::V6(Ipv6Net::new(prefix, 64).expect("64 is a valid IPv6 prefix length"))
            }
        },
    }
}

/// The wait after `failures` attempts in a row.
pub fn wait_after(failures: i32, policy: Policy) -> TimeDelta {
    if policy.streak_limit.is_some_and(|limit| failures >= limit) {
        return LOCKOUT;
    }
    if failures < policy.free {
        return TimeDelta::zero();
    }
    let exponent = std::cmp::min(u32::try_from(failures - policy.free).unwrap_or(0), 30);
    TimeDelta::seconds(1i64 << exponent).min(policy.cap)
}

/// One counter an attempt is counted on.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The counter's name (from [`Keys`]).
    pub key: String,
    pub policy: Policy,
}

/// An attempt counted as a failure on each of its keys, until it is settled.
#[must_use = "settle it with `succeeded` or `abandoned`, unless it is meant to stay counted"]
#[derive(Debug)]
pub struct Reservation {
    held: Vec<Held>,
}

impl Reservation {
    /// Whether this attempt is the one that starts the waits on the counter of `policy`: the count
    /// before it needed no wait, its own does. Once per streak (a success, a reset or an hour without
    /// attempts ends one), and only if the attempt then fails: a success clears the counter.
    pub fn began_slowing(&self, policy: Policy) -> bool {
        self.held.iter().any(|held| {
            held.policy == policy
                && wait_after(held.counted - 1, policy).is_zero()
                && !wait_after(held.counted, policy).is_zero()
        })
    }
}

#[derive(Debug)]
struct Held {
    policy: Policy,
    /// The counter as it was before this attempt.
    before: login_throttle::Model,
    /// The count this attempt set.
    counted: i32,
}

/// An attempt that must wait: nothing was counted.
#[derive(Debug, Clone, Copy)]
pub struct Blocked {
    /// When the longest wait ends.
    pub until: DateTime<Utc>,
    /// The counter that imposes it.
    pub policy: Policy,
}

impl Blocked {
    /// How long the attempt must wait from `now` (for `Retry-After`).
    pub fn retry_after(&self, now: DateTime<Utc>) -> std::time::Duration {
        (self.until - now).to_std().unwrap_or_default()
    }
}

/// Reserves an attempt: counts it as a failure on every key and sets each key's next wait, or, if
/// any key must still wait, counts nothing and says until when. Run it in a write transaction
/// (PostgreSQL locks the rows until the commit); when blocked, rolling back leaves no trace.
pub async fn reserve<C: ConnectionTrait>(
    conn: &C,
    attempts: &[Attempt],
    now: DateTime<Utc>,
) -> Result<Result<Reservation, Blocked>, DbErr> {
    let mut ordered: Vec<&Attempt> = attempts.iter().collect();
    ordered.sort_by(|a, b| a.key.cmp(&b.key));
    let mut rows = Vec::with_capacity(ordered.len());
    for attempt in ordered {
        rows.push((attempt.policy, locked_row(conn, &attempt.key).await?));
    }
    let longest = rows
        .iter()
        .filter(|(_, row)| row.blocked_until > to_millis(now))
        .max_by_key(|(_, row)| row.blocked_until);
    if let Some((policy, row)) = longest {
        return Ok(Err(Blocked { until: from_millis(row.blocked_until), policy: *policy }));
    }
    let mut held = Vec::with_capacity(rows.len());
    for (policy, before) in rows {
        let counted = if before.last_failure_at < to_millis(now - FORGET_AFTER) {
            1
        } else {
            before.failures.saturating_add(1)
        };
        store(
            conn,
            &before.key,
            counted,
            to_millis(now),
            to_millis(now.checked_add_signed(wait_after(counted, policy)).unwrap_or(now)),
        )
        .await?;
        held.push(Held { policy, before, counted });
    }
    Ok(Ok(Reservation { held }))
}

/// The attempt succeeded: counters of what it proved it owns are cleared, and the others get this
/// attempt back.
pub async fn succeeded<C: ConnectionTrait>(conn: &C, reservation: Reservation) -> Result<(), DbErr> {
    for held in reservation.held {
        if held.policy.success_ends_streak {
            clear(conn, &held.before.key).await?;
        } else {
            give_back(conn, held).await?;
        }
    }
    Ok(())
}

/// The attempt was never judged (the service was too busy): every counter gets it back.
pub async fn abandoned<C: ConnectionTrait>(conn: &C, reservation: Reservation) -> Result<(), DbErr> {
    for held in reservation.held {
        give_back(conn, held).await?;
    }
    Ok(())
}

/// Takes one attempt off a counter: restores it as it was when nobody else counted meanwhile, and
/// only lowers the count when someone did (their waits stand).
async fn give_back<C: ConnectionTrait>(conn: &C, held: Held) -> Result<(), DbErr> {
    let Some(now) = find_locked(conn, &held.before.key).await? else { return Ok(()) };
    if now.failures == held.counted {
        let before = held.before;
        store(conn, &before.key, before.failures, before.last_failure_at, before.blocked_until).await
    } else {
        store(conn, &now.key, (now.failures - 1).max(0), now.last_failure_at, now.blocked_until).await
    }
}

/// The counter's row, created empty if missing, and locked on PostgreSQL until the commit. On
/// PostgreSQL the housekeeping may delete a stale row between the insert (which found it there and
/// did nothing) and the lock: then the row is created again, so the request never fails for it.
async fn locked_row<C: ConnectionTrait>(conn: &C, key: &str) -> Result<login_throttle::Model, DbErr> {
    for _ in 0..3 {
        let empty = login_throttle::ActiveModel {
            key: Set(key.to_owned()),
            failures: Set(0),
            last_failure_at: Set(0),
            blocked_until: Set(0),
        };
        login_throttle::Entity::insert(empty)
            .on_conflict(OnConflict::column(login_throttle::Column::Key).do_nothing().to_owned())
            .exec_without_returning(conn)
            .await?;
        if let Some(row) = find_locked(conn, key).await? {
            return Ok(row);
        }
    }
    Err(DbErr::RecordNotFound(format!("throttle counter {key} kept vanishing")))
}

async fn find_locked<C: ConnectionTrait>(
    conn: &C,
    key: &str,
) -> Result<Option<login_throttle::Model>, DbErr> {
    let mut select = login_throttle::Entity::find_by_id(key);
    if conn.get_database_backend() == DbBackend::Postgres {
        select = select.lock_exclusive();
    }
    select.one(conn).await
}

async fn store<C: ConnectionTrait>(
    conn: &C,
    key: &str,
    failures: i32,
    last_failure_at: i64,
    blocked_until: i64,
) -> Result<(), DbErr> {
    use login_throttle::Column as C;
    login_throttle::Entity::update_many()
        .col_expr(C::Failures, Expr::value(failures))
        .col_expr(C::LastFailureAt, Expr::value(last_failure_at))
        .col_expr(C::BlockedUntil, Expr::value(blocked_until))
        .filter(C::Key.eq(key))
        .exec(conn)
        .await?;
    Ok(())
}

/// Whether failures counted on `key` make the next attempt wait (a settled attempt may have given its
/// count back).
pub async fn slows_down<C: ConnectionTrait>(conn: &C, key: &str, policy: Policy) -> Result<bool, DbErr> {
    let row = find_locked(conn, key).await?;
    Ok(row.is_some_and(|row| !wait_after(row.failures, policy).is_zero()))
}

/// Deletes counters whose streak is over and whose wait has passed (housekeeping).
pub async fn purge_stale<C: ConnectionTrait>(conn: &C, now: DateTime<Utc>) -> Result<u64, DbErr> {
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
        assert_eq!(wait_after(99, PER_ACCOUNT), TimeDelta::minutes(5));
        assert_eq!(wait_after(1_000, PER_ADDRESS), TimeDelta::minutes(15));
        assert_eq!(wait_after(4, FORGOT_PER_ADDRESS), TimeDelta::zero());
        assert_eq!(wait_after(5, FORGOT_PER_ADDRESS), TimeDelta::seconds(1));
        assert_eq!(wait_after(1_000, FORGOT_PER_ADDRESS), TimeDelta::minutes(15));
    }

    #[test]
    fn an_account_waits_a_day_after_a_hundred_failures_in_a_row() {
        assert_eq!(wait_after(STREAK_LIMIT, PER_ACCOUNT), TimeDelta::hours(24));
        assert_eq!(wait_after(STREAK_LIMIT, PER_DEVICE), TimeDelta::hours(24));
        assert_eq!(wait_after(STREAK_LIMIT, PER_ADDRESS), TimeDelta::minutes(15), "addresses are shared");
    }

    #[test]
    fn keys_do_not_reveal_what_they_count_without_the_service_key() {
        let keys = Keys::derive(&[7u8; 64]);
        let key = keys.account("shop_1", "jana@example.com");
        assert_eq!(key.len(), 64);
        assert!(!key.contains("jana"));
        assert_ne!(key, keys.account("shop_2", "jana@example.com"));
        assert_ne!(key, Keys::derive(&[8u8; 64]).account("shop_1", "jana@example.com"));
        // Not the bare SHA-256 of the same text, which anyone could compute from a list of emails.
        use sha2::Digest;
        let bare: String =
            Sha256::digest(b"account|shop_1|jana@example.com").iter().map(|b| format!("{b:02x}")).collect();
        assert_ne!(key, bare);
        // Distinct purposes never share a counter.
        let net: IpNet = "203.0.113.9/32".parse().unwrap();
        assert_ne!(keys.login_address(net), keys.forgot_address(net));
        assert_ne!(keys.device("shop_1", "a|b", "c"), keys.device("shop_1", "a", "b|c"));
    }

    fn reserved(policy: Policy, counted: i32) -> Reservation {
        let before = login_throttle::Model {
            key: "k".into(),
            failures: counted - 1,
            last_failure_at: 0,
            blocked_until: 0,
        };
        Reservation { held: vec![Held { policy, before, counted }] }
    }

    #[test]
    fn only_the_attempt_that_brings_the_first_wait_begins_the_slow_down() {
        let began: Vec<i32> =
            (1..=STREAK_LIMIT + 1).filter(|&n| reserved(PER_ACCOUNT, n).began_slowing(PER_ACCOUNT)).collect();
        assert_eq!(began, [PER_ACCOUNT.free], "the fifth failure in a row, and no later one");
        // A counter of another policy says nothing about the account's.
        assert!(!reserved(PER_DEVICE, PER_DEVICE.free).began_slowing(PER_ACCOUNT));
        assert!(!reserved(PER_ADDRESS, PER_ADDRESS.free).began_slowing(PER_ACCOUNT));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_ipv6_client_counts_per_64_and_a_mapped_ipv4_as_ipv4() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(network(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")), net("2001:db8:1:2::/64"));
        assert_eq!(network(ip("2001:db8:1:2::1")), network(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(network(ip("2001:db8:1:2::1")), network(ip("2001:db8:1:3::1")));
        assert_eq!(network(ip("203.0.113.9")), net("203.0.113.9/32"));
        assert_eq!(network(ip("::ffff:203.0.113.9")), network(ip("203.0.113.9")));
        assert_ne!(network(ip("203.0.113.9")), network(ip("203.0.113.10")));
    }
}
