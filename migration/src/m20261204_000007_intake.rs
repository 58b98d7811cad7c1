//! Webhook intake at volume (issue 14).
//!
//! `idx_webhook_messages_customer` served erasure, which forgets the answers to star-menu messages
//! about a customer. Lifecycle messages are never forgotten that way (their answers are empty, and
//! their ids must keep stopping repeats), so they no longer name their customer, and the index holds
//! only the rows that do (`idx_webhook_messages_erasure`, a new name: on SQLite a pooled connection
//! may still see the old index's name in its snapshot): every webhook used to add an entry at a
//! random place in it, one more page written per event for nothing.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const PARTIAL: &str = "CREATE INDEX idx_webhook_messages_erasure ON webhook_messages (shop_id, customer_id) \
                       WHERE customer_id IS NOT NULL";
const FULL: &str = "CREATE INDEX idx_webhook_messages_customer ON webhook_messages (shop_id, customer_id)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX idx_webhook_messages_customer").await?;
        db.execute_unprepared(PARTIAL).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX idx_webhook_messages_erasure").await?;
        db.execute_unprepared(FULL).await?;
        Ok(())
    }
}
