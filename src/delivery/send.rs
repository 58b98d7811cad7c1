//! One attempt to deliver one outbox message: gather what it says from the database as it is now,
//! render it, hand it to the mail server or SMS gateway within the send deadline, and record the
//! result under the claim the attempt was made with.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
    sea_query::Expr,
};

use super::{
    Composed,
    messages::{self, InvitationContext},
    outbox::{self, Attempt, MessageKind, Recorded},
};
use crate::{
    app::AppState,
    clock::from_millis,
    clock::to_millis,
    domain::TimeZone,
    entities::{customer, invitation, outbox_message, portal_account, shop, token},
    invitations::{Channel, InvitationStatus},
    links,
    tokens::{self, NewToken, Purpose, RawToken},
};

/// Reset links sent for one account within an hour, at most.
pub const RESETS_PER_HOUR: u64 = 3;

/// Makes one attempt at `message` (leased to this instance) and records it. `token` is the link's
/// token in clear when the caller just issued it; otherwise the token gets a fresh value first.
pub async fn attempt(state: &AppState, message: &outbox_message::Model, token: Option<RawToken>) -> Recorded {
    let mut message = message.clone();
    let composed = match prepare(state, &mut message, token).await {
        Ok(composed) => composed,
        Err(Prepared::Stop(attempt)) => {
            return record(state, &message, attempt).await;
        }
        Err(Prepared::Db(e)) => {
            return record(
                state,
                &message,
                Attempt::Transient { reason: format!("database: {e}"), retry_after: None },
            )
            .await;
        }
    };
    let result = transmit(state, composed, &message).await;
    record(state, &message, result).await
}

/// Hands a rendered message to the mail server or SMS gateway, bounded as a whole by the send
/// deadline (`PORTAL_SEND_TIMEOUT`): connect, greeting, every command and the data for SMTP; the
/// whole request and answer for the gateway. Past the deadline the exchange is dropped (its
/// connection closed, never reused) and the attempt counts as transient: the retry sends the same
/// link.
pub async fn transmit(state: &AppState, composed: Composed, message: &outbox_message::Model) -> Attempt {
    let deadline = state.delivery.send_timeout;
    let file = super::files::MessageFile::of(message);
    let exchange = async {
        match composed {
            Composed::Email(email) => state.delivery.mailer.send(*email, &file).await,
            Composed::Sms { to, body } => state.delivery.sms.send(&to, &body, &file).await,
        }
    };
    match tokio::time::timeout(deadline, exchange).await {
        Ok(attempt) => attempt,
        Err(_) => Attempt::Transient {
            reason: format!(
                "no complete answer within {} s (PORTAL_SEND_TIMEOUT); the outcome is unknown, so it will be \
                 sent again with the same link",
                deadline.as_secs()
            ),
            retry_after: None,
        },
    }
}

/// Records an attempt in a transaction of its own.
pub async fn record(state: &AppState, message: &outbox_message::Model, attempt: Attempt) -> Recorded {
    let now = state.clock.now();
    let row = message.clone();
    let logged = attempt.clone();
    let recorded = state
        .db
        .write(move |txn| Box::pin(async move { outbox::record(txn, &row, &attempt, now).await }))
        .await;
    log(message, &logged, &recorded);
    recorded.unwrap_or(Recorded::LeaseLost)
}

/// One log line for a recorded attempt.
pub fn log(message: &outbox_message::Model, attempt: &Attempt, recorded: &Result<Recorded, DbErr>) {
    match recorded {
        Ok(Recorded::Sent) => {
            tracing::info!(message_id = %message.id, kind = %message.kind, channel = %message.channel, "message delivered")
        }
        Ok(Recorded::Retrying(at)) => {
            tracing::warn!(message_id = %message.id, kind = %message.kind, next_attempt_at = %at, outcome = ?attempt, "delivery failed; will retry")
        }
        Ok(Recorded::Failed(reason)) => {
            tracing::warn!(message_id = %message.id, kind = %message.kind, %reason, "delivery failed for good")
        }
        Ok(Recorded::Cancelled) => {
            tracing::info!(message_id = %message.id, outcome = ?attempt, "message cancelled")
        }
        Ok(Recorded::LeaseLost) => {
            tracing::warn!(message_id = %message.id, "lease lost to another sender; result not recorded")
        }
        Err(e) => {
            tracing::error!(message_id = %message.id, error = %e, "could not record a delivery attempt; the lease will expire and it will be retried")
        }
    }
}

