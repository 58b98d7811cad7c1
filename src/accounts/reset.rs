//! Reset links ("Forgot your password?"), both halves. Asking: the same answer, and the same work,
//! whether or not the address has an account, limited per client network; the request is one outbox
//! row for the address typed. Minting, when the sender takes that row: the account of the shop whose
//! username is the typed address, if it has had fewer than [`RESETS_PER_HOUR`] links in the last
//! hour, gets a reset token, sent to the customer's email, and the audit trail `reset_requested`;
//! otherwise nothing is sent and nothing recorded.

use std::{net::IpAddr, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
};

use super::{
    AccountError, Accounts,
    throttle::{self, Attempt},
};
use crate::{
    audit::{self, Event},
    clock::to_millis,
    domain::{Channel, EmailAddress, ShopId},
    entities::{customer, portal_account, token},
    outbox::{self, MessageKind, NewMessage},
    tokens::{self, NewToken, Purpose, RawToken},
};

/// Reset links sent for one account within an hour, at most.
pub const RESETS_PER_HOUR: u64 = 3;

impl Accounts {
    /// Queues a reset link for whatever account has `email` in the shop, unless `client`'s network
    /// has asked too often. Wake the sender afterwards: the row has no first attempt of its own.
    pub async fn request_reset(
        &self,
        shop_id: &ShopId,
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
        let (shop, email) = (shop_id.clone(), email.clone());
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
/// which addresses have one. The sender decides later, with [`mint_link_for_request`].
async fn queue_reset<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
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

/// A reset link minted for a request: its token, and where it goes.
pub struct MintedLink {
    pub token_id: String,
    /// Its value in clear, to be sealed into the request's row.
    pub token: RawToken,
    pub customer_id: String,
    /// The customer's email, or the username when the customer has none.
    pub recipient: String,
}

/// Why a reset request gets no link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSent {
    NoAccount,
    /// [`RESETS_PER_HOUR`] links were sent for the account in the last hour.
    Capped,
}

impl NotSent {
    /// As recorded on the cancelled row.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoAccount => "no portal account has the address that was typed",
            Self::Capped => "reset links for this account are capped for this hour",
        }
    }
}

/// Decides a reset asked for on `/forgot` with the `typed` address, when its sender takes it: the
/// account of the shop with that username, if any and under the hourly cap, gets a reset token
/// lasting `ttl`. Runs in the sender's transaction, under its claim on the request, so the token is
/// kept only if the sender still holds the row when it records the link.
pub async fn mint_link_for_request<C: ConnectionTrait>(
    txn: &C,
    shop_id: &ShopId,
    typed: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Result<MintedLink, NotSent>, DbErr> {
    let find = portal_account::Entity::find()
        .filter(portal_account::Column::ShopId.eq(shop_id.as_str()))
        .filter(portal_account::Column::Username.eq(typed));
    let minted = mint_for(txn, find, shop_id, ttl, now).await?;
    if let Ok(minted) = &minted {
        // The customer's own request (a staff member's is recorded where the staff act is).
        audit::record(txn, shop_id.as_str(), &minted.customer_id, Event::ResetRequested, None, now).await?;
    }
    Ok(minted)
}

/// Mints a reset link for the customer's account at a staff member's request: the same lock, the
/// same hourly cap and the same recipient as a customer's own request.
pub async fn mint_link_for_customer<C: ConnectionTrait>(
    txn: &C,
    shop_id: &ShopId,
    customer_id: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Result<MintedLink, NotSent>, DbErr> {
    let find = portal_account::Entity::find()
        .filter(portal_account::Column::ShopId.eq(shop_id.as_str()))
        .filter(portal_account::Column::CustomerId.eq(customer_id));
    mint_for(txn, find, shop_id, ttl, now).await
}

/// Reset links the account was sent in the hour before `now`.
pub async fn resets_in_last_hour<C: ConnectionTrait>(
    conn: &C,
    account_id: &str,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    token::Entity::find()
        .filter(token::Column::AccountId.eq(account_id))
        .filter(token::Column::Purpose.eq(Purpose::Reset.as_str()))
        .filter(token::Column::CreatedAt.gt(to_millis(now - TimeDelta::hours(1))))
        .count(conn)
        .await
}

/// The account `find` selects, locked, gets a reset token lasting `ttl` if under the hourly cap; the
/// link goes to the customer's email as it is now.
async fn mint_for<C: ConnectionTrait>(
    txn: &C,
    mut find: sea_orm::Select<portal_account::Entity>,
    shop_id: &ShopId,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Result<MintedLink, NotSent>, DbErr> {
    let ttl = TimeDelta::from_std(ttl).unwrap_or(TimeDelta::hours(1));
    if txn.get_database_backend() == DbBackend::Postgres {
        // Resets for one account are decided one at a time, so the hourly cap holds when several
        // are attempted at once, and an email change (which locks the account too) either comes
        // first, and the link goes to the new address, or kills the link it finds (SQLite has its
        // single writer).
        find = find.lock_exclusive();
    }
    let Some(account) = find.one(txn).await? else {
        return Ok(Err(NotSent::NoAccount));
    };
    if resets_in_last_hour(txn, &account.id, now).await? >= RESETS_PER_HOUR {
        return Ok(Err(NotSent::Capped));
    }
    let (token_id, token) = tokens::issue(
        txn,
        NewToken {
            shop_id,
            account_id: &account.id,
            purpose: Purpose::Reset,
            invitation_id: None,
            expires_at: now + ttl,
        },
        now,
    )
    .await?;
    let customer = customer::Entity::find_by_id((shop_id.as_str().to_owned(), account.customer_id.clone()))
        .one(txn)
        .await?;
    let recipient = customer.and_then(|c| c.email).unwrap_or_else(|| account.username.clone());
    Ok(Ok(MintedLink { token_id, token, customer_id: account.customer_id, recipient }))
}
