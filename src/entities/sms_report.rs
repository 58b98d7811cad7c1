//! A verified status report from the SMS gateway about a message we sent (contract §10).

use sea_orm::entity::prelude::*;

/// One row of `sms_reports`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sms_reports")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The outbox row of the message it is about.
    pub outbox_id: String,
    pub shop_id: String,
    /// The gateway's `MessageSid`.
    pub message_sid: String,
    /// `MessageStatus` as reported (`sent`, `delivered`, `undelivered`, `failed`, ...).
    pub status: String,
    /// `ErrorCode`, when there was one.
    pub error_code: Option<String>,
    pub received_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
