//! Choosing a password with a link: the first time (the invitation's set-up link) and after "forgot
//! password" (the reset link).
//!
//! Opening a link only finds it; only the customer's submission redeems it, atomically, so of any
//! number of simultaneous submissions exactly one wins. The same transaction writes the hash, ends
//! every session of the account, retires every other link it was sent, records `password_set` or
//! `reset_completed` in the audit trail, and, after a reset, queues the "password changed" notice. A
//! link that once worked (used, revoked or expired), submitted again, is a security event: someone
//! holds an old email.

use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect};

use super::{
    AccountError, Accounts, HashChange,
    passwords::{self, PasswordProblem},
    sessions, write_password_hash,
};
use crate::{
    audit::{self, Event},
    domain::{Channel, CustomerId, EmailAddress, ShopId},
    entities::{customer, invitation, portal_account, shop, token},
    invitations,
    outbox::{self, MessageKind, NewMessage},
    tokens::{self, Found, Purpose, RawToken, Spent},
};

/// How a link reached us.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// Opened (GET or HEAD): a person or a mail scanner.
    Opened,
    /// Its form was posted: a person choosing a password.
    Submitted,
}

/// A link that works: its token and the account it is for.
#[derive(Debug, Clone)]
pub struct Link {
    pub purpose: Purpose,
    pub token: token::Model,
    pub account: portal_account::Model,
}

/// How a submitted password ended, when the link still worked.
pub enum PasswordChange {
    /// Set: the new session, for the cookie. `notice_queued` says a "password changed" email
    /// waits in the outbox for the sender.
    Set { session: RawToken, notice_queued: bool },
    /// The password (or its confirmation) was refused; nothing changed.
    Refused(PasswordProblem),
}

impl Accounts {
    /// The link a set-up or reset address presents, while it works; [`AccountError::LinkInvalid`]
    /// otherwise.
    pub async fn open_link(
        &self,
        shop_id: &ShopId,
        purpose: Purpose,
        raw: &str,
        presented: Presented,
    ) -> Result<Link, AccountError> {
        let conn = self.db.conn();
        let token = match tokens::look_up(conn, shop_id, purpose, raw, self.clock.now()).await? {
            Found::Usable(token) => token,
            Found::Spent(token, spent) => {
                if presented == Presented::Submitted {
                    report_reuse(shop_id, purpose, &token, spent);
                }
                return Err(AccountError::LinkInvalid);
            }
            Found::Unknown => return Err(AccountError::LinkInvalid),
        };
        let account = portal_account::Entity::find_by_id(token.account_id.as_str())
            .one(conn)
            .await?
            .ok_or(AccountError::LinkInvalid)?;
        Ok(Link { purpose, token, account })
    }

