//! The inbox: de-duplication of the host's messages by `webhook-id` (contract §3). A message already
//! processed gets the byte-identical answer it got the first time, and its work is not done again.
//! It knows which route received a message ([`Endpoint`]) but nothing of what the message means.
//!
//! The claim is an `INSERT … ON CONFLICT DO NOTHING` on the message's primary key, made inside the
//! same transaction as the message's effects and its stored answer. Two copies arriving together
//! cannot both win: on PostgreSQL the second insert waits for the first transaction and then finds
//! the row; on SQLite writers take turns. If the first transaction rolls back, its claim goes with it
//! and the next copy does the work.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryTrait, Set, sea_query::OnConflict,
};

mod recent;

pub use recent::RecentlyAnswered;

use crate::{
    clock::to_millis,
    db::ROWS_PER_STATEMENT,
    domain::{CustomerId, InteractionId, ShopId, WebhookId},
    entities::{staff_act, webhook_message},
};

/// The route that received a message, as stored with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /webhooks`: lifecycle and data events.
    Lifecycle,
    /// `POST /actions/send-portal-invitation`: the star-menu action.
    SendPortalInvitation,
    /// `POST /actions/portal-access`: the staff's view of portal access.
    PortalAccess,
}

impl Endpoint {
    /// As stored (the route without its leading slash).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Lifecycle => "webhooks",
            Self::SendPortalInvitation => "actions/send-portal-invitation",
            Self::PortalAccess => "actions/portal-access",
        }
    }
}

/// How long answers are kept. The host may repeat an id for up to 3 days; a margin beyond that
/// costs little.
pub const RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// The answer given to a message, kept to give it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    /// Exact body bytes (UTF-8 JSON or empty).
    pub body: String,
}

impl StoredAnswer {
    /// `204 No Content`.
    pub fn no_content() -> Self {
        Self { status: 204, body: String::new() }
    }
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First time: the caller does the work and calls [`record_answer`] in the same transaction.
    Fresh,
    /// Already answered: give this again.
    Answered(StoredAnswer),
    /// Claimed by a transaction that committed without an answer yet (work continuing after the
    /// commit); the caller decides what to say.
    InProgress,
}

/// Who a message is about, kept beside its answer so erasure can find it.
#[derive(Debug, Clone)]
pub struct MessageInfo<'a> {
    pub id: &'a WebhookId,
    /// The route that received it.
    pub endpoint: Endpoint,
    /// The envelope's `type`.
    pub event_type: &'a str,
    pub shop_id: &'a ShopId,
    pub customer_id: Option<&'a CustomerId>,
}

/// Claims the message id for this transaction, or returns what an earlier one stored. The caller
/// stores the answer with [`record_answer`] once it knows it.
pub async fn claim<C: ConnectionTrait>(
    conn: &C,
    info: &MessageInfo<'_>,
    now: DateTime<Utc>,
) -> Result<Claim, DbErr> {
    claim_with(conn, info, None, now).await
}

/// Like [`claim`], for a message whose answer is known before it is processed (a lifecycle event is
/// answered `204` if it commits at all): the claim and the answer are one insert.
pub async fn claim_answered<C: ConnectionTrait>(
    conn: &C,
    info: &MessageInfo<'_>,
    answer: &StoredAnswer,
    now: DateTime<Utc>,
) -> Result<Claim, DbErr> {
    claim_with(conn, info, Some(answer), now).await
}

async fn claim_with<C: ConnectionTrait>(
    conn: &C,
    info: &MessageInfo<'_>,
    answer: Option<&StoredAnswer>,
    now: DateTime<Utc>,
) -> Result<Claim, DbErr> {
    // A stored answer may be deleted between the insert that found it and the read (an erased
    // customer's answers go with them): then the message is claimed again, as if new.
    for _ in 0..3 {
        let inserted = webhook_message::Entity::insert(claim_row(info, answer, now))
            .on_conflict(OnConflict::column(webhook_message::Column::Id).do_nothing().to_owned())
            .exec_without_returning(conn)
            .await?;
        if inserted == 1 {
            return Ok(Claim::Fresh);
        }
        if let Some(stored) = webhook_message::Entity::find_by_id(info.id.as_str()).one(conn).await? {
            return Ok(match answer_of(stored) {
                Some(answer) => Claim::Answered(answer),
                None => Claim::InProgress,
            });
        }
    }
    Err(DbErr::RecordNotFound(format!("webhook message {} kept vanishing", info.id)))
}

