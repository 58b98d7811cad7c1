//! The answer a portal-access submission got, kept by interaction so that a resubmitted dialog gets
//! it again instead of acting twice.

use sea_orm::entity::prelude::*;

/// One row of `staff_acts`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "staff_acts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub shop_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub interaction_id: String,
    /// For erasure with the customer.
    pub customer_id: String,
    /// The JSON answer given.
    pub answer: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
