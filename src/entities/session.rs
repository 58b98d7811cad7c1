//! A customer's logged-in session.

use sea_orm::entity::prelude::*;

/// One row of `sessions`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    /// SHA-256 of the id in the cookie, hex.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id_hash: String,
    pub account_id: String,
    /// Which shop's portal (sessions never cross shops).
    pub shop_id: String,
    pub created_at: i64,
    /// Last request (for the idle timeout).
    pub last_seen_at: i64,
    /// The absolute end.
    pub expires_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
