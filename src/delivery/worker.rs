//! The background sender: claims due outbox messages in small batches and attempts them, until none
//! is due; then sleeps until woken (a message queued, the clock moved) or the poll interval passes.
//! Once a stop is asked for, it claims nothing more; the attempts under way are tracked in
//! [`super::Delivery::in_flight`], for the shutdown to wait on.

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
        if *stop.borrow() {
            return;
        }
        drain(&state, &stop).await;
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = state.delivery.wake.notified() => {}
            _ = clock_moved.moved() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Attempts every message that is due now, unless a stop is asked for meanwhile.
pub async fn drain(state: &AppState, stop: &watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let now = state.clock.now();
        match outbox::any_due(&state.db, now).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox; will retry");
                return;
            }
        }
        let (instance, lease) = (&state.delivery.instance, state.delivery.lease);
        let claimed = match outbox::claim_due(&state.db, instance, BATCH, lease, now).await {
            Ok(rows) if rows.is_empty() => return,
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "cannot claim outbox messages; will retry");
                return;
            }
        };
        let attempts: Vec<_> = claimed
            .into_iter()
            .map(|message| {
                let state = state.clone();
                state
                    .delivery
                    .in_flight
                    .clone()
                    .spawn(async move { send::attempt(&state, &message, None).await })
            })
            .collect();
        // A panic in one attempt is that attempt's alone: its lease runs out and it is tried again.
        for attempt in attempts {
            if let Err(error) = attempt.await
                && error.is_panic()
            {
                tracing::error!(
                    "a delivery attempt panicked; its message will be tried again when its lease ends"
                );
            }
        }
    }
}
