//! One attempt to deliver one outbox message: gather what it says from the database as it is now,
//! render it, hand it to the mail server or SMS gateway within the send deadline, and record the
//! result under the claim the attempt was made with.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use super::{
    Composed, Delivery,
    messages::{self, InvitationContext},
    reset::mint_reset_link,
};
use crate::{
    clock::from_millis,
    domain::Channel,
    entities::{customer, invitation, outbox_message, portal_account, shop, token},
    invitations::{InvitationStatus, state},
    links,
    outbox::{Attempt, MessageKind, Recorded},
    tokens::{self, RawToken},
};

/// Makes one attempt at `message` (leased to this instance) and records it. The link is the copy
/// sealed in the row, opened for this attempt, so every attempt sends the same link. Only a row
/// queued before links were sealed gets a fresh value (and a reset asked for on `/forgot` gets its
/// link minted now).
pub async fn attempt(delivery: &Delivery, message: &outbox_message::Model) -> Recorded {
    let mut message = message.clone();
    let composed = match prepare(delivery, &mut message).await {
        Ok(composed) => composed,
        Err(Prepared::Stop(attempt)) => {
            return record(delivery, &message, attempt).await;
        }
        Err(Prepared::Db(e)) => {
            return record(
                delivery,
                &message,
                Attempt::Transient { reason: format!("database: {e}"), retry_after: None },
            )
            .await;
        }
    };
    let result = transmit(delivery, composed, &message).await;
    record(delivery, &message, result).await
}

