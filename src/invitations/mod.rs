//! The invitation: who may be invited (the rules: [`eligibility`]), issuing one (account, set-up token
//! and outbox row in one transaction: `issue`), every change of its state ([`state`]), a star-menu
//! submission straight through ([`submit`], with the first attempt handed to delivery through
//! [`handoff`]). Here: keeping it right when the host changes the customer's email, when a password is
//! set with one of its links, and when the customer or the shop is erased.

pub mod eligibility;
pub mod handoff;
mod issue;
pub mod standing;
pub mod state;
pub mod submit;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr,
};

pub use state::InvitationStatus;

use crate::{
    audit,
    clock::to_millis,
    domain::{Channel, CustomerId, EmailAddress, ShopId},
    entities::{invitation, outbox_message, portal_account, token},
    inbox,
    outbox::{self, MessageKind},
    tokens,
};

/// Whether another customer of the shop uses `email` as their portal username.
async fn email_taken<C: ConnectionTrait>(
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
async fn set_username<C: ConnectionTrait>(
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

/// The host changed the customer's email from `old_email`: the username follows (unless another
/// account of the shop already uses the new address: then the old one stays, and the log says why),
/// and every link that went by email to the old address dies (the set-up link of an email invitation,
/// every reset link), with every message still waiting to go there.
pub async fn follow_email_change<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
    customer_id: &CustomerId,
    old_email: Option<&str>,
    new_email: Option<&EmailAddress>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let mut find = portal_account::Entity::find()
        .filter(portal_account::Column::ShopId.eq(shop_id.as_str()))
        .filter(portal_account::Column::CustomerId.eq(customer_id.as_str()));
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        // Takes turns with a reset link being minted for this account (which locks it too), so a
        // link minted for the old address cannot slip past the revocation below.
        find = find.lock_exclusive();
    }
    let Some(account) = find.one(conn).await? else {
        return Ok(());
    };
    let new_username = new_email.map(EmailAddress::normalized);
    if normalized(old_email) == new_username {
        // Only the spelling changed: the same mailbox, so its links stay good.
        return Ok(());
    }
    // Both the single-event and the bulk path of `customer.updated` (and a star-menu action's newer
    // snapshot) come through here, once per change.
    audit::record(conn, shop_id.as_str(), customer_id.as_str(), audit::Event::EmailChanged, None, now)
        .await?;
    match new_email {
        Some(_) if new_username.as_deref() == Some(account.username.as_str()) => {}
        Some(email) if email_taken(conn, shop_id.as_str(), customer_id.as_str(), email).await? => {
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

    // Links by email went to the old address: set-up links of email invitations, and reset links
    // (always by email). SMS set-up links went to the mobile and stay good.
    let email_invitations: Vec<String> = invitation::Entity::find()
        .filter(invitation::Column::AccountId.eq(account.id.as_str()))
        .filter(invitation::Column::Channel.eq(Channel::Email.as_str()))
        .all(conn)
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    let revoked = tokens::revoke_where(
        conn,
        Condition::all().add(token::Column::AccountId.eq(account.id.as_str())).add(
            Condition::any()
                .add(token::Column::Purpose.eq(tokens::Purpose::Reset.as_str()))
                .add(token::Column::InvitationId.is_in(email_invitations)),
        ),
        now,
    )
    .await?;
    // Whatever still waits to go by email somewhere other than the new address was meant for the old
    // one: an invitation (then abandoned, so a new one may be sent), a reset link, a notice.
    let mut stale: Vec<outbox_message::Model> =
        outbox::pending_for_customer(conn, shop_id.as_str(), customer_id.as_str())
            .await?
            .into_iter()
            .filter(|m| {
                m.channel == Channel::Email.as_str() && normalized(m.recipient.as_deref()) != new_username
            })
            .collect();
    // A reset asked for on `/forgot` names only the typed address until the sender picks it up: one
    // typed as the old username or address is this account's, and goes too.
    let typed: Vec<String> = [Some(account.username.clone()), normalized(old_email)]
        .into_iter()
        .flatten()
        .filter(|address| Some(address) != new_username.as_ref())
        .collect();
    if !typed.is_empty() {
        stale.extend(
            outbox::pending_requests_to(conn, shop_id.as_str(), MessageKind::PasswordReset, typed).await?,
        );
    }
    let cancelled =
        state::cancel_undelivered(conn, &stale, "the customer's email changed before delivery", now).await?;
    if revoked > 0 || cancelled > 0 {
        tracing::info!(%shop_id, %customer_id, revoked, cancelled, "links and messages to the old email address revoked");
    }
    Ok(())
}

/// A password was just set with one of the account's links (`used_token_id`): every other link it
/// was sent (the set-up link of an invitation never used, an older reset link) dies, and so does
/// every message still waiting to carry one, so whoever holds an older email cannot set the password
/// again. The message that carried the link just used evidently arrived, whatever its sender
/// recorded (a timeout after the data, say): it and its invitation count as sent, so the invitation
/// cannot be sent again.
pub async fn retire_other_links<C: ConnectionTrait>(
    conn: &C,
    account: &portal_account::Model,
    used_token_id: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let revoked = tokens::revoke_all_for_account(conn, &account.id, now).await?;
    let (arrived, carrying_links): (Vec<outbox_message::Model>, Vec<outbox_message::Model>) =
        outbox::pending_for_customer(conn, &account.shop_id, &account.customer_id)
            .await?
            .into_iter()
            .filter(|m| m.kind != MessageKind::PasswordChanged.as_str())
            .partition(|m| m.token_id.as_deref() == Some(used_token_id));
    for message in &arrived {
        state::link_arrived(conn, message, now).await?;
    }
    let cancelled =
        state::cancel_undelivered(conn, &carrying_links, "a password was set with another link", now).await?;
    if revoked > 0 || cancelled > 0 {
        tracing::info!(
            shop_id = %account.shop_id, account_id = %account.id, revoked, cancelled,
            "the account's other links revoked"
        );
    }
    Ok(())
}

fn normalized(address: Option<&str>) -> Option<String> {
    address.map(|a| EmailAddress::parse(a).map(|e| e.normalized()).unwrap_or_else(|_| a.to_lowercase()))
}

/// Erases what the portal keeps about a customer: the account (and with it, by cascade, its
/// invitations, tokens and sessions), every outbox row, the stored answers to star-menu actions
/// (their text names the customer's email and mobile), and the audit trail's events, of which one
/// `customer_erased` remains. A customer the portal never knew (no account, no event) leaves no
/// trace at all: the erasure is recorded only where there was something to erase.
pub async fn erase_customer<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
    customer_id: &CustomerId,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let (shop_id, customer_id) = (shop_id.as_str(), customer_id.as_str());
    let accounts = portal_account::Entity::delete_many()
        .filter(portal_account::Column::ShopId.eq(shop_id))
        .filter(portal_account::Column::CustomerId.eq(customer_id))
        .exec(conn)
        .await?
        .rows_affected;
    outbox::erase_customer(conn, shop_id, customer_id).await?;
    inbox::forget_customer(conn, shop_id, customer_id).await?;
    if accounts > 0 || audit::has_events(conn, shop_id, customer_id).await? {
        audit::erase_customer(conn, shop_id, customer_id, now).await?;
    }
    Ok(())
}

/// Erases the same for every customer of a shop (after an uninstall), and the shop's whole audit
/// trail; the customers themselves are deleted by the caller, which cascades to their accounts.
pub async fn erase_shop<C: ConnectionTrait>(conn: &C, shop_id: &ShopId) -> Result<(), DbErr> {
    let shop_id = shop_id.as_str();
    outbox::erase_shop(conn, shop_id).await?;
    inbox::forget_shop(conn, shop_id).await?;
    audit::erase_shop(conn, shop_id).await?;
    // Accounts go with their customers (foreign key cascade); delete them explicitly as well, so the
    // erasure does not depend on the database enforcing foreign keys.
    portal_account::Entity::delete_many()
        .filter(portal_account::Column::ShopId.eq(shop_id))
        .exec(conn)
        .await?;
    Ok(())
}
