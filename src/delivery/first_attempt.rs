//! Delivery as the star-menu submission's [`Courier`]: the first attempt at an invitation just
//! issued, made on a task of its own (tracked for the shutdown), so that it finishes and records its
//! own result when it outlasts the submission's budget or the host hangs up.

use std::sync::Arc;

use super::{Delivery, send};
use crate::{
    invitations::handoff::{Courier, Handoff, Letter, still_to_send},
    outbox::FirstAttempt,
};

impl Courier for Delivery {
    fn first_attempt(&self) -> FirstAttempt {
        FirstAttempt { owner: self.instance.clone(), lease: self.lease }
    }

    fn start(self: Arc<Self>, letter: Letter, handoff: Handoff) -> Result<(), String> {
        let Letter { message, shop, customer, username, channel, recipient, token, expires_at } = letter;
        let composed = send::compose_invitation(
            &self, &shop, &customer, &username, channel, &recipient, &token, expires_at,
        )
        .map_err(|e| e.to_string())?;
        self.in_flight.clone().spawn(async move {
            let attempt = match still_to_send(&self.db, &message).await {
                None => send::transmit(&self, composed, &message).await,
                Some(stop) => stop,
            };
            if let Some(unclaimed) = handoff.offer(attempt) {
                send::record(&self, &message, unclaimed).await;
            }
        });
        Ok(())
    }
}
