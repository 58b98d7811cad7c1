//! Where a customer stands with the portal, read from what is stored: their latest invitation and
//! what became of its message and link (`invitations::standing`), their account (password, last login, throttling, sessions),
//! and the latest events of the audit trail. Facts only; `host::staff_text` words them.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};

use crate::{
    accounts::throttle::{self, Keys},
    audit::{self, Entry},
    clock::{from_millis, to_millis},
    domain::ShopId,
    entities::{customer, invitation, login_throttle, portal_account, session},
    invitations::{
        InvitationStatus,
        standing::{self as invitation_standing, InvitationStanding},
    },
};

/// How many events of the trail the staff see.
pub const HISTORY: u64 = 5;

/// Everything the staff's status line says about one customer.
#[derive(Debug, Clone)]
pub struct Standing {
    /// The customer's latest invitation, whatever became of it.
    pub invitation: Option<InvitationStanding>,
    pub account: Option<AccountStanding>,
    /// The latest events, newest first.
    pub history: Vec<Entry>,
}

/// The customer's account.
#[derive(Debug, Clone)]
pub struct AccountStanding {
    pub id: String,
    pub password_set_at: Option<DateTime<Utc>>,
    pub last_login_at: Option<DateTime<Utc>>,
    /// Failed logins are making the customer wait.
    pub slowed: Option<Slowed>,
    /// Sessions that can still be used.
    pub live_sessions: u64,
}

/// Logins slowed down after failures in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slowed {
    pub failures: i32,
    /// The next attempt is judged from then, if that is still to come.
    pub until: Option<DateTime<Utc>>,
}

impl Standing {
    /// Never invited and no account: nothing to show but that.
    pub fn is_blank(&self) -> bool {
        self.invitation.is_none() && self.account.is_none()
    }

    /// The invitation if it still counts (pending or sent): it blocks a new one.
    pub fn live_invitation(&self) -> Option<&InvitationStanding> {
        self.invitation.as_ref().filter(|i| i.status != InvitationStatus::Failed)
    }
}

/// What reading the account's state needs from the settings.
pub struct Readers<'a> {
    /// Names the customer's login-throttle counter.
    pub keys: &'a Keys,
    /// A session unused this long is over, whether or not the housekeeping removed it yet.
    pub session_idle: std::time::Duration,
}

/// Reads where the customer stands at `now`.
pub async fn load<C: ConnectionTrait>(
    conn: &C,
    readers: &Readers<'_>,
    shop_id: &ShopId,
    customer_id: &str,
    now: DateTime<Utc>,
) -> Result<Standing, DbErr> {
    let latest = invitation::Entity::find()
        .filter(invitation::Column::ShopId.eq(shop_id.as_str()))
        .filter(invitation::Column::CustomerId.eq(customer_id))
        .order_by_desc(invitation::Column::CreatedAt)
        .one(conn)
        .await?;
    let invitation = match latest {
        Some(row) => Some(invitation_standing::load(conn, row, now).await?),
        None => None,
    };
    let account = portal_account::Entity::find()
        .filter(portal_account::Column::ShopId.eq(shop_id.as_str()))
        .filter(portal_account::Column::CustomerId.eq(customer_id))
        .one(conn)
        .await?;
    let account = match account {
        Some(row) => Some(account_standing(conn, readers, row, now).await?),
        None => None,
    };
    let history = audit::recent(conn, shop_id.as_str(), customer_id, HISTORY).await?;
    Ok(Standing { invitation, account, history })
}

/// The customer's profile as stored (not deleted), for the choices that need an address.
pub async fn profile<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
    customer_id: &str,
) -> Result<Option<customer::Model>, DbErr> {
    Ok(customer::Entity::find_by_id((shop_id.as_str().to_owned(), customer_id.to_owned()))
        .one(conn)
        .await?
        .filter(|c| c.deleted_at.is_none()))
}

async fn account_standing<C: ConnectionTrait>(
    conn: &C,
    readers: &Readers<'_>,
    account: portal_account::Model,
    now: DateTime<Utc>,
) -> Result<AccountStanding, DbErr> {
    let counter =
        login_throttle::Entity::find_by_id(readers.keys.account(&account.shop_id, &account.username))
            .one(conn)
            .await?;
    let slowed = counter.and_then(|c| {
        let recent = from_millis(c.last_failure_at) + throttle::FORGET_AFTER > now;
        (recent && c.failures >= throttle::PER_ACCOUNT.free).then(|| Slowed {
            failures: c.failures,
            until: Some(from_millis(c.blocked_until)).filter(|u| *u > now),
        })
    });
    let idle = chrono::TimeDelta::from_std(readers.session_idle).unwrap_or(chrono::TimeDelta::days(1));
    let live_sessions = session::Entity::find()
        .filter(session::Column::AccountId.eq(account.id.as_str()))
        .filter(session::Column::ExpiresAt.gt(to_millis(now)))
        .filter(session::Column::LastSeenAt.gt(to_millis(now - idle)))
        .count(conn)
        .await?;
    Ok(AccountStanding {
        password_set_at: account.password_hash.as_ref().and(account.password_changed_at).map(from_millis),
        last_login_at: account.last_login_at.map(from_millis),
        slowed,
        live_sessions,
        id: account.id,
    })
}