/// The row that claims a message (and, with `answer`, answers it).
fn claim_row(
    info: &MessageInfo<'_>,
    answer: Option<&StoredAnswer>,
    now: DateTime<Utc>,
) -> webhook_message::ActiveModel {
    webhook_message::ActiveModel {
        id: Set(info.id.as_str().to_owned()),
        endpoint: Set(info.endpoint.as_str().to_owned()),
        event_type: Set(info.event_type.to_owned()),
        shop_id: Set(Some(info.shop_id.as_str().to_owned())),
        // Only erasure reads a message's customer, and it never forgets lifecycle messages: leaving
        // theirs out keeps every webhook out of that index (see the migration of issue 14).
        customer_id: Set(info
            .customer_id
            .filter(|_| info.endpoint != Endpoint::Lifecycle)
            .map(|c| c.as_str().to_owned())),
        status: Set(answer.map(|a| a.status as i16)),
        response_body: Set(answer.map(|a| a.body.clone())),
        received_at: Set(to_millis(now)),
    }
}

/// The answer a stored message got, if it has one yet.
fn answer_of(row: webhook_message::Model) -> Option<StoredAnswer> {
    row.status.map(|status| StoredAnswer {
        status: u16::try_from(status).unwrap_or(500),
        body: row.response_body.unwrap_or_default(),
    })
}

