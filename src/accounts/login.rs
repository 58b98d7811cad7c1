//! Logging in. An unknown email, a wrong password and an account without a password yet all fail
//! alike, and (thanks to the hasher's dummy hash) take the same time. Failures are throttled per
//! typed username and per client network, or, from a browser that logged in to the account before,
//! per that browser; a success starts a brand-new session.
//!
//! The audit trail gets `logged_in` with each success, and `login_slowed` when failures start making
//! the account's own counter wait: recorded with the reservation that sets the wait (a write every
//! attempt makes anyway, and by a statement that does the same work for a username no account has,
//! so neither the time taken nor the work done tells which usernames exist), and taken back if that
//! very attempt then proves right or is never judged.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, sea_query::Expr};

use super::{
    AccountError, Accounts, HashChange, passwords, sessions,
    throttle::{self, Attempt, Blocked},
    write_password_hash,
};
use crate::{
    audit::{self, Event},
    clock::to_millis,
    domain::{EmailAddress, ShopId},
    entities::portal_account,
    tokens::RawToken,
};

/// A login name as the throttle counts it and accounts store it: a normalised email address, or
/// whatever was typed, lower-cased, when it is not one (it then matches no account, but is still
/// counted, so the throttle tells nothing about which names exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// The username for what the customer typed (already trimmed).
    pub fn from_typed(typed: &str) -> Self {
        Self(EmailAddress::parse(typed).map(|e| e.normalized()).unwrap_or_else(|_| typed.to_lowercase()))
    }

    /// As stored and counted.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One login attempt, as the portal read it.
pub struct LoginAttempt<'a> {
    pub shop_id: &'a ShopId,
    pub username: &'a Username,
    pub password: &'a str,
    /// This browser's device id for the username, when it logged in to it before: the attempt is
    /// then judged on that device's own counter, so a stranger's failures cannot keep it out.
    pub device: Option<&'a str>,
    /// The client's address, counted per network when the browser is not recognised.
    pub client: Option<IpAddr>,
    /// The session the browser held before: worthless after a login, so it is ended.
    pub replaced_session: Option<&'a str>,
}

/// How a login attempt ended, when it was judged.
pub enum Login {
    /// A new session, for the cookie.
    LoggedIn(RawToken),
    /// No such account, no password yet, or a wrong password: one answer for all.
    Failed,
}

/// Why a reservation was refused: the attempt must wait, or the database failed.
enum Refused {
    Blocked(Blocked),
    Db(sea_orm::DbErr),
}

impl From<sea_orm::DbErr> for Refused {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::Db(error)
    }
}

