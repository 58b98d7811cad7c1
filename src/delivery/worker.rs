//! The background sender: claims due outbox messages in small batches and attempts them, until none
//! is due; then sleeps until woken (a message queued, the clock moved) or the poll interval passes.
//! Once a stop is asked for, it claims nothing more; the attempts under way are tracked in
//! [`super::Delivery::in_flight`], for the shutdown to wait on.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use super::{Delivery, send};
use crate::outbox;

/// How often an idle worker looks for due messages (other instances may have queued some).
pub const POLL: Duration = Duration::from_secs(1);
/// Messages claimed and attempted together.
const BATCH: u64 = 16;

/// Runs until `stop` changes.
pub async fn run(delivery: Arc<Delivery>, mut stop: watch::Receiver<bool>) {
    let mut clock_moved = delivery.clock.watch();
    loop {
        if *stop.borrow() {
            return;
        }
        drain(&delivery, &stop).await;
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = delivery.wake.notified() => {}
            _ = clock_moved.moved() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Attempts every message that is due now, unless a stop is asked for meanwhile.
pub async fn drain(delivery: &Arc<Delivery>, stop: &watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let now = delivery.clock.now();
        match outbox::any_due(&delivery.db, now).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox; will retry");
                return;
            }
        }
        let (instance, lease) = (&delivery.instance, delivery.lease);
        let claimed = match outbox::claim_due(&delivery.db, instance, BATCH, lease, now).await {
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
                let delivery = delivery.clone();
                delivery.in_flight.clone().spawn(async move { send::attempt(&delivery, &message).await })
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
