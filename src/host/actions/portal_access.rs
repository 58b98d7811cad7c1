//! `POST /actions/portal-access` (contract §9): the click answers with where the customer stands
//! and the choices that fit; the submission re-checks everything and does the chosen act through
//! [`access`](crate::access). Each runs in one transaction with the message's claim and the
//! payload's snapshots, and its answer is stored with the work: a repeated message gets the same
//! bytes, and a resubmitted dialog (same `interaction_id`) gets the first submission's answer
//! without acting twice.

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, DbErr};

use super::{Action, Clicked, store, wait_for_message_answer, world};
use crate::{
    access::{self, Choice},
    domain::{ShopId, WebhookId},
    host::{
        HostContext,
        dialog::ActionResponse,
        intake::SignedMessage,
        problem::HostError,
        staff_text::{self, access as words},
    },
    inbox::{self, StoredAnswer},
    invitations::eligibility::{Opened, World, serves_portal},
};

/// The click: the status dialog, or a message.
pub(super) async fn invoked<T>(
    ctx: &HostContext,
    message: &SignedMessage<T>,
    action: &Action,
    shop_id: &ShopId,
) -> Result<StoredAnswer, HostError> {
    run(ctx, message, action, shop_id, |ctx, txn, world, action, now| {
        Box::pin(async move {
            let audience = world::audience(world, &ctx.public_url);
            let Some(customer) = customer_of(world) else {
                return Ok((words::no_portal_account(&audience).into(), Acted::Nothing));
            };
            let overview = ctx.access.overview(txn, &shop_of(action), &customer, now).await?;
            Ok((words::overview(&overview, &audience).into(), Acted::Nothing))
        })
    })
    .await
}

/// The submission: the chosen act, re-checked.
pub(super) async fn submitted<T>(
    ctx: &HostContext,
    message: &SignedMessage<T>,
    action: &Action,
    shop_id: &ShopId,
) -> Result<StoredAnswer, HostError> {
    let answer = run(ctx, message, action, shop_id, |ctx, txn, world, action, now| {
        Box::pin(async move {
            let shop_id = shop_of(action);
            if let Some(body) = inbox::interaction_answer(txn, &shop_id, &action.interaction_id).await? {
                return Ok((Answer::Stored(body), Acted::Nothing));
            }
            let audience = world::audience(world, &ctx.public_url);
            let Some(customer) = customer_of(world) else {
                let response = words::close(words::no_portal_account(&audience));
                return remember(txn, action, world, response, now).await.map(|r| (r, Acted::Nothing));
            };
            let Some(choice) = action.choice.as_deref().and_then(Choice::parse) else {
                // The dialog stays open for another choice: nothing to remember.
                return Ok((Answer::Fresh(words::invalid_choice()), Acted::Nothing));
            };
            let done = ctx.access.act(txn, &shop_id, &customer, choice, &action.user, now).await?;
            let (response, acted) = match done {
                Ok(done) => {
                    let acted = if matches!(done, access::Done::ResetSent { .. }) {
                        Acted::Queued
                    } else {
                        Acted::Nothing
                    };
                    (words::done(&done, &audience), acted)
                }
                Err(not_done) => {
                    let overview = ctx.access.overview(txn, &shop_id, &customer, now).await?;
                    (words::not_done(&not_done, &overview.standing, &audience), Acted::Nothing)
                }
            };
            remember(txn, action, world, response, now).await.map(|r| (r, acted))
        })
    })
    .await?;
    Ok(answer)
}

/// What the answer is made of: a fresh response, or the one a resubmitted dialog got before.
enum Answer {
    Fresh(ActionResponse),
    Stored(String),
}

impl From<ActionResponse> for Answer {
    fn from(response: ActionResponse) -> Self {
        Self::Fresh(response)
    }
}

/// Whether the act queued a message the sender should be woken for.
#[derive(Clone, Copy)]
enum Acted {
    Nothing,
    Queued,
}

type Step<'t> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(Answer, Acted), DbErr>> + Send + 't>>;

