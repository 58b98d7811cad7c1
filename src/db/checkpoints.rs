//! SQLite checkpoints, off the writer's path. A checkpoint copies the pages written to the WAL back
//! into the database file and `fsync`s it; left to SQLite, it runs inside the commit that crosses the
//! threshold, so the writer, and every request waiting for that commit, waits for it too. Here the
//! writer only rings a bell after each commit; a task of its own, on a read connection, checkpoints
//! at most every [`PAUSE`] while writes go on, `PASSIVE`ly (it never blocks the writer or readers).
//! The writer's own automatic checkpoint stays as a backstop at the WAL size limit, so the WAL is
//! bounded even if this task falls behind.

use std::{sync::Arc, time::Duration};

use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio::sync::Notify;

/// How long the task lets commits gather before checkpointing them: long enough that a page
/// written many times is copied once, short enough that the WAL stays a few MiB under load.
const PAUSE: Duration = Duration::from_millis(100);

/// Rung by the writer after each commit.
#[derive(Clone)]
pub(super) struct Bell(Arc<Notify>);

impl Bell {
    /// Starts the checkpointing task on `conn` (a read connection).
    pub(super) fn start(conn: DatabaseConnection) -> Self {
        let bell = Arc::new(Notify::new());
        tokio::spawn(run(conn, bell.clone()));
        Self(bell)
    }

    /// Something was committed.
    pub(super) fn ring(&self) {
        self.0.notify_one();
    }
}

async fn run(conn: DatabaseConnection, bell: Arc<Notify>) {
    loop {
        bell.notified().await;
        tokio::time::sleep(PAUSE).await;
        if let Err(error) = conn.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)").await {
            if conn.ping().await.is_err() {
                // The pool was closed: the database is shutting down.
                return;
            }
            tracing::warn!(%error, "SQLite checkpoint failed; the next commit tries again");
        }
    }
}
