//! The hand-off of an invitation's first delivery attempt. Delivery is an edge above this layer, so
//! it is known here only as a [`Courier`], which the host passes in: it renders the invitation and
//! makes the attempt on a task of its own, and hands the result back through a [`Handoff`] if the
//! submission is still waiting for it, or records it itself if the submission gave up waiting (its
//! budget ran out, or the host hung up), so no result is ever left for nobody.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

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

/// The attempt's side of the hand-off.
pub struct Handoff(oneshot::Sender<Attempt>);

impl Handoff {
    /// Gives `attempt` to the waiting submission (`None`), or returns it when the submission stopped
    /// waiting (its budget ran out, or the host hung up), for the caller to record.
    pub fn offer(self, attempt: Attempt) -> Option<Attempt> {
        self.0.send(attempt).err()
    }
}

/// The submission's side of the hand-off.
pub(super) struct Awaited(oneshot::Receiver<Attempt>);

pub(super) fn pair() -> (Handoff, Awaited) {
    let (sender, receiver) = oneshot::channel();
    (Handoff(sender), Awaited(receiver))
}

impl Awaited {
    /// The attempt's result if it arrives within `budget`. Past the budget the channel is closed, so
    /// a result that comes later goes back to the attempt; so does one that comes after this future
    /// was dropped (the host hung up).
    pub(super) async fn within(mut self, budget: Duration) -> Option<Attempt> {
        match tokio::time::timeout(budget, &mut self.0).await {
            Ok(result) => result.ok(),
            Err(_) => {
                self.0.close();
                // Sent in the moment between the timeout and the close: still ours.
                self.0.try_recv().ok()
            }
        }
    }
}
