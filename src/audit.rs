//! The shop's audit trail: append-only events of what happened to a customer's portal access, each
//! recorded in the transaction of the change it describes, with the staff member for staff acts.
//! Never a token, a password or an address: an event says what happened, not to which inbox. A
//! customer's events are erased with the customer, leaving one `customer_erased` event that holds
//! only the host's customer id; events older than the retention setting are purged.

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, Query as Sql},
};
use serde::Serialize;

use crate::{
    clock::{from_millis, to_millis},
    domain::{Channel, DeliveryFailure, StaffMember},
    entities::{audit_event, portal_account},
};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A staff member sent an invitation.
    Invited { channel: Channel },
    /// The invitation reached the customer's mail server, or their phone.
    Delivered { channel: Channel },
    /// The invitation did not reach the customer.
    DeliveryFailed { channel: Channel, reason: DeliveryFailure },
    /// The customer set their password with the invitation's link.
    PasswordSet,
    /// The customer logged in with their password.
    LoggedIn,
    /// Failed logins made the login page slow down for the customer.
    LoginSlowed,
    /// A password-reset link was emailed (asked for by the customer, or by a staff member).
    ResetRequested,
    /// The customer set a new password with a reset link.
    ResetCompleted,
    /// A staff member ended the customer's portal sessions.
    SessionsEnded,
    /// A staff member cancelled an invitation whose link was never used.
    InvitationCancelled,
    /// The host changed the customer's email address (their username).
    EmailChanged,
    /// The customer was deleted on the host, and their data erased.
    CustomerErased,
}

impl Event {
    /// As stored and printed.
    pub fn name(self) -> &'static str {
        match self {
            Self::Invited { .. } => "invited",
            Self::Delivered { .. } => "delivered",
            Self::DeliveryFailed { .. } => "delivery_failed",
            Self::PasswordSet => "password_set",
            Self::LoggedIn => "logged_in",
            Self::LoginSlowed => "login_slowed",
            Self::ResetRequested => "reset_requested",
            Self::ResetCompleted => "reset_completed",
            Self::SessionsEnded => "sessions_ended",
            Self::InvitationCancelled => "invitation_cancelled",
            Self::EmailChanged => "email_changed",
            Self::CustomerErased => "customer_erased",
        }
    }

    fn detail(self) -> Option<Detail> {
        match self {
            Self::Invited { channel } | Self::Delivered { channel } => {
                Some(Detail { channel: Some(channel.as_str().to_owned()), reason: None })
            }
            Self::DeliveryFailed { channel, reason } => Some(Detail {
                channel: Some(channel.as_str().to_owned()),
                reason: Some(reason.as_str().to_owned()),
            }),
            _ => None,
        }
    }
}

/// The event's particulars, as stored in `detail` and printed beside the event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Detail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// A delivery failure's class ([`DeliveryFailure::as_str`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The staff member of an entry, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct By {
    pub id: String,
    pub name: String,
}

/// One recorded event, as read back (and printed by `portal-invites audit`, one JSON line each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    #[serde(serialize_with = "rfc3339_utc")]
    pub at: DateTime<Utc>,
    pub shop_id: String,
    pub customer_id: String,
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<By>,
    #[serde(flatten)]
    pub detail: Detail,
}

fn rfc3339_utc<S: serde::Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl Entry {
    fn from_row(row: audit_event::Model) -> Self {
        let by = match (row.by_id, row.by_name) {
            (Some(id), name) => Some(By { id, name: name.unwrap_or_default() }),
            (None, _) => None,
        };
        let detail = row.detail.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or_default();
        Self {
            at: from_millis(row.at),
            shop_id: row.shop_id,
            customer_id: row.customer_id,
            event: row.event,
            by,
            detail,
        }
    }

    /// The channel of an invitation event.
    pub fn channel(&self) -> Option<Channel> {
        self.detail.channel.as_deref().and_then(Channel::parse)
    }

    /// The class of a delivery failure.
    pub fn failure(&self) -> Option<DeliveryFailure> {
        self.detail.reason.as_deref().and_then(DeliveryFailure::parse)
    }
}