enum Prepared {
    /// Do not send: record this instead.
    Stop(Attempt),
    /// The database failed: retry later.
    Db(DbErr),
}

impl From<DbErr> for Prepared {
    fn from(e: DbErr) -> Self {
        Self::Db(e)
    }
}

fn cancel(reason: &str) -> Prepared {
    Prepared::Stop(Attempt::Cancelled { reason: reason.to_owned() })
}

async fn prepare(
    state: &AppState,
    message: &mut outbox_message::Model,
    token: Option<RawToken>,
) -> Result<Composed, Prepared> {
    let conn = state.db.conn();
    let recipient = message.recipient.clone().ok_or_else(|| cancel("no recipient"))?;
    let channel = Channel::parse(&message.channel).ok_or_else(|| cancel("unknown channel"))?;
    match MessageKind::parse(&message.kind) {
        Some(MessageKind::Invitation) => {
            let invitation_id = message.invitation_id.as_deref().ok_or_else(|| cancel("no invitation"))?;
            let invitation = invitation::Entity::find_by_id(invitation_id)
                .one(conn)
                .await?
                .ok_or_else(|| cancel("invitation gone"))?;
            if InvitationStatus::parse(&invitation.status) != Some(InvitationStatus::Pending) {
                return Err(cancel("the invitation is no longer pending"));
            }
            let (shop, customer, account) =
                load_people(conn, &invitation.shop_id, &invitation.customer_id, &invitation.account_id)
                    .await?;
            let (raw, expires_at) = token_for_attempt(state, message, token).await?;
            compose_invitation(
                state,
                &shop,
                &customer,
                &account.username,
                channel,
                &recipient,
                &raw,
                expires_at,
            )
            .map_err(|e| Prepared::Stop(Attempt::Transient { reason: e.to_string(), retry_after: None }))
        }
        Some(MessageKind::PasswordReset) => {
            let token = match (message.token_id.is_none(), token) {
                (true, _) => Some(mint_reset_link(state, message).await?),
                (false, given) => given,
            };
            let token_id = message.token_id.as_deref().ok_or_else(|| cancel("no token"))?;
            let row =
                token::Entity::find_by_id(token_id).one(conn).await?.ok_or_else(|| cancel("token gone"))?;
            let account = portal_account::Entity::find_by_id(row.account_id.as_str())
                .one(conn)
                .await?
                .ok_or_else(|| cancel("account gone"))?;
            let (shop, customer, account) =
                load_people(conn, &account.shop_id, &account.customer_id, &account.id).await?;
            let recipient = message.recipient.clone().ok_or_else(|| cancel("no recipient"))?;
            let (raw, expires_at) = token_for_attempt(state, message, token).await?;
            let context = messages::ResetContext {
                lang: shop.locale.clone(),
                shop_name: shop.name.clone(),
                first_name: customer.first_name.clone(),
                username: account.username.clone(),
                reset_url: links::reset(&state.settings.public_url, &shop.id, &raw),
                expires_at: messages::shop_time(expires_at, zone(&shop)),
                shop_email: shop.email.clone(),
                shop_phone: shop.phone.clone(),
            };
            account_email(state, messages::RESET_EMAIL, &context, &shop, &customer, &recipient)
        }
        Some(MessageKind::PasswordChanged) => {
            let customer_id = message.customer_id.as_deref().ok_or_else(|| cancel("no customer"))?;
            let account = portal_account::Entity::find()
                .filter(portal_account::Column::ShopId.eq(message.shop_id.as_str()))
                .filter(portal_account::Column::CustomerId.eq(customer_id))
                .one(conn)
                .await?
                .ok_or_else(|| cancel("account gone"))?;
            let (shop, customer, account) =
                load_people(conn, &account.shop_id, &account.customer_id, &account.id).await?;
            let context = messages::ChangedContext {
                lang: shop.locale.clone(),
                shop_name: shop.name.clone(),
                first_name: customer.first_name.clone(),
                username: account.username.clone(),
                changed_at: messages::shop_time(from_millis(message.created_at), zone(&shop)),
                login_url: links::login(&state.settings.public_url, &shop.id),
                shop_email: shop.email.clone(),
                shop_phone: shop.phone.clone(),
            };
            account_email(state, messages::CHANGED_EMAIL, &context, &shop, &customer, &recipient)
        }
        None => Err(cancel("this message kind is not sent by this version")),
    }
}

