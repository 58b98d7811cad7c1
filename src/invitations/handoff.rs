//! The hand-off of an invitation's first delivery attempt. Delivery is an edge above this layer, so
//! it is known here only as a [`Courier`], which the host passes in: it renders the invitation and
//! makes the attempt on a task of its own, and hands the result back through a [`Handoff`] if the
//! submission is still waiting for it, or records it itself if the submission gave up waiting (its
//! budget ran out, or the host hung up), so no result is ever left for nobody.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::{
    domain::{Channel, RawToken},
    entities::{customer, outbox_message, shop},
    outbox::Attempt,
};

/// Delivery, as a submission sees it.
pub trait Courier: Send + Sync + 'static {
    /// Renders `letter` and starts its first attempt on a task of its own, which hands the result to
    /// `handoff` (see [`Handoff::offer`]). An error means the invitation could not be rendered.
    fn start(self: Arc<Self>, letter: Letter, handoff: Handoff) -> Result<(), String>;
}

/// An invitation just issued, with everything its first attempt says (read in the same transaction).
pub struct Letter {
    /// Its outbox row, leased to the courier.
    pub message: outbox_message::Model,
    pub shop: shop::Model,
    pub customer: customer::Model,
    /// The portal username the invitation names.
    pub username: String,
    pub channel: Channel,
    /// The address or number it goes to.
    pub recipient: String,
    /// The set-up link's token in clear (for this attempt only; later attempts open the sealed copy).
    pub token: RawToken,
    /// When the set-up link stops working.
    pub expires_at: DateTime<Utc>,
}

enum Slot {
    Waiting,
    Arrived(Attempt),
    GaveUp,
}

/// Where a first attempt's result goes: to the submission, if it still waits, else back to the
/// attempt, which then records it itself.
#[derive(Clone)]
pub struct Handoff(Arc<(Mutex<Slot>, Notify)>);

impl Handoff {
    pub(super) fn new() -> Self {
        Self(Arc::new((Mutex::new(Slot::Waiting), Notify::new())))
    }

    /// The attempt's side: gives `attempt` to the waiting submission (`None`), or returns it when the
    /// submission stopped waiting, for the caller to record.
    pub fn offer(&self, attempt: Attempt) -> Option<Attempt> {
        let unclaimed = {
            let mut slot = self.0.0.lock().expect("handoff lock");
            if matches!(*slot, Slot::GaveUp) {
                Some(attempt)
            } else {
                *slot = Slot::Arrived(attempt);
                None
            }
        };
        if unclaimed.is_none() {
            self.0.1.notify_one();
        }
        unclaimed
    }

    /// The submission's side: the attempt's result if it arrives within `budget`. If the waiting
    /// future is dropped (the host hung up), the attempt records its own result.
    pub(super) async fn wait(&self, budget: Duration) -> Option<Attempt> {
        let _give_up_if_dropped = GiveUpOnDrop(self.clone());
        let _ = tokio::time::timeout(budget, self.0.1.notified()).await;
        let mut slot = self.0.0.lock().expect("handoff lock");
        match std::mem::replace(&mut *slot, Slot::GaveUp) {
            Slot::Arrived(attempt) => Some(attempt),
            _ => None,
        }
    }
}

/// Hands the attempt back to its own task when the waiting submission goes away before taking it.
struct GiveUpOnDrop(Handoff);

impl Drop for GiveUpOnDrop {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.0.0.0.lock()
            && matches!(*slot, Slot::Waiting)
        {
            *slot = Slot::GaveUp;
        }
    }
}
