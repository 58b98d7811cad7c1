//! Shops, their customers, the webhook messages already answered, and the service's own keys.
//!
//! Later tables (portal accounts, invitations, tokens, sessions, the outbox) hang off
//! `customers (shop_id, id)` and `shops (id)`, so these keys are the host's own ids and never change.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Shops::Table)
                    .col(string_len(Shops::Id, 64).primary_key())
                    .col(text(Shops::Name))
                    .col(string_len(Shops::SubscriptionTier, 16))
                    .col(boolean(Shops::PortalActive))
                    .col(string_len(Shops::Timezone, 64))
                    .col(string_len(Shops::Locale, 35))
                    .col(text_null(Shops::Email))
                    .col(text_null(Shops::Phone))
                    .col(big_integer(Shops::Version))
                    .col(boolean(Shops::Installed))
                    // The event time of the latest install or uninstall, so a late retry of an
                    // older lifecycle event cannot undo a newer one.
                    .col(big_integer(Shops::LifecycleAt))
                    .col(big_integer_null(Shops::EraseDueAt))
                    .col(big_integer(Shops::CreatedAt))
                    .col(big_integer(Shops::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_shops_erase_due_at")
                    .table(Shops::Table)
                    .col(Shops::EraseDueAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Customers::Table)
                    .col(string_len(Customers::ShopId, 64))
                    .col(string_len(Customers::Id, 64))
                    .col(text_null(Customers::FirstName))
                    .col(text_null(Customers::LastName))
                    .col(text_null(Customers::Email))
                    .col(string_len_null(Customers::Mobile, 16))
                    .col(big_integer(Customers::Version))
                    // A deleted customer stays as a tombstone without personal data, so an older
                    // update arriving late cannot bring it back.
                    .col(big_integer_null(Customers::DeletedAt))
                    .col(big_integer(Customers::UpdatedAt))
                    .primary_key(Index::create().col(Customers::ShopId).col(Customers::Id))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_customers_shop")
                            .from(Customers::Table, Customers::ShopId)
                            .to(Shops::Table, Shops::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(WebhookMessages::Table)
                    .col(string_len(WebhookMessages::Id, 64).primary_key())
                    .col(string_len(WebhookMessages::Endpoint, 64))
                    .col(string_len(WebhookMessages::EventType, 64))
                    .col(string_len_null(WebhookMessages::ShopId, 64))
                    .col(string_len_null(WebhookMessages::CustomerId, 64))
                    // NULL while the message is being processed; the stored answer once committed.
                    .col(small_integer_null(WebhookMessages::Status))
                    .col(text_null(WebhookMessages::ResponseBody))
                    .col(big_integer(WebhookMessages::ReceivedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_messages_received_at")
                    .table(WebhookMessages::Table)
                    .col(WebhookMessages::ReceivedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_messages_customer")
                    .table(WebhookMessages::Table)
                    .col(WebhookMessages::ShopId)
                    .col(WebhookMessages::CustomerId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ServiceKeys::Table)
                    .col(string_len(ServiceKeys::Name, 64).primary_key())
                    .col(text(ServiceKeys::KeyMaterial))
                    .col(big_integer(ServiceKeys::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        // All or nothing on SQLite too, so a failed start never leaves half a schema.
        Some(true)
    }
}

#[derive(DeriveIden)]
enum Shops {
    Table,
    Id,
    Name,
    SubscriptionTier,
    PortalActive,
    Timezone,
    Locale,
    Email,
    Phone,
    Version,
    Installed,
    LifecycleAt,
    EraseDueAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Customers {
    Table,
    ShopId,
    Id,
    FirstName,
    LastName,
    Email,
    Mobile,
    Version,
    DeletedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookMessages {
    Table,
    Id,
    Endpoint,
    EventType,
    ShopId,
    CustomerId,
    Status,
    ResponseBody,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum ServiceKeys {
    Table,
    Name,
    KeyMaterial,
    CreatedAt,
}
