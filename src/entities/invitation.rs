//! An invitation to a customer to set up their portal login.

use sea_orm::entity::prelude::*;

/// One row of `invitations`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invitations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub shop_id: String,
    pub customer_id: String,
    /// The account it sets up.
    pub account_id: String,
    /// `email` or `sms`.
    pub channel: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    /// The host's interaction that asked for it.
    pub interaction_id: Option<String>,
    /// The host user id of the staff member who sent it.
    pub requested_by: Option<String>,
    /// Their name, as the host gave it.
    pub requested_by_name: Option<String>,
    /// The JSON answer given to the submission.
    pub answer: Option<String>,
    /// Why delivery failed for good.
    pub failure: Option<String>,
    pub created_at: i64,
    /// Accepted by the mail server or SMS gateway.
    pub sent_at: Option<i64>,
    pub failed_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
