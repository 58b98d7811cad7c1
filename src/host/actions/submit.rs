//! `dialog.submitted`: check every rule again, issue the invitation, make the first delivery attempt
//! within the host's budget, and answer with what became of it.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use tokio::sync::Notify;

use super::{ANSWER_WAIT, Action, INLINE_BUDGET, Step, Stop, store, world::World};
use crate::{
    app::AppState,
    clock::from_millis,
    delivery::{
        outbox::{self, Attempt, Recorded},
        send,
    },
    domain::ShopId,
    entities::{customer, invitation, outbox_message, shop, token},
    host::{
        dedupe::{self, StoredAnswer},
        dialog::{ActionResponse, Level},
        intake::SignedMessage,
        problem::HostError,
    },
    invitations::{
        self, Channel,
        issue::{IssueRequest, Issued, issue_invitation},
        staff_text::{self, Audience},
    },
    links,
};

/// An invitation just issued, with what its first attempt needs (read in the same transaction).
pub(super) struct Issue {
    issued: Issued,
    channel: Channel,
    recipient: String,
    username: String,
    shop: shop::Model,
    customer: customer::Model,
}

/// Handles a submission: answers it, or issues the invitation and makes the first attempt.
pub(super) async fn submitted<T>(
    state: &AppState,
    message: &SignedMessage<T>,
    action: &Action,
    shop_id: &ShopId,
) -> Result<StoredAnswer, HostError> {
    let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
    let mut raced = false;
    loop {
        match submit_transaction(state, message, action, shop_id).await {
            Ok(Step::Answer(answer)) => return Ok(answer),
            Ok(Step::Issued(issue)) => return first_attempt(state, message, *issue).await,
            Err(Stop::Host(e)) => return Err(e),
            // Two submissions raced to issue: the loser looks again and finds the winner's invitation.
            Err(Stop::Raced) if !raced => raced = true,
            Err(Stop::Raced) => return Err(HostError::Busy),
            Err(Stop::WaitForInteraction) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(Stop::WaitForInteraction) => return answer_from_state(state, action, shop_id).await,
        }
    }
}

async fn submit_transaction<T>(
    state: &AppState,
    message: &SignedMessage<T>,
    action: &Action,
    shop_id: &ShopId,
) -> Result<Step, Stop> {
    let now = state.clock.now();
    let id = message.verified.id.clone();
    let public_url = state.settings.public_url.clone();
    let ttl = state.settings.invitation_ttl;
    let first_attempt =
        outbox::FirstAttempt { owner: state.delivery.instance.clone(), lease: state.delivery.lease };
    let keys = state.keys.clone();
    let (action, shop_id) = (action.clone(), shop_id.clone());
    state
        .db
        .write(move |txn| {
            Box::pin(async move {
                let (action, shop_id) = (&action, &shop_id);
                let world = match World::claim_and_load(txn, &id, action, shop_id, now).await? {
                    Ok(world) => world,
                    Err(answer) => return Ok(Step::Answer(answer)),
                };

                // A resubmission of an interaction that already issued an invitation: its outcome.
                if let Some(existing) = invitations::invitation_of_interaction(
                    txn,
                    shop_id.as_str(),
                    action.interaction_id.as_str(),
                )
                .await?
                {
                    return match existing.answer {
                        Some(body) => {
                            let answer = StoredAnswer { status: 200, body };
                            dedupe::record_answer(txn, &id, &answer).await?;
                            Ok(Step::Answer(answer))
                        }
                        None => Err(Stop::WaitForInteraction),
                    };
                }

                let eligible = match world.evaluate(txn).await? {
                    Ok(eligible) => eligible,
                    Err(refusal) => {
                        let response = match staff_text::refusal(&refusal, &world.audience(&public_url)) {
                            ActionResponse::Message(m) => ActionResponse::Close(m),
                            other => other,
                        };
                        return Ok(Step::Answer(store(txn, &id, &response).await?));
                    }
                };
                let channel = match action.channel.as_deref().and_then(Channel::parse) {
                    Some(channel) => channel,
                    None => return Ok(Step::Answer(store(txn, &id, &staff_text::invalid_channel()).await?)),
                };
                let recipient = match (channel, &eligible.mobile) {
                    (Channel::Email, _) => eligible.email.as_str().to_owned(),
                    (Channel::Sms, Some(mobile)) => mobile.as_str().to_owned(),
                    (Channel::Sms, None) => {
                        return Ok(Step::Answer(store(txn, &id, &staff_text::mobile_missing()).await?));
                    }
                };
                let issued = issue_invitation(
                    txn,
                    IssueRequest {
                        shop_id: shop_id.as_str(),
                        customer_id: action.customer.id.as_str(),
                        email: &eligible.email,
                        channel,
                        recipient: &recipient,
                        interaction_id: Some(action.interaction_id.as_str()),
                        requested_by: Some(&action.user_id),
                        ttl,
                        first_attempt: &first_attempt,
                        sealer: &keys.outbox,
                    },
                    now,
                )
                .await?;
                let (Some(shop), Some(customer)) = (world.shop, world.customer) else {
                    return Err(Stop::Host(HostError::Internal(
                        "an eligible customer without a shop".into(),
                    )));
                };
                Ok(Step::Issued(Box::new(Issue {
                    issued,
                    channel,
                    recipient,
                    username: eligible.email.normalized(),
                    shop,
                    customer,
                })))
            })
        })
        .await
}

