//! Portal accounts, invitations, one-time tokens and the delivery outbox.
//!
//! The rule "one invitation per customer" lives here, as a partial unique index over the invitations
//! that did not fail; a failed invitation leaves room for a new one. Tokens are stored only as hashes.
//! Everything a customer owns hangs off `customers (shop_id, id)` with `ON DELETE CASCADE`, so erasing
//! a customer erases their account, invitations, tokens and undelivered messages with them.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PortalAccounts::Table)
                    .col(string_len(PortalAccounts::Id, 40).primary_key())
                    .col(string_len(PortalAccounts::ShopId, 64))
                    .col(string_len(PortalAccounts::CustomerId, 64))
                    // The customer's email, normalised (lower case): what they log in with.
                    .col(text(PortalAccounts::Username))
                    .col(text_null(PortalAccounts::PasswordHash))
                    .col(big_integer_null(PortalAccounts::PasswordChangedAt))
                    .col(big_integer(PortalAccounts::CreatedAt))
                    .col(big_integer(PortalAccounts::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_portal_accounts_customer")
                            .from_col(PortalAccounts::ShopId)
                            .from_col(PortalAccounts::CustomerId)
                            .to_tbl(Customers::Table)
                            .to_col(Customers::ShopId)
                            .to_col(Customers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        unique(
            manager,
            "uq_portal_accounts_customer",
            PortalAccounts::Table,
            [PortalAccounts::ShopId, PortalAccounts::CustomerId],
        )
        .await?;
        unique(
            manager,
            "uq_portal_accounts_username",
            PortalAccounts::Table,
            [PortalAccounts::ShopId, PortalAccounts::Username],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Invitations::Table)
                    .col(string_len(Invitations::Id, 40).primary_key())
                    .col(string_len(Invitations::ShopId, 64))
                    .col(string_len(Invitations::CustomerId, 64))
                    .col(string_len(Invitations::AccountId, 40))
                    // email | sms
                    .col(string_len(Invitations::Channel, 8))
                    // pending (not yet accepted for delivery) | sent | failed
                    .col(string_len(Invitations::Status, 16))
                    .col(string_len_null(Invitations::InteractionId, 64))
                    .col(string_len_null(Invitations::RequestedBy, 64))
                    // The answer given to the staff member's submission, to give it again.
                    .col(text_null(Invitations::Answer))
                    .col(text_null(Invitations::Failure))
                    .col(big_integer(Invitations::CreatedAt))
                    .col(big_integer_null(Invitations::SentAt))
                    .col(big_integer_null(Invitations::FailedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_invitations_account")
                            .from(Invitations::Table, Invitations::AccountId)
                            .to(PortalAccounts::Table, PortalAccounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Same syntax on SQLite and PostgreSQL; the schema builder has no partial indexes.
        let conn = manager.get_connection();
        conn.execute_unprepared(
            "CREATE UNIQUE INDEX uq_invitations_one_per_customer ON invitations (shop_id, customer_id) \
             WHERE status <> 'failed'",
        )
        .await?;
        conn.execute_unprepared(
            "CREATE UNIQUE INDEX uq_invitations_interaction ON invitations (shop_id, interaction_id) \
             WHERE status <> 'failed' AND interaction_id IS NOT NULL",
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Tokens::Table)
                    .col(string_len(Tokens::Id, 40).primary_key())
                    .col(string_len(Tokens::ShopId, 64))
                    .col(string_len(Tokens::AccountId, 40))
                    // setup | reset
                    .col(string_len(Tokens::Purpose, 16))
                    // SHA-256 of the token, hex. The token itself is never stored.
                    .col(string_len_uniq(Tokens::TokenHash, 64))
                    .col(string_len_null(Tokens::InvitationId, 40))
                    .col(big_integer(Tokens::ExpiresAt))
                    .col(big_integer_null(Tokens::UsedAt))
                    .col(big_integer_null(Tokens::RevokedAt))
                    .col(big_integer(Tokens::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tokens_account")
                            .from(Tokens::Table, Tokens::AccountId)
                            .to(PortalAccounts::Table, PortalAccounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        index(manager, "idx_tokens_account", Tokens::Table, [Tokens::AccountId, Tokens::Purpose]).await?;

        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .col(string_len(Outbox::Id, 40).primary_key())
                    .col(string_len(Outbox::ShopId, 64))
                    .col(string_len_null(Outbox::CustomerId, 64))
                    // invitation | password_reset | password_changed
                    .col(string_len(Outbox::Kind, 32))
                    .col(string_len(Outbox::Channel, 8))
                    // Where to send; cleared once the message is delivered or given up.
                    .col(text_null(Outbox::Recipient))
                    .col(string_len_null(Outbox::InvitationId, 40))
                    .col(string_len_null(Outbox::TokenId, 40))
                    // pending | sent | failed | cancelled
                    .col(string_len(Outbox::Status, 16))
                    .col(integer(Outbox::Attempts))
                    .col(big_integer(Outbox::NextAttemptAt))
                    .col(big_integer_null(Outbox::LeaseUntil))
                    .col(string_len_null(Outbox::LeaseOwner, 40))
                    .col(text_null(Outbox::LastError))
                    .col(big_integer(Outbox::CreatedAt))
                    .col(big_integer_null(Outbox::SentAt))
                    .to_owned(),
            )
            .await?;
        index(manager, "idx_outbox_due", Outbox::Table, [Outbox::Status, Outbox::NextAttemptAt]).await?;
        index(manager, "idx_outbox_customer", Outbox::Table, [Outbox::ShopId, Outbox::CustomerId]).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

async fn unique<T: IntoIden + 'static, C: IntoIden, const N: usize>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    cols: [C; N],
) -> Result<(), DbErr> {
    create_index(manager, name, table, cols, true).await
}

async fn index<T: IntoIden + 'static, C: IntoIden, const N: usize>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    cols: [C; N],
) -> Result<(), DbErr> {
    create_index(manager, name, table, cols, false).await
}

async fn create_index<T: IntoIden + 'static, C: IntoIden, const N: usize>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    cols: [C; N],
    is_unique: bool,
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table);
    if is_unique {
        index.unique();
    }
    for col in cols {
        index.col(col);
    }
    manager.create_index(index.to_owned()).await
}

#[derive(DeriveIden)]
enum Customers {
    Table,
    ShopId,
    Id,
}

#[derive(DeriveIden)]
enum PortalAccounts {
    Table,
    Id,
    ShopId,
    CustomerId,
    Username,
    PasswordHash,
    PasswordChangedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Invitations {
    Table,
    Id,
    ShopId,
    CustomerId,
    AccountId,
    Channel,
    Status,
    InteractionId,
    RequestedBy,
    Answer,
    Failure,
    CreatedAt,
    SentAt,
    FailedAt,
}

#[derive(DeriveIden)]
enum Tokens {
    Table,
    Id,
    ShopId,
    AccountId,
    Purpose,
    TokenHash,
    InvitationId,
    ExpiresAt,
    UsedAt,
    RevokedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    ShopId,
    CustomerId,
    Kind,
    Channel,
    Recipient,
    InvitationId,
    TokenId,
    Status,
    Attempts,
    NextAttemptAt,
    LeaseUntil,
    LeaseOwner,
    LastError,
    CreatedAt,
    SentAt,
}
