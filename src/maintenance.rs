//! Background housekeeping, driven by the service's [`Clock`]: erasing the
//! personal data of shops uninstalled for 48 hours, forgetting old webhook answers, purging audit
//! events past their retention, removing the message files of erased messages, and keeping SQLite's
//! WAL file small.

use std::time::Duration;

use tokio::sync::watch;

use std::{path::PathBuf, sync::Arc};

use crate::{
    audit,
    clock::Clock,
    db::Database,
    inbox,
    shops::{cache::ShopCache, records},
};

/// What the housekeeping works on, built by the app.
#[derive(Clone)]
pub struct Jobs {
    pub db: Database,
    pub clock: Clock,
    /// Forgets the shops it erases, so no page shows them from memory.
    pub shops: Arc<ShopCache>,
    /// `PORTAL_SESSION_IDLE`: sessions unused this long are purged.
    pub session_idle: Duration,
    /// The message files' folder, when messages are written to files.
    pub message_files: Option<PathBuf>,
    /// Looks up SMS still without a final report a day after the gateway accepted them.
    pub delivery: Arc<crate::delivery::Delivery>,
    /// `PORTAL_AUDIT_RETENTION`: audit events older than this are purged.
    pub audit_retention: Duration,
}

/// How often the housekeeping runs on the wall clock (a manual clock also wakes it when moved).
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Runs until `stop` changes.
pub async fn run(state: Jobs, mut stop: watch::Receiver<bool>) {
    let mut clock_moved = state.clock.watch();
    loop {
        run_once(&state).await;
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = clock_moved.moved() => {}
            _ = stop.changed() => return,
        }
    }
}

/// One round of every job. A failing job is logged and retried next round; it never stops the loop.
pub async fn run_once(state: &Jobs) {
    let now = state.clock.now();
    let erased =
        state.db.write(move |txn| Box::pin(async move { records::erase_due_shops(txn, now).await })).await;
    match erased {
        Ok(shops) => {
            for shop_id in shops {
                state.shops.forget(&shop_id);
                tracing::info!(%shop_id, "erased the personal data of a shop uninstalled 48 hours ago");
            }
        }
        Err(error) => tracing::error!(%error, "erasing uninstalled shops failed; will retry"),
    }

    let purged =
        state.db.write(move |txn| Box::pin(async move { inbox::purge_old_answers(txn, now).await })).await;
    match purged {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "forgot webhook answers older than the retention"),
        Err(error) => tracing::error!(%error, "purging old webhook answers failed; will retry"),
    }

    let idle = state.session_idle;
    let swept = state
        .db
        .write(move |txn| {
            Box::pin(async move {
                let sessions = crate::accounts::sessions::purge_expired(txn, idle, now).await?;
                crate::accounts::throttle::purge_stale(txn, now).await?;
                crate::identity::grants::purge_expired(txn, now).await?;
                Ok::<_, sea_orm::DbErr>(sessions)
            })
        })
        .await;
    if let Err(error) = swept {
        tracing::error!(%error, "purging ended sessions failed; will retry");
    }

    purge_audit_trail(state, now).await;

    // Message files (file mode) live as long as their outbox rows: an erased customer's go too.
    if let Some(folder) = &state.message_files {
        match crate::delivery::files::sweep(&state.db, folder).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "removed message files whose messages were erased"),
            Err(error) => tracing::error!(%error, "sweeping message files failed; will retry"),
        }
    }

    crate::delivery::lookup::look_up_overdue(&state.delivery).await;

    if let Err(error) = state.db.checkpoint().await {
        tracing::warn!(%error, "SQLite checkpoint failed; will retry");
    }
}

/// Audit events deleted per transaction, and transactions per round: a first purge of a long trail
/// is spread over short writes (SQLite has one writer) and, past this many, over rounds.
const AUDIT_PURGE_BATCH: u64 = 5_000;
const AUDIT_PURGE_BATCHES_PER_ROUND: u32 = 20;

/// Forgets audit events older than the retention setting.
async fn purge_audit_trail(state: &Jobs, now: chrono::DateTime<chrono::Utc>) {
    let Some(cutoff) =
        chrono::TimeDelta::from_std(state.audit_retention).ok().and_then(|r| now.checked_sub_signed(r))
    else {
        return;
    };
    let mut purged = 0;
    for _ in 0..AUDIT_PURGE_BATCHES_PER_ROUND {
        let batch = state
            .db
            .write(move |txn| {
                Box::pin(async move { audit::purge_before(txn, cutoff, AUDIT_PURGE_BATCH).await })
            })
            .await;
        match batch {
            Ok(count) => {
                purged += count;
                // Until a batch finds nothing: another instance (or round) purging at the same moment
                // takes part of a batch, and a short batch does not mean the end.
                if count == 0 {
                    break;
                }
            }
            Err(error) => {
                tracing::error!(%error, "purging old audit events failed; will retry");
                break;
            }
        }
    }
    if purged > 0 {
        tracing::info!(count = purged, "purged audit events older than the retention");
    }
}