/// Where the first attempt's result goes: to the request, if it is still waiting, else the attempt
/// records itself.
enum Handoff {
    Waiting,
    Arrived(Attempt),
    GaveUp,
}

/// Hands the attempt back to its own task when the waiting request goes away before taking it.
struct GiveUpOnDrop(Arc<(Mutex<Handoff>, Notify)>);

impl Drop for GiveUpOnDrop {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.0.0.lock()
            && matches!(*slot, Handoff::Waiting)
        {
            *slot = Handoff::GaveUp;
        }
    }
}

/// The first delivery attempt, made by the request itself; the answer says what became of it. The
/// result and the answer are recorded in one transaction.
async fn first_attempt<T>(
    state: &AppState,
    message: &SignedMessage<T>,
    issue: Issue,
) -> Result<StoredAnswer, HostError> {
    let Issue { issued, channel, recipient, username, shop, customer } = issue;
    let Issued { invitation, message: outbox_row, token, expires_at } = issued;
    let composed =
        send::compose_invitation(state, &shop, &customer, &username, channel, &recipient, &token, expires_at)
            .map_err(|e| HostError::Internal(e.to_string()))?;

    // The attempt runs on its own task: if it outlasts the budget it still finishes and records its
    // own result (the outbox row stays leased to it), and the answer says "queued".
    let handoff = Arc::new((Mutex::new(Handoff::Waiting), Notify::new()));
    {
        let (state, handoff, row) = (state.clone(), handoff.clone(), outbox_row.clone());
        state.delivery.in_flight.clone().spawn(async move {
            let attempt = match still_to_send(&state, &row).await {
                None => send::transmit(&state, composed, &row).await,
                Some(stop) => stop,
            };
            let unclaimed = {
                let mut slot = handoff.0.lock().expect("handoff lock");
                if matches!(*slot, Handoff::GaveUp) {
                    Some(attempt)
                } else {
                    *slot = Handoff::Arrived(attempt);
                    None
                }
            };
            match unclaimed {
                Some(attempt) => {
                    send::record(&state, &row, attempt).await;
                }
                None => handoff.1.notify_one(),
            }
        });
    }
    // If the host hangs up while we wait, this request is dropped here: the attempt then records
    // its own result rather than leaving it for nobody (and the row to be sent again).
    let _give_up_if_dropped = GiveUpOnDrop(handoff.clone());
    let waited = tokio::time::timeout(INLINE_BUDGET, handoff.1.notified()).await;
    let attempt = {
        let mut slot = handoff.0.lock().expect("handoff lock");
        match std::mem::replace(&mut *slot, Handoff::GaveUp) {
            Handoff::Arrived(attempt) => Some(attempt),
            _ => None,
        }
    };
    let _ = waited;

    let audience_shop = shop.clone();
    let audience_customer = customer.clone();
    let login_url = links::login(&state.settings.public_url, &invitation.shop_id);
    let id = message.verified.id.clone();
    let now = state.clock.now();
    let recipient_for_text = recipient.clone();
    let row = outbox_row.clone();
    let logged = attempt.clone();
    let written = state
        .db
        .write(move |txn| {
            Box::pin(async move {
                let recorded = match &attempt {
                    Some(attempt) => Some(outbox::record(txn, &row, attempt, now).await?),
                    None => None,
                };
                let audience = Audience { shop: Some(&audience_shop), customer: Some(&audience_customer), login_url };
                let response = match &recorded {
                    Some(Recorded::Sent) => staff_text::sent(channel, &recipient_for_text, expires_at, &audience),
                    Some(Recorded::Failed(reason)) => staff_text::rejected(channel, &recipient_for_text, reason),
                    // Also when the message was erased with the customer before it could be recorded.
                    _ if matches!(attempt, Some(Attempt::Cancelled { .. })) => ActionResponse::close(
                        Level::Error,
                        "customer_email_missing",
                        "The invitation was not sent: the customer profile or the shop changed at the same moment. \\
                         Refresh the profile and try again."
                            .to_owned(),
                    ),
                    _ => staff_text::queued(channel, &recipient_for_text, &audience),
                };
                let answer = StoredAnswer { status: 200, body: response.to_json() };
                dedupe::record_answer(txn, &id, &answer).await?;
                invitation::Entity::update_many()
                    .col_expr(invitation::Column::Answer, Expr::value(answer.body.clone()))
                    .filter(invitation::Column::Id.eq(invitation.id.as_str()))
                    .exec(txn)
                    .await?;
                Ok::<_, HostError>((answer, recorded))
            })
        })
        .await;
    let (answer, recorded) = match written {
        Ok(done) => done,
        Err(error) => {
            // The answer could not be stored; the attempt's result still must be, or the worker
            // would send again once the lease runs out.
            if let Some(attempt) = logged {
                send::record(state, &outbox_row, attempt).await;
            }
            return Err(error);
        }
    };
    if let (Some(attempt), Some(recorded)) = (logged, recorded) {
        send::log(&outbox_row, &attempt, &Ok(recorded));
    }
    Ok(answer)
}

