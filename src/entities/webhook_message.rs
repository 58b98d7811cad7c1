//! A signed message from the host that was processed, with the answer it got (for de-duplication).

use sea_orm::entity::prelude::*;

/// One row of `webhook_messages`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_messages")]
pub struct Model {
    /// The `webhook-id` header.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Which route received it (`webhooks`, `actions/send-portal-invitation`).
    pub endpoint: String,
    /// The envelope's `type`.
    pub event_type: String,
    /// The shop it concerned, for erasure.
    pub shop_id: Option<String>,
    /// The customer it concerned, for erasure.
    pub customer_id: Option<String>,
    /// The HTTP status answered; NULL while processing.
    pub status: Option<i16>,
    /// The exact body answered.
    pub response_body: Option<String>,
    pub received_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