fn zone(shop: &shop::Model) -> TimeZone {
    TimeZone::parse(&shop.timezone).unwrap_or_else(|_| TimeZone::parse("UTC").expect("UTC exists"))
}

/// An account email (reset, changed) rendered for the customer.
fn account_email(
    state: &AppState,
    names: [&str; 3],
    context: &impl serde::Serialize,
    shop: &shop::Model,
    customer: &customer::Model,
    recipient: &str,
) -> Result<Composed, Prepared> {
    let envelope = messages::Envelope {
        to: recipient,
        to_name: customer.first_name.clone(),
        shop_name: &shop.name,
        reply_to: shop.email.clone(),
    };
    messages::email(&state.delivery.templates, names, context, envelope)
        .map(|email| Composed::Email(Box::new(email)))
        .map_err(|e| Prepared::Stop(Attempt::Transient { reason: e.to_string(), retry_after: None }))
}

async fn load_people<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    customer_id: &str,
    account_id: &str,
) -> Result<(shop::Model, customer::Model, portal_account::Model), Prepared> {
    let shop = shop::Entity::find_by_id(shop_id).one(conn).await?.ok_or_else(|| cancel("shop gone"))?;
    if !shop.installed {
        return Err(cancel("the shop uninstalled the plugin"));
    }
    let customer = customer::Entity::find_by_id((shop_id.to_owned(), customer_id.to_owned()))
        .one(conn)
        .await?
        .filter(|c| c.deleted_at.is_none())
        .ok_or_else(|| cancel("customer deleted"))?;
    let account = portal_account::Entity::find_by_id(account_id)
        .one(conn)
        .await?
        .ok_or_else(|| cancel("account gone"))?;
    Ok((shop, customer, account))
}

/// The token in clear for this attempt: the one just issued, else the one sealed in the row (the
/// same link every attempt). A row queued before links were sealed gets a fresh value instead.
async fn token_for_attempt(
    state: &AppState,
    message: &outbox_message::Model,
    given: Option<RawToken>,
) -> Result<(RawToken, DateTime<Utc>), Prepared> {
    let token_id = message.token_id.as_deref().ok_or_else(|| cancel("no token"))?;
    let row = token::Entity::find_by_id(token_id)
        .one(state.db.conn())
        .await?
        .ok_or_else(|| cancel("token gone"))?;
    let now = state.clock.now();
    if tokens::Spent::of(&row, now).is_some() {
        return Err(cancel("the link was used, revoked or expired before it could be sent"));
    }
    let raw = match (given, message.sealed_token.as_deref()) {
        (Some(raw), _) => raw,
        (None, Some(sealed)) => state.keys.outbox.open(&message.id, sealed).ok_or_else(|| {
            cancel("the sealed link cannot be opened (altered, or sealed under another key)")
        })?,
        (None, None) => {
            let id = token_id.to_owned();
            state
                .db
                .write(move |txn| Box::pin(async move { tokens::remint(txn, &id, now).await }))
                .await?
                .ok_or_else(|| cancel("the link was used, revoked or expired before it could be sent"))?
        }
    };
    Ok((raw, from_millis(row.expires_at)))
}

