//! The invitation: who may be invited (the rules), issuing one (account, set-up token and outbox row
//! in one transaction), and keeping it right when the host changes or deletes the customer.

pub mod eligibility;
pub mod issue;
pub mod staff_text;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, sea_query::Expr,
};

use crate::{
    clock::to_millis,
    domain::EmailAddress,
    entities::{invitation, outbox_message, portal_account, token, webhook_message},
    host::webhooks,
    tokens,
};

/// How an invitation travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// By email, with the set-up and login links.
    Email,
    /// By SMS, with the set-up link.
    Sms,
}

impl Channel {
    /// As stored and as the dialog's values spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }

    /// Parses `email` or `sms`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "email" => Some(Self::Email),
            "sms" => Some(Self::Sms),
            _ => None,
        }
    }
}

/// Where an invitation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationStatus {
    /// Issued; not yet accepted by the mail server or SMS gateway.
    Pending,
    /// Accepted for delivery: it cannot be sent again.
    Sent,
    /// Rejected for good or retries ran out: its token is dead and a new invitation may be sent.
    Failed,
}

impl InvitationStatus {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    /// Parses the stored form.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(Self::Pending),
            "sent" => Some(Self::Sent),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// The customer's invitation that did not fail, if any (at most one: the database enforces it).
pub async fn current_invitation<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    customer_id: &str,
) -> Result<Option<invitation::Model>, DbErr> {
    invitation::Entity::find()
        .filter(invitation::Column::ShopId.eq(shop_id))
        .filter(invitation::Column::CustomerId.eq(customer_id))
        .filter(invitation::Column::Status.ne(InvitationStatus::Failed.as_str()))
        .one(conn)
        .await
}

/// The invitation a star-menu interaction issued (not counting failed ones), if any.
pub async fn invitation_of_interaction<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    interaction_id: &str,
) -> Result<Option<invitation::Model>, DbErr> {
    invitation::Entity::find()
        .filter(invitation::Column::ShopId.eq(shop_id))
        .filter(invitation::Column::InteractionId.eq(interaction_id))
        .filter(invitation::Column::Status.ne(InvitationStatus::Failed.as_str()))
        .order_by_desc(invitation::Column::CreatedAt)
        .one(conn)
        .await
}

/// Whether another customer of the shop uses `email` as their portal username.
pub async fn email_taken<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    customer_id: &str,
    email: &EmailAddress,
) -> Result<bool, DbErr> {
    Ok(portal_account::Entity::find()
        .filter(portal_account::Column::ShopId.eq(shop_id))
        .filter(portal_account::Column::Username.eq(email.normalized()))
        .filter(portal_account::Column::CustomerId.ne(customer_id))
        .one(conn)
        .await?
        .is_some())
}

