//! Issuing an invitation: the customer's portal account (username = their email, no password yet),
//! the invitation, its set-up token and the outbox row that delivers it, all in the caller's
//! transaction, so either everything exists or nothing does.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};

use super::state::{self, InvitationStatus};
use crate::{
    audit::{self, Event},
    clock::to_millis,
    domain::{Channel, CustomerId, EmailAddress, ShopId, StaffMember},
    entities::{invitation, outbox_message, portal_account},
    outbox::{self, FirstAttempt, Link, MessageKind, NewMessage},
    sealing::Sealer,
    tokens::{self, NewToken, Purpose, RawToken},
};

/// What to issue.
pub struct IssueRequest<'a> {
    pub shop_id: &'a ShopId,
    pub customer_id: &'a CustomerId,
    /// Their email: the username.
    pub email: &'a EmailAddress,
    pub channel: Channel,
    /// The address or number to send it to.
    pub recipient: &'a str,
    /// The star-menu interaction asking for it.
    pub interaction_id: Option<&'a str>,
    /// The staff member who asked for it.
    pub requested_by: Option<&'a StaffMember>,
    /// How long the set-up link works.
    pub ttl: Duration,
    /// The instance that will make the first delivery attempt itself (it holds the row's lease).
    pub first_attempt: &'a FirstAttempt,
    /// Seals the set-up link into the outbox row, so every attempt sends the same link.
    pub sealer: &'a Sealer,
}

/// What was issued.
pub struct Issued {
    pub invitation: invitation::Model,
    /// Its outbox row, leased to the caller for the first attempt.
    pub message: outbox_message::Model,
    /// The set-up token in clear, for that first attempt only.
    pub token: RawToken,
    /// When the set-up link stops working.
    pub expires_at: DateTime<Utc>,
}

/// Issues the invitation. The caller has checked the rules in the same transaction; the database's
/// unique indexes still refuse a second live invitation (or a taken username) if two requests race.
pub async fn issue_invitation<C: ConnectionTrait>(
    conn: &C,
    request: IssueRequest<'_>,
    now: DateTime<Utc>,
) -> Result<Issued, DbErr> {
    let (shop_id, customer_id) = (request.shop_id, request.customer_id);
    let account_id = ensure_account(conn, shop_id.as_str(), customer_id.as_str(), request.email, now).await?;

    let invitation = invitation::Model {
        id: crate::random::id("inv"),
        shop_id: shop_id.as_str().to_owned(),
        customer_id: customer_id.as_str().to_owned(),
        account_id: account_id.clone(),
        channel: request.channel.as_str().to_owned(),
        status: InvitationStatus::Pending.as_str().to_owned(),
        interaction_id: request.interaction_id.map(str::to_owned),
        requested_by: request.requested_by.map(|s| s.id.clone()),
        requested_by_name: request.requested_by.map(|s| s.name.clone()),
        answer: None,
        failure: None,
        created_at: to_millis(now),
        sent_at: None,
        failed_at: None,
    };
    state::issued(conn, &invitation).await?;
    audit::record(
        conn,
        shop_id.as_str(),
        customer_id.as_str(),
        Event::Invited { channel: request.channel },
        request.requested_by,
        now,
    )
    .await?;

    let ttl = TimeDelta::from_std(request.ttl).unwrap_or(TimeDelta::days(7));
    let expires_at = now + ttl;
    let (token_id, token) = tokens::issue(
        conn,
        NewToken {
            shop_id,
            account_id: &account_id,
            purpose: Purpose::Setup,
            invitation_id: Some(&invitation.id),
            expires_at,
        },
        now,
    )
    .await?;

    let message = outbox::enqueue(
        conn,
        NewMessage {
            shop_id,
            customer_id: Some(customer_id),
            kind: MessageKind::Invitation,
            channel: request.channel,
            recipient: request.recipient,
            invitation_id: Some(&invitation.id),
            link: Some(Link { token_id: &token_id, token: &token, sealer: request.sealer }),
        },
        Some(request.first_attempt),
        now,
    )
    .await?;
    Ok(Issued { invitation, message, token, expires_at })
}

/// The customer's account, created without a password if they have none; its username is set to the
/// email being invited.
async fn ensure_account<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    customer_id: &str,
    email: &EmailAddress,
    now: DateTime<Utc>,
) -> Result<String, DbErr> {
    let existing = portal_account::Entity::find()
        .filter(portal_account::Column::ShopId.eq(shop_id))
        .filter(portal_account::Column::CustomerId.eq(customer_id))
        .one(conn)
        .await?;
    match existing {
        Some(account) => {
            if account.username != email.normalized() {
                super::set_username(conn, &account.id, email, now).await?;
            }
            Ok(account.id)
        }
        None => {
            let id = crate::random::id("acc");
            let account = portal_account::ActiveModel {
                id: Set(id.clone()),
                shop_id: Set(shop_id.to_owned()),
                customer_id: Set(customer_id.to_owned()),
                username: Set(email.normalized()),
                password_hash: Set(None),
                password_changed_at: Set(None),
                verified_email: Set(None),
                last_login_at: Set(None),
                created_at: Set(to_millis(now)),
                updated_at: Set(to_millis(now)),
            };
            portal_account::Entity::insert(account).exec_without_returning(conn).await?;
            Ok(id)
        }
    }
}
