//! Failed-login counters, by a hash of a username or a client address.

use sea_orm::entity::prelude::*;

/// One row of `login_throttles`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "login_throttles")]
pub struct Model {
    /// SHA-256 of what is throttled, hex.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Failures in a row.
    pub failures: i32,
    /// The latest failure.
    pub last_failure_at: i64,
    /// No attempt is checked before then.
    pub blocked_until: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
