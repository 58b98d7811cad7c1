//! The database schema of portal-invites, one migration per file, shared by SQLite and PostgreSQL.
//!
//! Timestamps are `BIGINT` milliseconds since the Unix epoch: they compare as integers on both
//! databases, with no time-zone or text-format surprises.

pub use sea_orm_migration::{MigrationStatus, prelude::*};

mod m20261123_000001_foundation;
mod m20261123_000002_invitations;
mod m20261123_000003_sessions;
mod m20261201_000004_outbox_claims;
mod m20261202_000005_identity;
mod m20261203_000006_access;
mod m20261204_000007_intake;

/// Applies the migrations in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_foundation::Migration),
            Box::new(m20261123_000002_invitations::Migration),
            Box::new(m20261123_000003_sessions::Migration),
            Box::new(m20261201_000004_outbox_claims::Migration),
            Box::new(m20261202_000005_identity::Migration),
            Box::new(m20261203_000006_access::Migration),
            Box::new(m20261204_000007_intake::Migration),
        ]
    }
}
