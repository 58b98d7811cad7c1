//! Throttle counters (failed logins, reset requests), named by a keyed hash of a username, a device
//! cookie or a client network.

use sea_orm::entity::prelude::*;

/// One row of `login_throttles`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "login_throttles")]
pub struct Model {
    /// HMAC-SHA256 of what is counted under the service's throttle key, hex.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Attempts counted in a row (a login is counted before it is judged, and given back if it succeeds).
    pub failures: i32,
    /// The latest attempt counted.
    pub last_failure_at: i64,
    /// No attempt is checked before then.
    pub blocked_until: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
