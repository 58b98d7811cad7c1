//! Delivery as the star-menu submission's [`Courier`]: the first attempt at an invitation just
//! issued, made on a task of its own (tracked for the shutdown), so that it finishes and records its
//! own result when it outlasts the submission's budget or the host hangs up. Before it sends, it
//! looks whether something committed since the invitation cancelled it.

use std::sync::Arc;

use sea_orm::{DbErr, EntityTrait};

use super::{Delivery, send};
use crate::{
    db::Database,
    entities::{customer, outbox_message, shop},
    invitations::handoff::{Courier, Handoff, Letter},
    outbox::{Attempt, FirstAttempt, OutboxStatus},
};

impl Delivery {
    /// This instance as the maker of first attempts: the owner of their leases, and how long it holds
    /// a message while it sends.
    pub fn first_attempt(&self) -> FirstAttempt {
        FirstAttempt { owner: self.instance.clone(), lease: self.lease }
    }
}

impl Courier for Delivery {
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

/// Whether the invitation just committed is still to be sent (`None`), or what to record instead. The
/// customer's deletion, the shop's uninstall or an email change may have been committed since (on
/// PostgreSQL they wait only for the invitation's transaction, not for this attempt), and whatever
/// they cancelled must not go out.
async fn still_to_send(db: &Database, row: &outbox_message::Model) -> Option<Attempt> {
    let conn = db.conn();
    let looked = async {
        let message = outbox_message::Entity::find_by_id(row.id.as_str()).one(conn).await?;
        let shop = shop::Entity::find_by_id(row.shop_id.as_str()).one(conn).await?;
        let customer = match &row.customer_id {
            Some(id) => customer::Entity::find_by_id((row.shop_id.clone(), id.clone())).one(conn).await?,
            None => None,
        };
        Ok::<_, DbErr>(if message.is_none_or(|m| OutboxStatus::of(&m) != Some(OutboxStatus::Pending)) {
            Some("the message was cancelled or erased before it was sent")
        } else if shop.is_none_or(|s| !s.installed) {
            Some("the shop uninstalled the plugin")
        } else if customer.is_none_or(|c| c.deleted_at.is_some()) {
            Some("customer deleted")
        } else {
            None
        })
    };
    match looked.await {
        Ok(None) => None,
        Ok(Some(reason)) => Some(Attempt::Cancelled { reason: reason.to_owned() }),
        Err(e) => Some(Attempt::Transient { reason: format!("database: {e}"), retry_after: None }),
    }
}
