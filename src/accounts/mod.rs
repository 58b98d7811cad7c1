//! The customer accounts' security rules, in one place: logging in (throttled, hashed off the async
//! threads, rehashed when the hashing parameters change), setting a password with a set-up or reset
//! link, reset links (asking for one without telling who has an account, and, when the sender takes
//! the request, which account gets one, the hourly cap and where it goes: [`reset`]), and sessions.
//! Only this module writes a password hash.
//!
//! It knows nothing of HTTP. The portal parses a request, calls one function here and renders what
//! it returns; cookies, CSRF tokens and pages stay the portal's, and an invitation's links are
//! retired through `invitations`.

pub mod hasher;
mod links;
mod login;
pub mod passwords;
pub mod reset;
pub mod sessions;
pub mod throttle;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, sea_query::Expr};

use crate::{
    clock::{Clock, to_millis},
    config::PortalSettings,
    db::Database,
    entities::portal_account,
};
use hasher::Hasher;

pub use links::{Link, PasswordChange, Presented};
pub use login::{Login, LoginAttempt, Username};

/// What the account rules work with: the database, the time, the bounded hasher, the throttle's key
/// and the portal's settings (password length, session lifetimes).
pub struct Accounts {
    db: Database,
    clock: Clock,
    hasher: Hasher,
    throttle_keys: throttle::Keys,
    settings: PortalSettings,
}

impl Accounts {
    /// Starts the hashing threads; the throttle's key is derived from the service key.
    pub fn new(db: Database, clock: Clock, settings: PortalSettings, service_key: &[u8]) -> Self {
        Self {
            hasher: Hasher::new(settings.hashing_limit),
            throttle_keys: throttle::Keys::derive(service_key),
            db,
            clock,
            settings,
        }
    }
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").field("hasher", &self.hasher).finish_non_exhaustive()
    }
}

/// Why an account rule refused, or could not finish.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Password hashing is at capacity: retry in a moment.
    #[error("password hashing is at capacity")]
    Busy,
    /// Too many failed logins on what this attempt is counted on.
    #[error("too many failed logins")]
    LoginThrottled { retry_after: Duration },
    /// Too many reset requests from this client network.
    #[error("too many reset requests")]
    ResetThrottled { retry_after: Duration },
    /// A set-up or reset link that is unknown, spent, or was used by another submission a moment
    /// earlier.
    #[error("the link is not valid")]
    LinkInvalid,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<hasher::Busy> for AccountError {
    fn from(_: hasher::Busy) -> Self {
        Self::Busy
    }
}

/// Why a password hash is written.
#[derive(Clone, Copy)]
enum HashChange {
    /// The customer chose a new password.
    NewPassword,
    /// The same password, hashed again with today's parameters.
    Rehash,
}

/// Stores a password hash: the one place a hash is written.
async fn write_password_hash<C: ConnectionTrait>(
    conn: &C,
    account_id: &str,
    hash: String,
    change: HashChange,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let mut update = portal_account::Entity::update_many()
        .col_expr(portal_account::Column::PasswordHash, Expr::value(hash));
    if matches!(change, HashChange::NewPassword) {
        update = update.col_expr(portal_account::Column::PasswordChangedAt, Expr::value(to_millis(now)));
    }
    update
        .col_expr(portal_account::Column::UpdatedAt, Expr::value(to_millis(now)))
        .filter(portal_account::Column::Id.eq(account_id))
        .exec(conn)
        .await?;
    Ok(())
}