impl Accounts {
    /// Judges a login attempt: throttled first, then the password checked against the account's hash
    /// (or the dummy), rehashed when it was hashed with older parameters, and a new session started.
    pub async fn authenticate(&self, attempt: LoginAttempt<'_>) -> Result<Login, AccountError> {
        let LoginAttempt { shop_id, username, password, device, client, replaced_session } = attempt;
        // Admitted to the password hasher first: under a flood, the requests turned away cost no
        // database work at all. The turn itself is taken after the reads below, so they happen
        // while other logins hash.
        let admission = self.hasher.admit()?;
        let now = self.clock.now();

        // The attempt is reserved before any work: counted as a failure up front, in the same write
        // that refuses it when it must wait, so a waiting attempt costs no hash and of a burst that
        // arrives together only the first is judged.
        let attempts = self.login_counters(shop_id.as_str(), username, device, client);
        let slowing = Slowing {
            shop_id: shop_id.as_str().to_owned(),
            username: username.as_str().to_owned(),
            account_key: self.throttle_keys.account(shop_id.as_str(), username.as_str()),
            at: now,
        };
        let trail = slowing.clone();
        let reserved = self
            .db
            .write(move |txn| {
                Box::pin(async move {
                    // Refused attempts roll back, leaving no trace.
                    let reservation =
                        throttle::reserve(txn, &attempts, now).await?.map_err(Refused::Blocked)?;
                    let began = reservation.began_slowing(throttle::PER_ACCOUNT);
                    if began {
                        trail.record(txn).await?;
                    }
                    Ok((reservation, began))
                })
            })
            .await;
        let (reservation, began_slowing) = match reserved {
            Ok(reservation) => reservation,
            Err(Refused::Blocked(blocked)) => {
                let retry_after = blocked.retry_after(now);
                tracing::warn!(
                    target: "portal_invites::security",
                    event = "login_throttled",
                    shop_id = %shop_id,
                    limit = blocked.policy.name,
                    retry_after_secs = retry_after.as_secs(),
                    "login attempt refused: too many failures"
                );
                return Err(AccountError::LoginThrottled { retry_after });
            }
            Err(Refused::Db(error)) => return Err(error.into()),
        };

        let judged = async {
            let account = portal_account::Entity::find()
                .filter(portal_account::Column::ShopId.eq(shop_id.as_str()))
                .filter(portal_account::Column::Username.eq(username.as_str()))
                .one(self.db.conn())
                .await?;
            let stored = account.as_ref().and_then(|a| a.password_hash.clone());
            let turn = admission.turn().await?;
            let verified = self.hasher.verify_in(turn, password.to_owned(), stored).await?;
            Ok::<_, AccountError>((account, verified))
        }
        .await;
        let (account, verified) = match judged {
            Ok(judged) => judged,
            Err(error) => {
                // Never judged: the attempt is given back, so a busy service counts nobody's failure.
                self.db
                    .write(move |txn| {
                        Box::pin(async move {
                            throttle::abandoned(txn, reservation).await?;
                            if began_slowing {
                                slowing.take_back_unless_still_slowed(txn).await?;
                            }
                            Ok::<_, DbErr>(())
                        })
                    })
                    .await?;
                return Err(error);
            }
        };

        let (Some(account), true) = (account, verified.matches) else {
            // Already counted when reserved.
            tracing::info!(shop_id = %shop_id, "login failed");
            return Ok(Login::Failed);
        };

        let rehash = if verified.needs_rehash {
            self.hasher.hash(passwords::normalise(password)).await.ok()
        } else {
            None
        };
        let old_session = replaced_session.map(str::to_owned);
        let lifetime = self.settings.session_lifetime;
        let (account_id, customer_id, shop) =
            (account.id.clone(), account.customer_id.clone(), shop_id.clone());
        let session = self
            .db
            .write(move |txn| {
                Box::pin(async move {
                    throttle::succeeded(txn, reservation).await?;
                    if began_slowing {
                        // The success cleared the wait this attempt had set.
                        slowing.take_back(txn).await?;
                    }
                    note_login(txn, &account_id, now).await?;
                    audit::record(txn, shop.as_str(), &customer_id, Event::LoggedIn, None, now).await?;
                    if let Some(hash) = rehash {
                        write_password_hash(txn, &account_id, hash, HashChange::Rehash, now).await?;
                    }
                    // A session id planted before login is worthless after it: it is ended, and a new one starts.
                    if let Some(old) = old_session {
                        sessions::end(txn, &old).await?;
                    }
                    sessions::start(txn, &account_id, &shop, lifetime, now).await
                })
            })
            .await?;
        tracing::info!(shop_id = %shop_id, account_id = %account.id, "logged in");
        Ok(Login::LoggedIn(session))
    }

    /// The counters a login attempt is reserved on: the recognised browser's own, or else the
    /// username's and the client network's.
    fn login_counters(
        &self,
        shop_id: &str,
        username: &Username,
        device: Option<&str>,
        client: Option<IpAddr>,
    ) -> Vec<Attempt> {
        let keys = &self.throttle_keys;
        let username = username.as_str();
        match device {
            Some(device) => {
                vec![Attempt { key: keys.device(shop_id, username, device), policy: throttle::PER_DEVICE }]
            }
            None => std::iter::once(Attempt {
                key: keys.account(shop_id, username),
                policy: throttle::PER_ACCOUNT,
            })
            .chain(client.map(|ip| Attempt {
                key: keys.login_address(throttle::network(ip)),
                policy: throttle::PER_ADDRESS,
            }))
            .collect(),
        }
    }
}

/// The attempt whose reservation started the account's waits, for the audit trail.
#[derive(Clone)]
struct Slowing {
    shop_id: String,
    username: String,
    account_key: String,
    at: DateTime<Utc>,
}

impl Slowing {
    async fn record<C: ConnectionTrait>(&self, txn: &C) -> Result<(), DbErr> {
        audit::record_for_username(txn, &self.shop_id, &self.username, Event::LoginSlowed, self.at).await
    }

    async fn take_back<C: ConnectionTrait>(&self, txn: &C) -> Result<(), DbErr> {
        audit::retract_for_username(txn, &self.shop_id, &self.username, Event::LoginSlowed, self.at).await
    }

    /// After an attempt was given back: unless others' failures counted meanwhile keep the account
    /// waiting, the slow-down it announced did not happen.
    async fn take_back_unless_still_slowed<C: ConnectionTrait>(&self, txn: &C) -> Result<(), DbErr> {
        if throttle::slows_down(txn, &self.account_key, throttle::PER_ACCOUNT).await? {
            return Ok(());
        }
        self.take_back(txn).await
    }
}

/// The staff's status shows when the customer last logged in (with a password, or by setting one
/// with a link, which logs them in too).
pub(super) async fn note_login<C: ConnectionTrait>(
    txn: &C,
    account_id: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    portal_account::Entity::update_many()
        .col_expr(portal_account::Column::LastLoginAt, Expr::value(to_millis(now)))
        .filter(portal_account::Column::Id.eq(account_id))
        .exec(txn)
        .await?;
    Ok(())
}