/// Claims the message and applies the snapshots, runs `step` on the world (unless the message was
/// answered before, or the shop does not serve the portal), stores the answer, all in one
/// transaction; then wakes the sender if a message was queued.
async fn run<T, F>(
    ctx: &HostContext,
    message: &SignedMessage<T>,
    action: &Action,
    shop_id: &ShopId,
    step: F,
) -> Result<StoredAnswer, HostError>
where
    F: for<'t> Fn(&'t HostContext, &'t DatabaseTransaction, &'t World, &'t Action, DateTime<Utc>) -> Step<'t>
        + Send
        + Sync
        + Copy
        + 'static,
{
    // Two submissions of one interaction at once (PostgreSQL): the loser's transaction rolls back on
    // the interaction's key, and the second try finds the winner's answer.
    let mut raced = false;
    loop {
        match attempt(ctx, message, action, shop_id, step).await {
            Ok((answer, acted)) => {
                if matches!(acted, Acted::Queued) {
                    ctx.wake_sender.notify_one();
                }
                return Ok(answer);
            }
            Err(Clicked::InProgress) => return wait_for_message_answer(ctx, &message.verified.id).await,
            Err(Clicked::Raced) if !raced => raced = true,
            Err(Clicked::Raced) => return Err(HostError::Busy),
            Err(Clicked::Failed(e)) => return Err(e),
        }
    }
}

/// One try of [`run`]'s transaction.
async fn attempt<T, F>(
    ctx: &HostContext,
    message: &SignedMessage<T>,
    action: &Action,
    shop_id: &ShopId,
    step: F,
) -> Result<(StoredAnswer, Acted), Clicked>
where
    F: for<'t> Fn(&'t HostContext, &'t DatabaseTransaction, &'t World, &'t Action, DateTime<Utc>) -> Step<'t>
        + Send
        + Sync
        + Copy
        + 'static,
{
    let now = ctx.clock.now();
    let id = message.verified.id.clone();
    let (action, shop_id, ctx_owned) = (action.clone(), shop_id.clone(), ctx.clone());
    ctx.db
        .write(move |txn| {
            Box::pin(async move {
                let world = match world::open(txn, &id, &action, &shop_id, now).await? {
                    Opened::Fresh(world) => world,
                    Opened::Answered(answer) => return Ok((answer, Acted::Nothing)),
                    Opened::InProgress => return Err(Clicked::InProgress),
                };
                let audience = world::audience(&world, &ctx_owned.public_url);
                let (answer, acted) = match serves_portal(world.shop.as_ref()) {
                    Err(refusal) => {
                        let response = staff_text::refusal(&refusal, &audience);
                        (Answer::Fresh(close_if_submitted(&action, response)), Acted::Nothing)
                    }
                    Ok(_) => step(&ctx_owned, txn, &world, &action, now).await?,
                };
                let stored = match answer {
                    Answer::Fresh(response) => store(txn, &id, &response).await?,
                    Answer::Stored(body) => stored_again(txn, &id, body).await?,
                };
                Ok((stored, acted))
            })
        })
        .await
}

fn close_if_submitted(action: &Action, response: ActionResponse) -> ActionResponse {
    match action.kind {
        super::ActionEventType::Invoked => response,
        super::ActionEventType::Submitted => words::close(response),
    }
}

fn shop_of(action: &Action) -> ShopId {
    action.shop.id.clone()
}

/// The customer the action is about, if the profile still exists (a deleted customer has no portal
/// access to show).
fn customer_of(world: &World) -> Option<String> {
    world.customer.as_ref().filter(|c| c.deleted_at.is_none()).map(|c| c.id.clone())
}

/// Keeps a closing answer for the interaction, so a resubmitted dialog gets it again.
async fn remember(
    txn: &DatabaseTransaction,
    action: &Action,
    world: &World,
    response: ActionResponse,
    now: DateTime<Utc>,
) -> Result<Answer, DbErr> {
    let customer = world.customer.as_ref().map_or(action.customer.id.as_str(), |c| c.id.as_str());
    let body = response.to_json();
    inbox::remember_interaction_answer(txn, &shop_of(action), &action.interaction_id, customer, &body, now)
        .await?;
    Ok(Answer::Fresh(response))
}

async fn stored_again(
    txn: &DatabaseTransaction,
    id: &WebhookId,
    body: String,
) -> Result<StoredAnswer, DbErr> {
    let answer = StoredAnswer { status: 200, body };
    inbox::record_answer(txn, id, &answer).await?;
    Ok(answer)
}