/// Like [`claim_answered`] for many messages at once, each received at its own time; a message
/// listed twice is claimed once. Returns what each id's claim found. An id missing from the result
/// was claimed by someone else whose row was gone again when read (its answer forgotten meanwhile):
/// claim it alone with [`claim_answered`], which tries again.
///
/// The claims are inserted in id order, one `INSERT … ON CONFLICT DO NOTHING RETURNING id` per 500,
/// then the rows of the ids not returned are read in one statement per 500. On PostgreSQL an insert
/// meeting another transaction's uncommitted claim waits for it to end; in id order, two batches
/// that share ids wait for each other one way only, never in a circle.
pub async fn claim_many_answered<C: ConnectionTrait>(
    conn: &C,
    messages: &[(MessageInfo<'_>, DateTime<Utc>)],
    answer: &StoredAnswer,
) -> Result<HashMap<String, Claim>, DbErr> {
    let mut sorted: Vec<&(MessageInfo<'_>, DateTime<Utc>)> = messages.iter().collect();
    sorted.sort_by(|a, b| a.0.id.as_str().cmp(b.0.id.as_str()));
    sorted.dedup_by(|a, b| a.0.id == b.0.id);

    let mut claims = HashMap::with_capacity(sorted.len());
    for chunk in sorted.chunks(ROWS_PER_STATEMENT) {
        let rows = chunk.iter().map(|(info, now)| claim_row(info, Some(answer), *now));
        let mut insert = webhook_message::Entity::insert_many(rows)
            .on_conflict(OnConflict::column(webhook_message::Column::Id).do_nothing().to_owned())
            .into_query();
        insert.returning_col(webhook_message::Column::Id);
        for row in conn.query_all(&insert).await? {
            claims.insert(row.try_get::<String>("", "id")?, Claim::Fresh);
        }
    }

    let taken: Vec<&str> =
        sorted.iter().map(|(info, _)| info.id.as_str()).filter(|id| !claims.contains_key(*id)).collect();
    for chunk in taken.chunks(ROWS_PER_STATEMENT) {
        let rows = webhook_message::Entity::find()
            .filter(webhook_message::Column::Id.is_in(chunk.iter().copied()))
            .all(conn)
            .await?;
        for row in rows {
            let id = row.id.clone();
            claims.insert(id, answer_of(row).map_or(Claim::InProgress, Claim::Answered));
        }
    }
    Ok(claims)
}

/// The stored answer of a message, if it has one yet.
pub async fn stored_answer<C: ConnectionTrait>(
    conn: &C,
    id: &WebhookId,
) -> Result<Option<StoredAnswer>, DbErr> {
    let row = webhook_message::Entity::find_by_id(id.as_str()).one(conn).await?;
    Ok(row.and_then(answer_of))
}

/// Stores the answer of a claimed message.
pub async fn record_answer<C: ConnectionTrait>(
    conn: &C,
    id: &WebhookId,
    answer: &StoredAnswer,
) -> Result<(), DbErr> {
    webhook_message::Entity::update_many()
        .col_expr(webhook_message::Column::Status, sea_orm::sea_query::Expr::value(answer.status as i16))
        .col_expr(webhook_message::Column::ResponseBody, sea_orm::sea_query::Expr::value(answer.body.clone()))
        .filter(webhook_message::Column::Id.eq(id.as_str()))
        .exec(conn)
        .await?;
    Ok(())
}

/// Forgets the answers to star-menu messages about the customer (their text names the customer's
/// email and mobile). Lifecycle messages stay: their answers are empty, and their ids keep a repeat
/// of the event (the deletion being applied, say) from being applied again.
pub async fn forget_customer<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    customer_id: &str,
) -> Result<(), DbErr> {
    webhook_message::Entity::delete_many()
        .filter(webhook_message::Column::ShopId.eq(shop_id))
        .filter(webhook_message::Column::CustomerId.eq(customer_id))
        .filter(webhook_message::Column::Endpoint.ne(Endpoint::Lifecycle.as_str()))
        .exec(conn)
        .await?;
    staff_act::Entity::delete_many()
        .filter(staff_act::Column::ShopId.eq(shop_id))
        .filter(staff_act::Column::CustomerId.eq(customer_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// [`forget_customer`] for every customer of the shop.
pub async fn forget_shop<C: ConnectionTrait>(conn: &C, shop_id: &str) -> Result<(), DbErr> {
    webhook_message::Entity::delete_many()
        .filter(webhook_message::Column::ShopId.eq(shop_id))
        // Implies the customer index's condition, so the index serves this too.
        .filter(webhook_message::Column::CustomerId.is_not_null())
        .filter(webhook_message::Column::Endpoint.ne(Endpoint::Lifecycle.as_str()))
        .exec(conn)
        .await?;
    staff_act::Entity::delete_many().filter(staff_act::Column::ShopId.eq(shop_id)).exec(conn).await?;
    Ok(())
}

/// Forgets answers older than [`RETENTION`]. Returns how many.
pub async fn purge_old_answers<C: ConnectionTrait>(conn: &C, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let cutoff = to_millis(now - RETENTION);
    let result = webhook_message::Entity::delete_many()
        .filter(webhook_message::Column::ReceivedAt.lt(cutoff))
        .exec(conn)
        .await?;
    let acts =
        staff_act::Entity::delete_many().filter(staff_act::Column::CreatedAt.lt(cutoff)).exec(conn).await?;
    Ok(result.rows_affected + acts.rows_affected)
}

/// The answer an interaction's submission got, if it was submitted before: a resubmitted dialog (a
/// new message, the same `interaction_id`) gets it again instead of acting twice.
pub async fn interaction_answer<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
    interaction_id: &InteractionId,
) -> Result<Option<String>, DbErr> {
    Ok(staff_act::Entity::find_by_id((shop_id.as_str().to_owned(), interaction_id.as_str().to_owned()))
        .one(conn)
        .await?
        .map(|act| act.answer))
}

/// Keeps the answer an interaction's submission got, with the customer it named (for erasure).
pub async fn remember_interaction_answer<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
    interaction_id: &InteractionId,
    customer_id: &str,
    answer: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let row = staff_act::ActiveModel {
        shop_id: Set(shop_id.as_str().to_owned()),
        interaction_id: Set(interaction_id.as_str().to_owned()),
        customer_id: Set(customer_id.to_owned()),
        answer: Set(answer.to_owned()),
        created_at: Set(to_millis(now)),
    };
    staff_act::Entity::insert(row).exec_without_returning(conn).await?;
    Ok(())
}