/// Appends an event about a customer, in the caller's transaction.
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    customer_id: &str,
    event: Event,
    by: Option<&StaffMember>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let detail = event.detail().map(|d| serde_json::to_string(&d).unwrap_or_default());
    let row = audit_event::ActiveModel {
        id: NotSet,
        shop_id: Set(shop_id.to_owned()),
        customer_id: Set(customer_id.to_owned()),
        event: Set(event.name().to_owned()),
        at: Set(to_millis(now)),
        by_id: Set(by.map(|b| b.id.clone())),
        by_name: Set(by.map(|b| b.name.clone())),
        detail: Set(detail),
    };
    audit_event::Entity::insert(row).exec_without_returning(conn).await?;
    Ok(())
}

/// Appends an event about whichever customer of the shop has the portal account `username`, if one
/// does, in the caller's transaction. One statement (`INSERT … SELECT`) whether or not the account
/// exists: a caller on a path an attacker can time (a failed login) does the same work either way.
pub async fn record_for_username<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    username: &str,
    event: Event,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use audit_event::Column as A;
    use portal_account::Column as P;
    let detail = event.detail().map(|d| serde_json::to_string(&d).unwrap_or_default());
    let account = Sql::select()
        .column(P::ShopId)
        .column(P::CustomerId)
        .expr(Expr::val(event.name()))
        .expr(Expr::val(to_millis(now)))
        .expr(Expr::val(detail))
        .from(portal_account::Entity)
        .and_where(P::ShopId.eq(shop_id))
        .and_where(P::Username.eq(username))
        .to_owned();
    let insert = Sql::insert()
        .into_table(audit_event::Entity)
        .columns([A::ShopId, A::CustomerId, A::Event, A::At, A::Detail])
        .select_from(account)
        .map_err(|e| DbErr::Custom(format!("the audit insert is malformed: {e}")))?
        .to_owned();
    conn.execute(&insert).await?;
    Ok(())
}

/// Takes back `event` recorded at `at` for the account `username`, when the change it described was
/// undone within the same request (a login that counted as failed until it proved right). Like
/// [`record_for_username`], the same statement whether or not the account exists.
pub async fn retract_for_username<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    username: &str,
    event: Event,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let customer = Sql::select()
        .column(portal_account::Column::CustomerId)
        .from(portal_account::Entity)
        .and_where(portal_account::Column::ShopId.eq(shop_id))
        .and_where(portal_account::Column::Username.eq(username))
        .to_owned();
    audit_event::Entity::delete_many()
        .filter(audit_event::Column::ShopId.eq(shop_id))
        .filter(audit_event::Column::CustomerId.in_subquery(customer))
        .filter(audit_event::Column::Event.eq(event.name()))
        .filter(audit_event::Column::At.eq(to_millis(at)))
        .exec(conn)
        .await?;
    Ok(())
}

/// The customer's latest `limit` events, newest first.
pub async fn recent<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    customer_id: &str,
    limit: u64,
) -> Result<Vec<Entry>, DbErr> {
    let rows = audit_event::Entity::find()
        .filter(audit_event::Column::ShopId.eq(shop_id))
        .filter(audit_event::Column::CustomerId.eq(customer_id))
        .order_by_desc(audit_event::Column::At)
        .order_by_desc(audit_event::Column::Id)
        .limit(limit)
        .all(conn)
        .await?;
    Ok(rows.into_iter().map(Entry::from_row).collect())
}

/// Which events to read.
#[derive(Debug, Clone)]
pub struct Query {
    pub shop_id: String,
    pub customer_id: Option<String>,
    /// Only events at or after then.
    pub since: Option<DateTime<Utc>>,
}

/// Where a page of [`page`] ended: the next one starts after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    at: i64,
    id: i64,
}

/// A page of events, oldest first.
#[derive(Debug, Clone)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// Where the next page starts; `None` when this one was the last.
    pub next: Option<Cursor>,
}

