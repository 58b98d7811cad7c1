//! Asking for a reset link ("Forgot your password?"): the same answer, and the same work, whether or
//! not the address has an account, limited per client network. The request is one outbox row for the
//! address typed; the sender finds the account, mints the link and sends it, or cancels the row.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};

use super::{
    AccountError, Accounts,
    throttle::{self, Attempt},
};
use crate::{
    domain::Channel,
    domain::EmailAddress,
    outbox::{self, MessageKind, NewMessage},
};

impl Accounts {
    /// Queues a reset link for whatever account has `email` in the shop, unless `client`'s network
    /// has asked too often. Wake the sender afterwards: the row has no first attempt of its own.
    pub async fn request_reset(
        &self,
        shop_id: &str,
        email: &EmailAddress,
        client: Option<IpAddr>,
    ) -> Result<(), AccountError> {
        let now = self.clock.now();
        // Every request from a client network counts, whatever address it asks for: the limit is
        // on asking, so one client cannot have every customer of the shop sent reset emails.
        let counted = client.map(|ip| Attempt {
            key: self.throttle_keys.forgot_address(throttle::network(ip)),
            policy: throttle::FORGOT_PER_ADDRESS,
        });
        let (shop, email) = (shop_id.to_owned(), email.clone());
        let blocked = self
            .db
            .write(move |txn| {
                Box::pin(async move {
                    if let Some(attempt) = counted {
                        match throttle::reserve(txn, &[attempt], now).await? {
                            // Stays counted: a reset request has no success to give it back.
                            Ok(_counted) => {}
                            Err(blocked) => return Ok(Some(blocked)),
                        }
                    }
                    queue_reset(txn, &shop, &email, now).await?;
                    Ok::<_, DbErr>(None)
                })
            })
            .await?;
        if let Some(blocked) = blocked {
            let retry_after = blocked.retry_after(now);
            tracing::warn!(
                target: "portal_invites::security",
                event = "forgot_throttled",
                shop_id = %shop_id,
                retry_after_secs = retry_after.as_secs(),
                "reset request refused: too many from this client"
            );
            return Err(AccountError::ResetThrottled { retry_after });
        }
        Ok(())
    }
}

/// Queues a reset request for whatever account has this email in the shop: one outbox row, the same
/// write whether or not there is an account, so neither the time taken nor the database's work tells
/// which addresses have one. The outbox worker looks the account up, applies the per-account cap,
/// gives the link's token its value and sends, or cancels the row when there is no account.
async fn queue_reset<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    email: &EmailAddress,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    outbox::enqueue(
        conn,
        NewMessage {
            shop_id,
            customer_id: None,
            kind: MessageKind::PasswordReset,
            channel: Channel::Email,
            recipient: &email.normalized(),
            invitation_id: None,
            link: None,
        },
        None,
        now,
    )
    .await?;
    Ok(())
}