/// Whether the invitation just committed is still to be sent (`None`), or what to record instead. The
/// customer's deletion, the shop's uninstall or an email change may have been committed since (on
/// PostgreSQL they wait only for the invitation's transaction, not for this attempt), and whatever
/// they cancelled must not go out.
async fn still_to_send(state: &AppState, row: &outbox_message::Model) -> Option<Attempt> {
    let conn = state.db.conn();
    let looked = async {
        let message = outbox_message::Entity::find_by_id(row.id.as_str()).one(conn).await?;
        let shop = shop::Entity::find_by_id(row.shop_id.as_str()).one(conn).await?;
        let customer = match &row.customer_id {
            Some(id) => customer::Entity::find_by_id((row.shop_id.clone(), id.clone())).one(conn).await?,
            None => None,
        };
        Ok::<_, sea_orm::DbErr>(if message.is_none_or(|m| m.status != "pending") {
            Some("the message was cancelled or erased before it was sent")
        } else if shop.is_none_or(|s| !s.installed) {
            Some("the shop uninstalled the plugin")
        } else if customer.is_none_or(|c| c.deleted_at.is_some()) {
            Some("customer deleted")
        } else {
            None
        })
    };
    match looked.await {
        Ok(None) => None,
        Ok(Some(reason)) => Some(Attempt::Cancelled { reason: reason.to_owned() }),
        Err(e) => Some(Attempt::Transient { reason: format!("database: {e}"), retry_after: None }),
    }
}

/// A repeat of a message (or interaction) whose first processing has not answered within the wait:
/// answer from the invitation's state, honestly.
async fn answer_from_state(
    state: &AppState,
    action: &Action,
    shop_id: &ShopId,
) -> Result<StoredAnswer, HostError> {
    let conn = state.db.conn();
    let Some(invitation) =
        invitations::invitation_of_interaction(conn, shop_id.as_str(), action.interaction_id.as_str())
            .await?
    else {
        return Err(HostError::Busy);
    };
    if let Some(body) = invitation.answer.clone() {
        return Ok(StoredAnswer { status: 200, body });
    }
    let shop = shop::Entity::find_by_id(invitation.shop_id.as_str()).one(conn).await?;
    let customer = customer::Entity::find_by_id((invitation.shop_id.clone(), invitation.customer_id.clone()))
        .one(conn)
        .await?;
    let audience = Audience {
        shop: shop.as_ref(),
        customer: customer.as_ref(),
        login_url: links::login(&state.settings.public_url, shop_id.as_str()),
    };
    let channel = Channel::parse(&invitation.channel).unwrap_or(Channel::Email);
    let recipient = match channel {
        Channel::Email => customer.as_ref().and_then(|c| c.email.clone()),
        Channel::Sms => customer.as_ref().and_then(|c| c.mobile.clone()),
    }
    .unwrap_or_default();
    let response = if invitation.status == "sent" {
        let expires = token::Entity::find()
            .filter(token::Column::InvitationId.eq(invitation.id.as_str()))
            .one(conn)
            .await?
            .map(|t| from_millis(t.expires_at))
            .unwrap_or_else(|| state.clock.now());
        staff_text::sent(channel, &recipient, expires, &audience)
    } else {
        staff_text::queued(channel, &recipient, &audience)
    };
    Ok(StoredAnswer { status: 200, body: response.to_json() })
}