/// Makes `email` the account's username.
pub async fn set_username<C: ConnectionTrait>(
    conn: &C,
    account_id: &str,
    email: &EmailAddress,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    portal_account::Entity::update_many()
        .col_expr(portal_account::Column::Username, Expr::value(email.normalized()))
        .col_expr(portal_account::Column::UpdatedAt, Expr::value(to_millis(now)))
        .filter(portal_account::Column::Id.eq(account_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// The host changed the customer's email: the username follows (unless another account of the shop
/// already uses the new address: then the old one stays, and the log says why), and a set-up link
/// that went by email to the old address, or is still waiting to go there, dies.
pub async fn follow_email_change<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    customer_id: &str,
    new_email: Option<&EmailAddress>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let Some(account) = portal_account::Entity::find()
        .filter(portal_account::Column::ShopId.eq(shop_id))
        .filter(portal_account::Column::CustomerId.eq(customer_id))
        .one(conn)
        .await?
    else {
        return Ok(());
    };
    let new_username = new_email.map(EmailAddress::normalized);
    if new_username.as_deref() == Some(account.username.as_str()) {
        return Ok(());
    }
    match new_email {
        Some(email) if email_taken(conn, shop_id, customer_id, email).await? => {
            tracing::warn!(
                %shop_id, %customer_id, account_id = %account.id,
                "the customer's new email is already another account's username in this shop; keeping the old username"
            );
        }
        Some(email) => {
            set_username(conn, &account.id, email, now).await?;
            tracing::info!(%shop_id, %customer_id, account_id = %account.id, "portal username follows the changed email");
        }
        None => {
            tracing::info!(%shop_id, %customer_id, "the customer's email was removed; the portal username stays");
        }
    }

    // The set-up link sent by email went to the old address: it dies, and an email invitation not yet
    // delivered is abandoned (a new one may then be sent to the new address).
    let email_invitations: Vec<String> = invitation::Entity::find()
        .filter(invitation::Column::AccountId.eq(account.id.as_str()))
        .filter(invitation::Column::Channel.eq(Channel::Email.as_str()))
        .all(conn)
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    if email_invitations.is_empty() {
        return Ok(());
    }
    let revoked = tokens::revoke_where(
        conn,
        Condition::all()
            .add(token::Column::Purpose.eq(tokens::Purpose::Setup.as_str()))
            .add(token::Column::InvitationId.is_in(email_invitations.clone())),
        now,
    )
    .await?;
    let abandoned = invitation::Entity::update_many()
        .col_expr(invitation::Column::Status, Expr::value(InvitationStatus::Failed.as_str()))
        .col_expr(invitation::Column::Failure, Expr::value("the customer's email changed before delivery"))
        .col_expr(invitation::Column::FailedAt, Expr::value(to_millis(now)))
        .filter(invitation::Column::Id.is_in(email_invitations.clone()))
        .filter(invitation::Column::Status.eq(InvitationStatus::Pending.as_str()))
        .exec(conn)
        .await?;
    outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::Status, Expr::value("cancelled"))
        .col_expr(outbox_message::Column::Recipient, Expr::value(Option::<String>::None))
        .filter(outbox_message::Column::InvitationId.is_in(email_invitations))
        .filter(outbox_message::Column::Status.eq("pending"))
        .exec(conn)
        .await?;
    if revoked > 0 || abandoned.rows_affected > 0 {
        tracing::info!(%shop_id, %customer_id, revoked, "set-up link to the old email address revoked");
    }
    Ok(())
}

/// Erases what the portal keeps about a customer: the account (and with it, by cascade, its
/// invitations, tokens and sessions), every outbox row, and the stored answers to star-menu actions
/// (their text names the customer's email and mobile).
pub async fn erase_customer<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    customer_id: &str,
) -> Result<(), DbErr> {
    portal_account::Entity::delete_many()
        .filter(portal_account::Column::ShopId.eq(shop_id))
        .filter(portal_account::Column::CustomerId.eq(customer_id))
        .exec(conn)
        .await?;
    outbox_message::Entity::delete_many()
        .filter(outbox_message::Column::ShopId.eq(shop_id))
        .filter(outbox_message::Column::CustomerId.eq(customer_id))
        .exec(conn)
        .await?;
    webhook_message::Entity::delete_many()
        .filter(webhook_message::Column::ShopId.eq(shop_id))
        .filter(webhook_message::Column::CustomerId.eq(customer_id))
        .filter(webhook_message::Column::Endpoint.ne(webhooks::ENDPOINT))
        .exec(conn)
        .await?;
    Ok(())
}

/// Erases the same for every customer of a shop (after an uninstall); the customers themselves are
/// deleted by the caller, which cascades to their accounts.
pub async fn erase_shop<C: ConnectionTrait>(conn: &C, shop_id: &str) -> Result<(), DbErr> {
    outbox_message::Entity::delete_many()
        .filter(outbox_message::Column::ShopId.eq(shop_id))
        .exec(conn)
        .await?;
    webhook_message::Entity::delete_many()
        .filter(webhook_message::Column::ShopId.eq(shop_id))
        .filter(webhook_message::Column::Endpoint.ne(webhooks::ENDPOINT))
        .exec(conn)
        .await?;
    // Accounts go with their customers (foreign key cascade); delete them explicitly as well, so the
    // erasure does not depend on the database enforcing foreign keys.
    portal_account::Entity::delete_many()
        .filter(portal_account::Column::ShopId.eq(shop_id))
        .exec(conn)
        .await?;
    Ok(())
}
