//! The background sender: claims due outbox messages in small batches and attempts them, until none
//! is due; then sleeps until woken (a message queued, the clock moved) or the poll interval passes.

use std::time::Duration;

use tokio::sync::watch;

use super::{outbox, send};
use crate::app::AppState;

/// How often an idle worker looks for due messages (other instances may have queued some).
pub const POLL: Duration = Duration::from_secs(1);
/// Messages claimed and attempted together.
const BATCH: u64 = 16;

/// Runs until `stop` changes.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut clock_moved = state.clock.watch();
    loop {
        drain(&state).await;
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = state.delivery.wake.notified() => {}
            _ = clock_moved.moved() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Attempts every message that is due now.
pub async fn drain(state: &AppState) {
    loop {
        let now = state.clock.now();
        match outbox::any_due(&state.db, now).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox; will retry");
                return;
            }
        }
        let claimed = match outbox::claim_due(&state.db, &state.delivery.instance, BATCH, now).await {
            Ok(rows) if rows.is_empty() => return,
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "cannot claim outbox messages; will retry");
                return;
            }
        };
        let attempts = claimed.iter().map(|message| send::attempt(state, message, None));
        futures_util::future::join_all(attempts).await;
    }
}
