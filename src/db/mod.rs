//! The database: SQLite (embedded default) or PostgreSQL, opened with the settings each needs, and
//! the one way the service writes to it.
//!
//! SQLite gets WAL (readers never block the writer), `synchronous=FULL` (a commit survives a power
//! cut, which is what our `204` promises), foreign keys, a busy timeout and a pool of several
//! connections for reads. Writes go through [`Database::write`]: on SQLite to a single writer with a
//! connection of its own (so it never waits behind readers for one), which opens each transaction
//! with `BEGIN IMMEDIATE` (so a transaction that reads before it writes can never fail with
//! `SQLITE_BUSY` half-way) and commits concurrent transactions together. SQLite connections are not pinged when taken from the pool: a
//! file cannot hang up, and the ping was one more round trip to SQLite's thread per query.
//! PostgreSQL needs neither: its row locks and unique constraints keep several instances correct.

mod checkpoints;
pub mod keys;
mod writer;

use std::{future::Future, pin::Pin, str::FromStr, sync::Arc, time::Duration};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, SqlxPostgresConnector,
    SqlxSqliteConnector, Statement, TransactionTrait, sqlx,
};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::sync::Mutex;

use crate::config::DatabaseUrl;

/// Connections in the SQLite pool for reads: enough for concurrent reads, few enough to keep memory
/// small (each connection has its own page cache). The writer has one more of its own.
const SQLITE_READ_POOL_SIZE: u32 = 3;
/// Connections per instance to PostgreSQL.
const POSTGRES_POOL_SIZE: u32 = 10;
/// How long SQLite waits for another process's write lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Rows in one multi-row read or write. SQLite allows 32 766 bound values in one statement; this
/// stays well below for every table's width.
pub const ROWS_PER_STATEMENT: usize = 500;
/// The writer's page cache. Every webhook lands on random pages of the de-duplication index and the
/// customers table; SQLite's default (2 MiB) re-read most of them from the file in every batch.
const SQLITE_WRITER_CACHE_KIB: u64 = 32 * 1024;
/// WAL pages at which the writer checkpoints by itself (SQLite's default is 1 000). Normally a task
/// checkpoints long before (see `checkpoints.rs`); this is the backstop, the WAL size limit below in
/// SQLite's 4 KiB pages, so the WAL stays as bounded as before. (1 KiB pages, tried to write less per
/// random page, measured no faster: BENCHMARKS.md.)
const SQLITE_CHECKPOINT_PAGES: u64 = SQLITE_WAL_SIZE_LIMIT / 4096;
/// The WAL file is truncated back to this size after each checkpoint.
pub const SQLITE_WAL_SIZE_LIMIT: u64 = 16 * 1024 * 1024;
/// The key of the PostgreSQL advisory lock that serialises migrations between instances.
const MIGRATION_LOCK_KEY: i64 = 0x706f_7274_616c; // "portal"

/// A boxed future borrowing the transaction, as [`Database::write`] takes it.
pub type TxFuture<'c, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>;

/// The service's database handle. Cheap to clone.
#[derive(Clone)]
pub struct Database {
    conn: DatabaseConnection,
    /// The SQLite writer's own connection (closed with the rest); `None` on PostgreSQL.
    write_conn: Option<DatabaseConnection>,
    /// One writer at a time on SQLite; `None` on PostgreSQL.
    write_gate: Option<Arc<Mutex<()>>>,
    /// SQLite's single writer, committing concurrent transactions together; `None` on PostgreSQL.
    writer: Option<writer::GroupWriter>,
}

