//! Outbox claims and sealed links.
//!
//! `claim_token` names the one claim that holds a row's lease: a sender whose lease ran out and was
//! claimed again can no longer record a result over the new claim's. `sealed_token` keeps the link's
//! token, encrypted with a service key, while the message is unfinished, so that every attempt (after
//! a timeout, a crash or a lost lease) sends the same link; it is wiped when the message is finished.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .add_column(string_len_null(Outbox::ClaimToken, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter().table(Outbox::Table).add_column(text_null(Outbox::SealedToken)).to_owned(),
            )
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    ClaimToken,
    SealedToken,
}
