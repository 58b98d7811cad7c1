//! A customer of a shop, as the host last described them (or a tombstone once deleted).

use sea_orm::entity::prelude::*;

/// One row of `customers`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "customers")]
pub struct Model {
    /// The shop the customer belongs to.
    #[sea_orm(primary_key, auto_increment = false)]
    pub shop_id: String,
    /// The host's customer id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Personal data: erased on deletion.
    pub first_name: Option<String>,
    /// Personal data: erased on deletion.
    pub last_name: Option<String>,
    /// Personal data (and the future portal username): erased on deletion.
    pub email: Option<String>,
    /// Personal data, E.164: erased on deletion.
    pub mobile: Option<String>,
    /// The host's snapshot version; older snapshots are ignored.
    pub version: i64,
    /// Set when the host deleted the customer; the row is then a tombstone.
    pub deleted_at: Option<i64>,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
