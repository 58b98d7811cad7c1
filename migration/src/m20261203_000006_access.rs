//! What staff see of a customer's portal access (contract §9) and SMS delivery receipts (§10).
//!
//! - `outbox.provider_ref`: the gateway's id of an accepted SMS (Twilio's `MessageSid`), for its
//!   status reports; `report_status` / `report_error` / `reported_at`: the furthest state reported
//!   so far (a final one never reverts); `looked_up_at`: when a message still without a final state
//!   was looked up through the gateway's API (once).
//! - `sms_reports`: every verified status report of a known message, as received.
//! - `invitations.requested_by_name`: the staff member's name as the host gave it, for the status.
//! - `portal_accounts.last_login_at`: the customer's last successful login.
//! - `audit_events`: the shop's append-only audit trail; `id` orders events recorded in one
//!   millisecond. `detail` is a small JSON object (channel, failure class), never a secret.
//! - `staff_acts`: the answer each portal-access submission got, by interaction, so a resubmitted
//!   dialog (a new message, the same `interaction_id`) gets it again instead of acting twice.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            string_len_null(Outbox::ProviderRef, 64),
            string_len_null(Outbox::ReportStatus, 16),
            string_len_null(Outbox::ReportError, 16),
            big_integer_null(Outbox::ReportedAt),
            big_integer_null(Outbox::LookedUpAt),
        ] {
            manager.alter_table(Table::alter().table(Outbox::Table).add_column(column).to_owned()).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_provider_ref")
                    .table(Outbox::Table)
                    .col(Outbox::ProviderRef)
                    .to_owned(),
            )
            .await?;
        // The day-later look-up reads SMS accepted within a window of days: by channel and time.
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_channel_sent_at")
                    .table(Outbox::Table)
                    .col(Outbox::Channel)
                    .col(Outbox::SentAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Invitations::Table)
                    .add_column(string_len_null(Invitations::RequestedByName, 200))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(PortalAccounts::Table)
                    .add_column(big_integer_null(PortalAccounts::LastLoginAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SmsReports::Table)
                    .col(string_len(SmsReports::Id, 40).primary_key())
                    .col(string_len(SmsReports::OutboxId, 40))
                    .col(string_len(SmsReports::ShopId, 64))
                    .col(string_len(SmsReports::MessageSid, 64))
                    .col(string_len(SmsReports::Status, 16))
                    .col(string_len_null(SmsReports::ErrorCode, 16))
                    .col(big_integer(SmsReports::ReceivedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sms_reports_outbox")
                    .table(SmsReports::Table)
                    .col(SmsReports::OutboxId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(StaffActs::Table)
                    .col(string_len(StaffActs::ShopId, 64))
                    .col(string_len(StaffActs::InteractionId, 64))
                    .col(string_len(StaffActs::CustomerId, 64))
                    .col(text(StaffActs::Answer))
                    .col(big_integer(StaffActs::CreatedAt))
                    .primary_key(Index::create().col(StaffActs::ShopId).col(StaffActs::InteractionId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_staff_acts_created_at")
                    .table(StaffActs::Table)
                    .col(StaffActs::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(big_integer(AuditEvents::Id).auto_increment().primary_key())
                    .col(string_len(AuditEvents::ShopId, 64))
                    .col(string_len(AuditEvents::CustomerId, 64))
                    .col(string_len(AuditEvents::Event, 32))
                    .col(big_integer(AuditEvents::At))
                    .col(string_len_null(AuditEvents::ById, 64))
                    .col(string_len_null(AuditEvents::ByName, 200))
                    .col(text_null(AuditEvents::Detail))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_customer")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::ShopId)
                    .col(AuditEvents::CustomerId)
                    .col(AuditEvents::At)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_shop_at")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::ShopId)
                    .col(AuditEvents::At)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_at")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::At)
                    .to_owned(),
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
    Channel,
    SentAt,
    ProviderRef,
    ReportStatus,
    ReportError,
    ReportedAt,
    LookedUpAt,
}

#[derive(DeriveIden)]
enum Invitations {
    Table,
    RequestedByName,
}

#[derive(DeriveIden)]
enum PortalAccounts {
    Table,
    LastLoginAt,
}

#[derive(DeriveIden)]
enum SmsReports {
    Table,
    Id,
    OutboxId,
    ShopId,
    MessageSid,
    Status,
    ErrorCode,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum StaffActs {
    Table,
    ShopId,
    InteractionId,
    CustomerId,
    Answer,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    ShopId,
    CustomerId,
    Event,
    At,
    ById,
    ByName,
    Detail,
}