/// Hands a rendered message to the mail server or SMS gateway, bounded as a whole by the send
/// deadline (`PORTAL_SEND_TIMEOUT`): connect, greeting, every command and the data for SMTP; the
/// whole request and answer for the gateway. Past the deadline the exchange is dropped (its
/// connection closed, never reused) and the attempt counts as transient: the retry sends the same
/// link.
pub async fn transmit(delivery: &Delivery, composed: Composed, message: &outbox_message::Model) -> Attempt {
    let deadline = delivery.send_timeout;
    let file = super::files::MessageFile::of(message);
    let exchange = async {
        match composed {
            Composed::Email(email) => delivery.mailer.send(*email, &file).await,
            Composed::Sms { to, body } => {
                let callback = links::sms_status(&delivery.public_url, &message.id);
                delivery.sms.send(&to, &body, &callback, &file).await
            }
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
pub async fn record(delivery: &Delivery, message: &outbox_message::Model, attempt: Attempt) -> Recorded {
    state::record_attempt_alone(&delivery.db, message, attempt, delivery.clock.now()).await
}

pub(super) enum Prepared {
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

pub(super) fn cancel(reason: &str) -> Prepared {
    Prepared::Stop(Attempt::Cancelled { reason: reason.to_owned() })
}

async fn prepare(delivery: &Delivery, message: &mut outbox_message::Model) -> Result<Composed, Prepared> {
    let conn = delivery.db.conn();
    let recipient = message.recipient.clone().ok_or_else(|| cancel("no recipient"))?;
    let channel = Channel::parse(&message.channel).ok_or_else(|| cancel("unknown channel"))?;
    match MessageKind::parse(&message.kind) {
        Some(MessageKind::Invitation) => {
            let invitation_id = message.invitation_id.as_deref().ok_or_else(|| cancel("no invitation"))?;
            let invitation = invitation::Entity::find_by_id(invitation_id)
                .one(conn)
                .await?
                .ok_or_else(|| cancel("invitation gone"))?;
            if InvitationStatus::of(&invitation) != Some(InvitationStatus::Pending) {
                return Err(cancel("the invitation is no longer pending"));
            }
            let (shop, customer, account) =
                load_people(conn, &invitation.shop_id, &invitation.customer_id, &invitation.account_id)
                    .await?;
            let (raw, expires_at) = token_for_attempt(delivery, message, None).await?;
            compose_invitation(
                delivery,
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
            // A reset asked for on `/forgot` has no link until its first attempt mints one.
            let token = match message.token_id {
                None => Some(mint_reset_link(delivery, message).await?),
                Some(_) => None,
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
            let (raw, expires_at) = token_for_attempt(delivery, message, token).await?;
            let context = messages::ResetContext {
                lang: shop.locale.clone(),
                shop_name: shop.name.clone(),
                first_name: customer.first_name.clone(),
                username: account.username.clone(),
                reset_url: links::reset(&delivery.public_url, &shop.id, &raw),
                expires_at: shop.time_zone().describe(expires_at),
                shop_email: shop.email.clone(),
                shop_phone: shop.phone.clone(),
            };
            account_email(delivery, messages::RESET_EMAIL, &context, &shop, &customer, &recipient)
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
                changed_at: shop.time_zone().describe(from_millis(message.created_at)),
                login_url: links::login(&delivery.public_url, &shop.id),
                shop_email: shop.email.clone(),
                shop_phone: shop.phone.clone(),
            };
            account_email(delivery, messages::CHANGED_EMAIL, &context, &shop, &customer, &recipient)
        }
        None => Err(cancel("this message kind is not sent by this version")),
    }
}

/// An account email (reset, changed) rendered for the customer.
fn account_email(
    delivery: &Delivery,
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
    messages::email(&delivery.templates, names, context, envelope)
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
    delivery: &Delivery,
    message: &outbox_message::Model,
    given: Option<RawToken>,
) -> Result<(RawToken, DateTime<Utc>), Prepared> {
    let token_id = message.token_id.as_deref().ok_or_else(|| cancel("no token"))?;
    let row = token::Entity::find_by_id(token_id)
        .one(delivery.db.conn())
        .await?
        .ok_or_else(|| cancel("token gone"))?;
    let now = delivery.clock.now();
    if tokens::Spent::of(&row, now).is_some() {
        return Err(cancel("the link was used, revoked or expired before it could be sent"));
    }
    let raw = match (given, message.sealed_token.as_deref()) {
        (Some(raw), _) => raw,
        (None, Some(sealed)) => delivery.sealer.open(&message.id, sealed).ok_or_else(|| {
            cancel("the sealed link cannot be opened (altered, or sealed under another key)")
        })?,
        (None, None) => {
            let id = token_id.to_owned();
            delivery
                .db
                .write(move |txn| Box::pin(async move { tokens::remint(txn, &id, now).await }))
                .await?
                .ok_or_else(|| cancel("the link was used, revoked or expired before it could be sent"))?
        }
    };
    Ok((raw, from_millis(row.expires_at)))
}

/// Renders the invitation for `recipient` with the link's token in clear.
#[allow(clippy::too_many_arguments)]
pub fn compose_invitation(
    delivery: &Delivery,
    shop: &shop::Model,
    customer: &customer::Model,
    username: &str,
    channel: Channel,
    recipient: &str,
    raw: &RawToken,
    expires_at: DateTime<Utc>,
) -> Result<Composed, crate::templates::TemplateError> {
    let public = &delivery.public_url;
    let context = InvitationContext {
        lang: shop.locale.clone(),
        shop_name: shop.name.clone(),
        first_name: customer.first_name.clone(),
        username: username.to_owned(),
        setup_url: links::setup(public, &shop.id, raw),
        login_url: links::login(public, &shop.id),
        expires_at: shop.time_zone().describe(expires_at),
        shop_email: shop.email.clone(),
        shop_phone: shop.phone.clone(),
    };
    let templates = &delivery.templates;
    match channel {
        Channel::Email => messages::invitation_email(templates, &context, recipient, shop.email.clone())
            .map(|email| Composed::Email(Box::new(email))),
        Channel::Sms => messages::invitation_sms(templates, &context)
            .map(|body| Composed::Sms { to: recipient.to_owned(), body }),
    }
}
