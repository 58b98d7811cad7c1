//! The shop's audit trail: append-only events of what happened to a customer's portal access, each
//! recorded in the transaction of the change it describes, with the staff member for staff acts.
//! Never a token, a password or an address: an event says what happened, not to which inbox. A
//! customer's events are erased with the customer, leaving one `customer_erased` event that holds
//! only the host's customer id; events older than the retention setting are purged.

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;

use crate::{
    clock::{from_millis, to_millis},
    domain::{Channel, DeliveryFailure, StaffMember},
    entities::audit_event,
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

/// Up to `limit` events matching `query`, oldest first, after the event with id `after` (paging
/// without holding a transaction open). Returns the entries and the id to continue after.
pub async fn page<C: ConnectionTrait>(
    conn: &C,
    query: &Query,
    after: i64,
    limit: u64,
) -> Result<(Vec<Entry>, i64), DbErr> {
    let mut select = audit_event::Entity::find()
        .filter(audit_event::Column::ShopId.eq(query.shop_id.as_str()))
        .filter(audit_event::Column::Id.gt(after));
    if let Some(customer_id) = &query.customer_id {
        select = select.filter(audit_event::Column::CustomerId.eq(customer_id.as_str()));
    }
    if let Some(since) = query.since {
        select = select.filter(audit_event::Column::At.gte(to_millis(since)));
    }
    let rows = select.order_by_asc(audit_event::Column::Id).limit(limit).all(conn).await?;
    let last = rows.last().map_or(after, |r| r.id);
    Ok((rows.into_iter().map(Entry::from_row).collect(), last))
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

/// Deletes events recorded before `cutoff` (the retention setting); returns how many.
pub async fn purge_before<C: ConnectionTrait>(conn: &C, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
    Ok(audit_event::Entity::delete_many()
        .filter(audit_event::Column::At.lt(to_millis(cutoff)))
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