/// A reset asked for on `/forgot` names only the address that was typed. The sender decides, so the
/// page does the same work whether or not the address has an account: the account of the shop with
/// that username, if any and if it has had fewer than [`RESETS_PER_HOUR`] links in the last hour,
/// gets a reset token, sealed into this row, which then goes to the customer's email; otherwise the
/// row is cancelled. All under this attempt's claim.
async fn mint_reset_link(
    state: &AppState,
    message: &mut outbox_message::Model,
) -> Result<RawToken, Prepared> {
    let now = state.clock.now();
    let ttl = TimeDelta::from_std(state.settings.portal.reset_ttl).unwrap_or(TimeDelta::hours(1));
    let row = message.clone();
    let keys = state.keys.clone();
    let minted = state
        .db
        .write(move |txn| {
            Box::pin(async move {
                let typed = row.recipient.as_deref().unwrap_or_default();
                let mut find = portal_account::Entity::find()
                    .filter(portal_account::Column::ShopId.eq(row.shop_id.as_str()))
                    .filter(portal_account::Column::Username.eq(typed));
                if txn.get_database_backend() == DbBackend::Postgres {
                    // Requests for one account are decided one at a time, so the hourly cap holds
                    // when several are attempted at once (SQLite has its single writer).
                    find = find.lock_exclusive();
                }
                let Some(account) = find.one(txn).await? else {
                    return Ok(Err("no portal account has the address that was typed"));
                };
                let recent = token::Entity::find()
                    .filter(token::Column::AccountId.eq(account.id.as_str()))
                    .filter(token::Column::Purpose.eq(Purpose::Reset.as_str()))
                    .filter(token::Column::CreatedAt.gt(to_millis(now - TimeDelta::hours(1))))
                    .count(txn)
                    .await?;
                if recent >= RESETS_PER_HOUR {
                    return Ok(Err("reset links for this account are capped for this hour"));
                }
                let (token_id, raw) = tokens::issue(
                    txn,
                    NewToken {
                        shop_id: &row.shop_id,
                        account_id: &account.id,
                        purpose: Purpose::Reset,
                        invitation_id: None,
                        expires_at: now + ttl,
                    },
                    now,
                )
                .await?;
                let customer =
                    customer::Entity::find_by_id((row.shop_id.clone(), account.customer_id.clone()))
                        .one(txn)
                        .await?;
                let recipient = customer.and_then(|c| c.email).unwrap_or_else(|| account.username.clone());
                let sealed = keys.outbox.seal(&row.id, &raw);
                let updated = outbox_message::Entity::update_many()
                    .col_expr(outbox_message::Column::TokenId, Expr::value(token_id.clone()))
                    .col_expr(outbox_message::Column::SealedToken, Expr::value(sealed.clone()))
                    .col_expr(outbox_message::Column::CustomerId, Expr::value(account.customer_id.clone()))
                    .col_expr(outbox_message::Column::Recipient, Expr::value(recipient.clone()))
                    .filter(outbox_message::Column::Id.eq(row.id.as_str()))
                    .filter(outbox_message::Column::Status.eq("pending"))
                    .filter(outbox_message::Column::ClaimToken.eq(row.claim_token.clone()))
                    .exec(txn)
                    .await?;
                if updated.rows_affected != 1 {
                    // Lost the claim: roll back, the new claim's holder decides.
                    return Err(DbErr::Custom("the claim on the reset request was lost".into()));
                }
                Ok(Ok((token_id, raw, account.customer_id, recipient, sealed)))
            })
        })
        .await?;
    match minted {
        Ok((token_id, raw, customer_id, recipient, sealed)) => {
            message.token_id = Some(token_id);
            message.customer_id = Some(customer_id);
            message.recipient = Some(recipient);
            message.sealed_token = Some(sealed);
            Ok(raw)
        }
        Err(reason) => Err(cancel(reason)),
    }
}

/// Renders the invitation for `recipient` with the link's token in clear.
#[allow(clippy::too_many_arguments)]
pub fn compose_invitation(
    state: &AppState,
    shop: &shop::Model,
    customer: &customer::Model,
    username: &str,
    channel: Channel,
    recipient: &str,
    raw: &RawToken,
    expires_at: DateTime<Utc>,
) -> Result<Composed, crate::templates::TemplateError> {
    let public = &state.settings.public_url;
    let context = InvitationContext {
        lang: shop.locale.clone(),
        shop_name: shop.name.clone(),
        first_name: customer.first_name.clone(),
        username: username.to_owned(),
        setup_url: links::setup(public, &shop.id, raw),
        login_url: links::login(public, &shop.id),
        expires_at: messages::shop_time(expires_at, zone(shop)),
        shop_email: shop.email.clone(),
        shop_phone: shop.phone.clone(),
    };
    let templates = &state.delivery.templates;
    match channel {
        Channel::Email => messages::invitation_email(templates, &context, recipient, shop.email.clone())
            .map(|email| Composed::Email(Box::new(email))),
        Channel::Sms => messages::invitation_sms(templates, &context)
            .map(|body| Composed::Sms { to: recipient.to_owned(), body }),
    }
}