    /// Sets the account's password with `link`, if the password passes the rules and the link is
    /// still unused when redeemed; then the customer is logged in with a new session.
    pub async fn set_password_by_link(
        &self,
        shop: &shop::Model,
        link: &Link,
        password: &str,
        confirmation: &str,
    ) -> Result<PasswordChange, AccountError> {
        let Link { purpose, token, account } = link;
        let local_part =
            EmailAddress::parse(&account.username).map(|e| e.local_part().to_owned()).unwrap_or_default();
        let password = match passwords::check_new(
            password,
            confirmation,
            self.settings.password_min_length,
            &local_part,
            &shop.name,
        ) {
            Ok(password) => password,
            Err(problem) => return Ok(PasswordChange::Refused(problem)),
        };
        let hash = self.hasher.hash(password).await?;
        let now = self.clock.now();
        let lifetime = self.settings.session_lifetime;
        let notice_to = match purpose {
            Purpose::Reset => self.notification_address(account).await?,
            Purpose::Setup => None,
        };
        let notice_queued = notice_to.is_some();
        // A link that went by email proves the customer reads that mailbox. Links by email die when
        // the address changes (`invitations::follow_email_change`), so a link still usable here went
        // to the profile's current address.
        let verified_email = match self.link_went_by_email(token).await? {
            true => self.notification_address(account).await?.map(|a| normalize_address(&a)),
            false => None,
        };
        let event = match purpose {
            Purpose::Setup => Event::PasswordSet,
            Purpose::Reset => Event::ResetCompleted,
        };
        let (token_id, account_id, shop_id, customer_id, throttle_key, owner) = (
            token.id.clone(),
            account.id.clone(),
            shop.shop_id(),
            CustomerId::from_stored(account.customer_id.clone()),
            self.throttle_keys.account(&shop.id, &account.username),
            account.clone(),
        );
        let started = self
            .db
            .write(move |txn| {
                Box::pin(async move {
                    // The account first, then its tokens: two links of one account used at the same
                    // moment take turns instead of locking each other's tokens (PostgreSQL).
                    if txn.get_database_backend() == DbBackend::Postgres {
                        portal_account::Entity::find_by_id(account_id.as_str())
                            .lock_exclusive()
                            .one(txn)
                            .await?;
                    }
                    if !tokens::redeem(txn, &token_id, now).await? {
                        return Ok(None);
                    }
                    write_password_hash(txn, &account_id, hash, HashChange::NewPassword, now).await?;
                    audit::record(txn, shop_id.as_str(), customer_id.as_str(), event, None, now).await?;
                    if let Some(address) = verified_email {
                        mark_email_verified(txn, &account_id, address).await?;
                    }
                    // A new password ends every session the account had, wherever it was, and every
                    // other link it was sent: none may set the password again.
                    sessions::end_all(txn, &account_id).await?;
                    invitations::retire_other_links(txn, &owner, &token_id, now).await?;
                    super::throttle::clear(txn, &throttle_key).await?;
                    if let Some(recipient) = notice_to {
                        outbox::enqueue(
                            txn,
                            NewMessage {
                                shop_id: &shop_id,
                                customer_id: Some(&customer_id),
                                kind: MessageKind::PasswordChanged,
                                channel: Channel::Email,
                                recipient: &recipient,
                                invitation_id: None,
                                link: None,
                            },
                            None,
                            now,
                        )
                        .await?;
                    }
                    super::login::note_login(txn, &account_id, now).await?;
                    Ok::<_, sea_orm::DbErr>(Some(
                        sessions::start(txn, &account_id, &shop_id, lifetime, now).await?,
                    ))
                })
            })
            .await?;
        // None: another submission used the link a moment earlier.
        let session = started.ok_or(AccountError::LinkInvalid)?;
        if *purpose == Purpose::Setup {
            metrics::counter!("portal_invitation_funnel_total", "step" => "activated").increment(1);
        }
        tracing::info!(shop_id = %shop.id, account_id = %account.id, "password set");
        Ok(PasswordChange::Set { session, notice_queued })
    }

    /// Whether this link was sent by email: every reset link, and the set-up link of an invitation
    /// by email.
    async fn link_went_by_email(&self, token: &token::Model) -> Result<bool, sea_orm::DbErr> {
        if token.purpose == Purpose::Reset.as_str() {
            return Ok(true);
        }
        let Some(invitation_id) = token.invitation_id.as_deref() else { return Ok(false) };
        let invitation = invitation::Entity::find_by_id(invitation_id).one(self.db.conn()).await?;
        Ok(invitation.is_some_and(|i| i.channel == Channel::Email.as_str()))
    }

    /// Where account email goes: the address on the customer's profile, else the username.
    async fn notification_address(
        &self,
        account: &portal_account::Model,
    ) -> Result<Option<String>, sea_orm::DbErr> {
        let customer = customer::Entity::find_by_id((account.shop_id.clone(), account.customer_id.clone()))
            .one(self.db.conn())
            .await?;
        Ok(customer.and_then(|c| c.email).or_else(|| Some(account.username.clone())))
    }
}

fn normalize_address(address: &str) -> String {
    EmailAddress::parse(address).map(|e| e.normalized()).unwrap_or_else(|_| address.to_lowercase())
}

async fn mark_email_verified<C: ConnectionTrait>(
    conn: &C,
    account_id: &str,
    address: String,
) -> Result<(), sea_orm::DbErr> {
    portal_account::Entity::update_many()
        .col_expr(portal_account::Column::VerifiedEmail, sea_orm::sea_query::Expr::value(address))
        .filter(portal_account::Column::Id.eq(account_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// A password form was posted with a link that once worked and no longer does: someone holds an
/// email whose link was used, revoked or expired. (A link that never existed is a typo or a guess,
/// and says nothing.)
fn report_reuse(shop_id: &ShopId, purpose: Purpose, token: &token::Model, spent: Spent) {
    tracing::warn!(
        target: "portal_invites::security",
        event = "link_reused",
        shop_id = %shop_id,
        account_id = %token.account_id,
        purpose = purpose.as_str(),
        reason = spent.as_str(),
        "a password link that no longer works was submitted"
    );
}
