//! One event of a shop's audit trail: what happened to a customer's portal access, and which staff
//! member did it. Never a token, a password or an address.

use sea_orm::entity::prelude::*;

/// One row of `audit_events`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    /// Orders events recorded in the same millisecond.
    #[sea_orm(primary_key)]
    pub id: i64,
    pub shop_id: String,
    /// The host's customer id.
    pub customer_id: String,
    /// `invited`, `delivered`, `delivery_failed`, ... (see `audit::Event`).
    pub event: String,
    pub at: i64,
    /// The staff member's host user id, for staff acts.
    pub by_id: Option<String>,
    /// Their name, as the host gave it.
    pub by_name: Option<String>,
    /// A small JSON object: the channel, a failure's class.
    pub detail: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
