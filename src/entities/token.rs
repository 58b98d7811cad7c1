//! A one-time token (set-up or password reset), stored only as a hash.

use sea_orm::entity::prelude::*;

/// One row of `tokens`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The shop it is bound to.
    pub shop_id: String,
    /// The account it is bound to.
    pub account_id: String,
    /// `setup` or `reset`.
    pub purpose: String,
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// The invitation that sent it (set-up tokens).
    pub invitation_id: Option<String>,
    /// Not valid from then on.
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// Killed before use (address changed, delivery failed, superseded).
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