impl Database {
    /// Opens the database named by the URL, creating a SQLite file (and its folder) when missing.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, DbErr> {
        if url.is_sqlite() {
            let options = SqliteConnectOptions::from_str(url.expose())
                .map_err(|e| DbErr::Custom(format!("PORTAL_DATABASE_URL: {e}")))?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .pragma("journal_size_limit", SQLITE_WAL_SIZE_LIMIT.to_string())
                // A multi-row statement inside a transaction keeps a statement journal (to undo just
                // that statement); on a file that was a temporary file created, written and deleted
                // per batch of webhooks. In memory it is a buffer.
                .pragma("temp_store", "memory");
            if let Some(folder) = options.get_filename().parent()
                && !folder.as_os_str().is_empty()
            {
                std::fs::create_dir_all(folder).map_err(|e| {
                    DbErr::Custom(format!("cannot create the database folder {}: {e}", folder.display()))
                })?;
            }
            let pool = |size: u32, options: SqliteConnectOptions| {
                SqlitePoolOptions::new()
                    .max_connections(size)
                    .min_connections(1)
                    .test_before_acquire(false)
                    .connect_with(options)
            };
            let opened = |e: sqlx::Error| DbErr::Custom(format!("cannot open the SQLite database: {e}"));
            // The writer's connection first: it creates the file and switches it to WAL.
            let writer_options = options
                .clone()
                .pragma("cache_size", format!("-{}", SQLITE_WRITER_CACHE_KIB))
                .pragma("wal_autocheckpoint", SQLITE_CHECKPOINT_PAGES.to_string());
            let write_conn =
                SqlxSqliteConnector::from_sqlx_sqlite_pool(pool(1, writer_options).await.map_err(opened)?);
            let conn = SqlxSqliteConnector::from_sqlx_sqlite_pool(
                pool(SQLITE_READ_POOL_SIZE, options).await.map_err(opened)?,
            );
            let gate = Arc::new(Mutex::new(()));
            let bell = checkpoints::Bell::start(conn.clone());
            let writer = writer::GroupWriter::start(write_conn.clone(), gate.clone(), bell);
            Ok(Self { conn, write_conn: Some(write_conn), write_gate: Some(gate), writer: Some(writer) })
        } else {
            let options = PgConnectOptions::from_str(url.expose())
                .map_err(|e| DbErr::Custom(format!("PORTAL_DATABASE_URL: {e}")))?;
            let pool = PgPoolOptions::new()
                .max_connections(POSTGRES_POOL_SIZE)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .map_err(|e| DbErr::Custom(format!("cannot connect to PostgreSQL: {e}")))?;
            Ok(Self {
                conn: SqlxPostgresConnector::from_sqlx_postgres_pool(pool),
                write_conn: None,
                write_gate: None,
                writer: None,
            })
        }
    }

    /// The connection, for reads.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Which database this is.
    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Runs `work` in one write transaction: committed if it returns `Ok`, rolled back otherwise.
    /// Nothing is visible to anyone, and this does not return, before the commit. On SQLite the work
    /// goes to the single writer, which commits concurrent work together (see `writer.rs`).
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c DatabaseTransaction) -> TxFuture<'c, T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbErr> + Send + 'static,
    {
        if let Some(writer) = &self.writer {
            return writer.write(work).await;
        }
        let txn = self.conn.begin().await?;
        match work(&txn).await {
            Ok(value) => {
                txn.commit().await?;
                Ok(value)
            }
            Err(error) => {
                txn.rollback().await?;
                Err(error)
            }
        }
    }

    /// Waits for this process's turn to write (SQLite); immediate on PostgreSQL.
    async fn lock_writer(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.write_gate {
            Some(gate) => Some(gate.lock().await),
            None => None,
        }
    }

    /// Applies pending migrations. On PostgreSQL an advisory lock makes instances that start together
    /// take turns; the second finds nothing left to do.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        match self.backend() {
            DbBackend::Postgres => {
                let txn = self.conn.begin().await?;
                txn.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_advisory_xact_lock($1)",
                    [MIGRATION_LOCK_KEY.into()],
                ))
                .await?;
                Migrator::up(&txn, None).await?;
                txn.commit().await
            }
            _ => {
                let _writer = self.lock_writer().await;
                Migrator::up(&self.conn, None).await
            }
        }
    }

    /// Every migration with whether it is applied, in order.
    pub async fn migration_status(&self) -> Result<Vec<(String, bool)>, DbErr> {
        let all = Migrator::get_migration_with_status(&self.conn).await?;
        Ok(all
            .iter()
            .map(|m| (m.name().to_owned(), matches!(m.status(), migration::MigrationStatus::Applied)))
            .collect())
    }

    /// Whether the database answers a trivial query (for `/readyz`).
    pub async fn ping(&self) -> bool {
        self.conn.ping().await.is_ok()
    }

    /// On SQLite, copies the WAL into the database file and truncates it. Automatic checkpoints do
    /// this too; running it on a timer keeps the WAL bounded even if a long read held one back.
    pub async fn checkpoint(&self) -> Result<(), DbErr> {
        if self.backend() == DbBackend::Sqlite {
            let _writer = self.lock_writer().await;
            self.conn.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)").await?;
        }
        Ok(())
    }

    /// Closes every connection (SQLite then checkpoints and removes its WAL file).
    pub async fn close(self) -> Result<(), DbErr> {
        self.conn.close().await?;
        match self.write_conn {
            Some(write_conn) => write_conn.close().await,
            None => Ok(()),
        }
    }
}

/// Whether a transaction failed because another one inserted the same unique key first (two
/// requests racing to issue the same thing): the loser may look again and find the winner's row.
pub fn lost_a_race(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}
