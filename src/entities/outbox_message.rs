//! A message waiting to be delivered (or a record that it was), by email or SMS.

use sea_orm::entity::prelude::*;

/// One row of `outbox`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub shop_id: String,
    /// The customer it is for.
    pub customer_id: Option<String>,
    /// `invitation`, `password_reset` or `password_changed`.
    pub kind: String,
    /// `email` or `sms`.
    pub channel: String,
    /// Address or number; cleared once delivered or given up.
    pub recipient: Option<String>,
    pub invitation_id: Option<String>,
    /// The token whose link it carries.
    pub token_id: Option<String>,
    /// `pending`, `sent`, `failed` or `cancelled`.
    pub status: String,
    pub attempts: i32,
    /// Not before then.
    pub next_attempt_at: i64,
    /// Claimed by a sender until then.
    pub lease_until: Option<i64>,
    /// Which instance holds the lease.
    pub lease_owner: Option<String>,
    /// The claim that holds the lease: only it may record the attempt's result.
    pub claim_token: Option<String>,
    /// The link's token, sealed with the outbox key, until the message is finished.
    pub sealed_token: Option<String>,
    /// The last failure, for operators.
    pub last_error: Option<String>,
    pub created_at: i64,
    /// Accepted by the server or gateway.
    pub sent_at: Option<i64>,
    /// The gateway's id of an accepted SMS (Twilio's `MessageSid`), which its status reports name.
    pub provider_ref: Option<String>,
    /// The furthest state the gateway reported (`sent`, `delivered`, `undelivered`, `failed`, ...).
    pub report_status: Option<String>,
    /// The gateway's error code with a failed report (`30003`, ...).
    pub report_error: Option<String>,
    /// When that report arrived.
    pub reported_at: Option<i64>,
    /// When a message still without a final report was looked up through the gateway's API.
    pub looked_up_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