/// Up to `limit` events matching `query`, oldest first (by time, then by the order they were
/// recorded in), after `after`: a reader pages through a large shop without holding a transaction
/// open, and each page is a range of the `(shop, time)` or `(shop, customer, time)` index.
pub async fn page<C: ConnectionTrait>(
    conn: &C,
    query: &Query,
    after: Option<Cursor>,
    limit: u64,
) -> Result<Page, DbErr> {
    use audit_event::Column as A;
    let mut select = audit_event::Entity::find().filter(A::ShopId.eq(query.shop_id.as_str()));
    if let Some(customer_id) = &query.customer_id {
        select = select.filter(A::CustomerId.eq(customer_id.as_str()));
    }
    if let Some(since) = query.since {
        select = select.filter(A::At.gte(to_millis(since)));
    }
    if let Some(Cursor { at, id }) = after {
        select = select.filter(
            Condition::any().add(A::At.gt(at)).add(Condition::all().add(A::At.eq(at)).add(A::Id.gt(id))),
        );
    }
    let rows = select.order_by_asc(A::At).order_by_asc(A::Id).limit(limit).all(conn).await?;
    let next = match rows.last() {
        Some(last) if rows.len() as u64 == limit => Some(Cursor { at: last.at, id: last.id }),
        _ => None,
    };
    Ok(Page { entries: rows.into_iter().map(Entry::from_row).collect(), next })
}

/// Whether the customer has any event.
pub async fn has_events<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    customer_id: &str,
) -> Result<bool, DbErr> {
    let found = audit_event::Entity::find()
        .filter(audit_event::Column::ShopId.eq(shop_id))
        .filter(audit_event::Column::CustomerId.eq(customer_id))
        .one(conn)
        .await?;
    Ok(found.is_some())
}

/// Erases the customer's events, leaving one `customer_erased` that holds only the host's id.
pub async fn erase_customer<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    customer_id: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    audit_event::Entity::delete_many()
        .filter(audit_event::Column::ShopId.eq(shop_id))
        .filter(audit_event::Column::CustomerId.eq(customer_id))
        .exec(conn)
        .await?;
    record(conn, shop_id, customer_id, Event::CustomerErased, None, now).await
}

/// Erases a shop's whole trail (its personal data is erased after an uninstall).
pub async fn erase_shop<C: ConnectionTrait>(conn: &C, shop_id: &str) -> Result<u64, DbErr> {
    Ok(audit_event::Entity::delete_many()
        .filter(audit_event::Column::ShopId.eq(shop_id))
        .exec(conn)
        .await?
        .rows_affected)
}

/// Deletes up to `limit` events recorded before `cutoff` (the retention setting); returns how many.
/// Bounded, so a first purge of a large trail is many short transactions, not one that holds
/// SQLite's single writer for long; the caller repeats while a batch comes back full.
pub async fn purge_before<C: ConnectionTrait>(
    conn: &C,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<u64, DbErr> {
    let oldest = Sql::select()
        .column(audit_event::Column::Id)
        .from(audit_event::Entity)
        .and_where(audit_event::Column::At.lt(to_millis(cutoff)))
        .limit(limit)
        .to_owned();
    Ok(audit_event::Entity::delete_many()
        .filter(audit_event::Column::Id.in_subquery(oldest))
        .exec(conn)
        .await?
        .rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_prints_as_one_json_line_with_utc_time_and_its_staff_member() {
        let entry = Entry {
            at: DateTime::parse_from_rfc3339("2026-12-02T10:15:00+10:00").unwrap().to_utc(),
            shop_id: "shop_1".into(),
            customer_id: "cus_1".into(),
            event: "invited".into(),
            by: Some(By { id: "usr_9".into(), name: "Sam".into() }),
            detail: Detail { channel: Some("sms".into()), reason: None },
        };
        assert_eq!(
            serde_json::to_string(&entry).unwrap(),
            r#"{"at":"2026-12-02T00:15:00.000Z","shop_id":"shop_1","customer_id":"cus_1","event":"invited","by":{"id":"usr_9","name":"Sam"},"channel":"sms"}"#
        );
    }
}
