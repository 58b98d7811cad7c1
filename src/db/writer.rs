//! SQLite's single writer, with group commit. Every write transaction of the process is handed to one
//! task; the transactions that arrive while a commit is in progress run together in the next one,
//! each inside its own savepoint (so one that fails is undone alone), and all are committed with a
//! single `fsync`. Nobody hears back before the commit their work was part of has returned.
//!
//! With `synchronous=FULL` a commit costs an `fsync`; under concurrent load (logins, invitations,
//! outbox bookkeeping) this is where most of the time went, one at a time.
//!
//! A piece of work that panics (a bug) is rolled back alone, its caller gets an error, and the writer
//! goes on: one bad job must not stop every write of the process until a restart.

use std::{future::Future, panic::AssertUnwindSafe, pin::Pin, sync::Arc};

use futures_util::FutureExt;

use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionOptions, TransactionTrait};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{TxFuture, checkpoints::Bell};

/// Transactions committed together at most.
const MAX_GROUP: usize = 64;

/// What is left to do for one piece of work once the group's commit is known.
pub(super) trait Finish: Send {
    /// Whether the work failed (its savepoint is rolled back).
    fn failed(&self) -> bool;
    /// Delivers the outcome, given how the commit went.
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

/// One piece of work waiting for the writer.
pub(super) trait Job: Send {
    /// Runs the work in `txn` (the group's transaction or a savepoint of it).
    fn run<'c>(
        self: Box<Self>,
        txn: &'c DatabaseTransaction,
    ) -> Pin<Box<dyn Future<Output = Box<dyn Finish>> + Send + 'c>>;
    /// The work could not even start.
    fn abort(self: Box<Self>, error: String);
}

struct Typed<T, E, F> {
    work: F,
    reply: oneshot::Sender<Result<T, E>>,
}

struct Done<T, E> {
    result: Result<T, E>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<T: Send + 'static, E: From<DbErr> + Send + 'static> Finish for Done<T, E> {
    fn failed(&self) -> bool {
        self.result.is_err()
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let outcome = match (self.result, commit) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(error)) => Err(E::from(DbErr::Custom(format!("commit failed: {error}")))),
            (Err(error), _) => Err(error),
        };
        let _ = self.reply.send(outcome);
    }
}

impl<T, E, F> Job for Typed<T, E, F>
where
    F: for<'c> FnOnce(&'c DatabaseTransaction) -> TxFuture<'c, T, E> + Send + 'static,
    T: Send + 'static,
    E: From<DbErr> + Send + 'static,
{
    fn run<'c>(
        self: Box<Self>,
        txn: &'c DatabaseTransaction,
    ) -> Pin<Box<dyn Future<Output = Box<dyn Finish>> + Send + 'c>> {
        let Typed { work, reply } = *self;
        Box::pin(async move {
            let result = work(txn).await;
            Box::new(Done { result, reply }) as Box<dyn Finish>
        })
    }

    fn abort(self: Box<Self>, error: String) {
        let _ = self.reply.send(Err(E::from(DbErr::Custom(error))));
    }
}

/// The writer's queue.
#[derive(Clone)]
pub(super) struct GroupWriter {
    queue: mpsc::UnboundedSender<Box<dyn Job>>,
}

impl GroupWriter {
    /// Starts the writer task on `conn`; `gate` is held while a group is open, so migrations and
    /// checkpoints never run inside one.
    pub(super) fn start(conn: DatabaseConnection, gate: Arc<Mutex<()>>, bell: Bell) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(run(conn, gate, bell, jobs));
        Self { queue }
    }

    /// Queues `work` and waits for the commit it is part of.
    pub(super) async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c DatabaseTransaction) -> TxFuture<'c, T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbErr> + Send + 'static,
    {
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send(Box::new(Typed { work, reply }))
            .map_err(|_| E::from(DbErr::Custom("the database writer has stopped".into())))?;
        outcome.await.map_err(|_| {
            E::from(DbErr::Custom(
                "the write failed (it panicked, or the writer stopped); nothing was written".into(),
            ))
        })?
    }
}

async fn begin(conn: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let options = TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    };
    conn.begin_with_options(options).await
}

async fn run(
    conn: DatabaseConnection,
    gate: Arc<Mutex<()>>,
    bell: Bell,
    mut queue: mpsc::UnboundedReceiver<Box<dyn Job>>,
) {
    let mut jobs: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_GROUP);
    while queue.recv_many(&mut jobs, MAX_GROUP).await > 0 {
        let _writer = gate.lock().await;
        metrics::histogram!("portal_sqlite_write_batch_size").record(jobs.len() as f64);
        let txn = match begin(&conn).await {
            Ok(txn) => txn,
            Err(error) => {
                for job in jobs.drain(..) {
                    job.abort(error.to_string());
                }
                continue;
            }
        };
        if let [_] = jobs.as_slice() {
            // Alone: no savepoint needed, the transaction is the work's own.
            let Some(job) = jobs.pop() else { continue };
            let Some(done) = run_guarded(job, &txn).await else {
                let _ = txn.rollback().await;
                continue;
            };
            let commit = if done.failed() {
                txn.rollback().await.map_err(|e| e.to_string())
            } else {
                timed_commit(txn, &bell).await
            };
            done.finish(commit);
            continue;
        }
        let mut done: Vec<Box<dyn Finish>> = Vec::with_capacity(jobs.len());
        let mut broken: Option<String> = None;
        for job in jobs.drain(..) {
            if let Some(error) = &broken {
                job.abort(error.clone());
                continue;
            }
            match txn.begin().await {
                Ok(savepoint) => {
                    let Some(finished) = run_guarded(job, &savepoint).await else {
                        if let Err(error) = savepoint.rollback().await {
                            broken = Some(error.to_string());
                        }
                        continue;
                    };
                    let closed =
                        if finished.failed() { savepoint.rollback().await } else { savepoint.commit().await };
                    if let Err(error) = closed {
                        broken = Some(error.to_string());
                    }
                    done.push(finished);
                }
                Err(error) => {
                    job.abort(error.to_string());
                    broken = Some(error.to_string());
                }
            }
        }
        let commit = match broken {
            Some(error) => {
                let _ = txn.rollback().await;
                Err(error)
            }
            None => timed_commit(txn, &bell).await,
        };
        for finished in done {
            finished.finish(commit.clone());
        }
    }
}

/// Commits the group, timing it: the `fsync` is most of a write's cost, so its time is what the
/// commit histogram shows.
async fn timed_commit(txn: DatabaseTransaction, bell: &Bell) -> Result<(), String> {
    let started = std::time::Instant::now();
    let committed = txn.commit().await.map_err(|e| e.to_string());
    metrics::histogram!("portal_sqlite_commit_seconds").record(started.elapsed().as_secs_f64());
    bell.ring();
    committed
}

/// Runs one job, or `None` if it panicked (its caller's reply is dropped with it: the caller hears
/// that the write failed).
async fn run_guarded(job: Box<dyn Job>, txn: &DatabaseTransaction) -> Option<Box<dyn Finish>> {
    match AssertUnwindSafe(job.run(txn)).catch_unwind().await {
        Ok(done) => Some(done),
        Err(_) => {
            tracing::error!("a database write panicked; it was rolled back alone and the writer goes on");
            None
        }
    }
}
