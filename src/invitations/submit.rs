//! A star-menu submission, straight through: decide (the rules, in the transaction that claimed the
//! message and applied the payload's snapshots), issue, hand the first attempt to delivery within the
//! host's budget, and say what became of it. The answer and the attempt's result are recorded in one
//! transaction, so a resubmission finds both or neither.
//!
//! Two parts belong to layers above and are passed in as traits: the host's side ([`HostSide`]:
//! claims the message, loads the world and words the outcome) and delivery ([`Courier`]: renders and
//! sends). One submission, file by file:
//!
//! 1. `host/actions/submitted.rs` checks the `dialog.submitted` message, builds the [`Submission`]
//!    and the [`SubmitDeps`], and calls [`submit`] with itself as the [`HostSide`].
//! 2. Here, [`submit`] opens one transaction: [`HostSide::open`] (`host/actions/world.rs`) claims
//!    the message in the `inbox` and applies the payload's snapshots through `shops`; a message or
//!    interaction answered before gets that answer again.
//! 3. `eligibility.rs` ([`World::evaluate`]) applies the rules; a refusal is worded by the host's
//!    side and stored as the message's answer.
//! 4. `issue.rs` creates the account, the set-up token, the invitation (`state.rs`, pending) and its
//!    outbox row, leased to the courier ([`SubmitDeps::first_attempt`]); the transaction commits.
//! 5. `delivery/first_attempt.rs` ([`Courier::start`]) renders the invitation and sends it on a task
//!    of its own; the result comes back through `handoff.rs` if it arrives within the budget.
//! 6. `state.rs` ([`state::record_attempt`]) records the result on the `outbox` row and on the
//!    invitation, in one transaction with the answer (stored in the `inbox`, and kept on the
//!    invitation for a resubmission). If the result came too late, the courier's task records it
//!    itself, and the answer says the invitation is queued.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter};

use super::{
    InvitationStatus,
    eligibility::{Opened, Refusal, World},
    handoff::{self, Courier, Letter},
    issue::{IssueRequest, Issued, issue_invitation},
    state,
};
use crate::{
    clock::{Clock, from_millis},
    db::{Database, lost_a_race},
    domain::{Channel, CustomerId, InteractionId, ShopId, StaffMember, WebhookId},
    entities::{customer, shop, token},
    inbox::{self, StoredAnswer},
    outbox::{self, Attempt, FirstAttempt, Recorded},
    sealing::Sealer,
};

/// How long the submission waits for the first delivery attempt (the host waits 3 s in all).
const INLINE_BUDGET: Duration = Duration::from_millis(2000);
/// How long a repeated submission waits for the first one's outcome (the host waits 3 s in all).
const ANSWER_WAIT: Duration = Duration::from_millis(2500);

/// How long after its issue an invitation's first attempt may still be under way.
fn first_attempt_window() -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(ANSWER_WAIT).unwrap_or(chrono::TimeDelta::seconds(3))
}

/// A future the host's side returns, borrowing the transaction.
pub type HostFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, DbErr>> + Send + 't>>;

/// The host's side of a submission.
pub trait HostSide: Send + Sync + 'static {
    /// In the transaction: claims the message and applies the payload's snapshots.
    fn open<'t>(&'t self, txn: &'t DatabaseTransaction, now: DateTime<Utc>) -> HostFuture<'t, Opened>;
    /// The answer for `outcome`, worded for the staff member.
    fn answer(&self, outcome: &Outcome, world: &World) -> StoredAnswer;
}

/// What the staff member asked for.
pub struct Submission {
    /// The message that carried it: its answer is stored under this id.
    pub message_id: WebhookId,
    pub shop_id: ShopId,
    pub customer_id: CustomerId,
    pub interaction_id: InteractionId,
    /// The staff member.
    pub requested_by: StaffMember,
    /// The dialog's `channel` value, as given.
    pub channel: Option<String>,
}

/// Where an invitation goes.
#[derive(Clone)]
pub struct Recipient {
    pub channel: Channel,
    /// The address or number.
    pub address: String,
}

/// Without the address or number: a `?recipient` in a log must not name the customer's.
impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipient").field("channel", &self.channel).finish_non_exhaustive()
    }
}

/// What became of a submission. Not `Debug`: a rejection's reason may quote the address (a mail
/// server's `550 <address>: no such user`), and a `?outcome` in a log would leak it.
pub enum Outcome {
    /// The rules refuse an invitation now.
    Refused(Refusal),
    /// The dialog's channel is neither email nor SMS.
    InvalidChannel,
    /// SMS was picked, but the profile has no usable mobile number.
    MobileMissing,
    /// Issued, and accepted by the mail server or gateway.
    Sent { to: Recipient, expires_at: DateTime<Utc> },
    /// Issued; delivery goes on in the background.
    Queued { to: Recipient },
    /// Issued, and rejected for good.
    Rejected { to: Recipient, reason: String },
    /// Issued, and cancelled before it went: the profile or the shop changed at the same moment.
    ChangedMeanwhile,
}

/// Why a submission got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Another request holds the decision (a race lost twice, or a first outcome not known in time).
    #[error("another request is deciding on this interaction")]
    Busy,
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("{0}")]
    Internal(String),
}

/// What the submission needs from the service.
pub struct SubmitDeps<'a> {
    pub db: &'a Database,
    pub clock: &'a Clock,
    /// How long the set-up link works.
    pub ttl: Duration,
    /// Seals the set-up link into the outbox row.
    pub sealer: &'a Arc<Sealer>,
    pub courier: &'a Arc<dyn Courier>,
    /// Who makes the first attempt, and how long it holds the message: the row starts leased to it.
    pub first_attempt: &'a FirstAttempt,
}

/// Handles a submission and returns the answer to give (already stored for the message).
pub async fn submit(
    deps: &SubmitDeps<'_>,
    host: Arc<dyn HostSide>,
    submission: Arc<Submission>,
) -> Result<StoredAnswer, SubmitError> {
    let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
    let mut raced = false;
    let mut patient = true;
    loop {
        match decide(deps, &host, &submission, patient).await {
            Ok(Step::Answer(answer)) => return Ok(answer),
            Ok(Step::Issued(issue)) => {
                metrics::counter!("portal_invitation_funnel_total", "step" => "invited").increment(1);
                return first_attempt(deps, host, &submission.message_id, *issue).await;
            }
            Err(Stop::Failed(e)) => return Err(e),
            // Two submissions raced to issue: the loser looks again and finds the winner's invitation.
            Err(Stop::Raced) if !raced => raced = true,
            Err(Stop::Raced) => return Err(SubmitError::Busy),
            Err(Stop::WaitForInteraction) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(Stop::WaitForInteraction) => return answer_so_far(deps, host.as_ref(), &submission).await,
            Err(Stop::WaitForOther) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // The other invitation's first attempt outlasted the wait: answer with its state now.
            Err(Stop::WaitForOther) => patient = false,
        }
    }
}

/// What the deciding transaction decided.
enum Step {
    /// Answer this (already stored for the message).
    Answer(StoredAnswer),
    /// The invitation was issued and committed; make the first attempt.
    Issued(Box<Issue>),
}

/// Why the deciding transaction rolled back.
enum Stop {
    Failed(SubmitError),
    /// The interaction's invitation exists but its first outcome is not known yet.
    WaitForInteraction,
    /// Another interaction's invitation was just issued and its first attempt is under way.
    WaitForOther,
    /// Another request issued an invitation (or took the username) at the same moment.
    Raced,
}

impl From<DbErr> for Stop {
    fn from(e: DbErr) -> Self {
        if lost_a_race(&e) { Self::Raced } else { Self::Failed(SubmitError::Db(e)) }
    }
}

struct Issue {
    issued: Issued,
    to: Recipient,
    username: String,
    shop: shop::Model,
    customer: customer::Model,
}

/// `patient`: wait for the first outcome of an invitation another interaction just issued, rather
/// than answer while it is unknown.
async fn decide(
    deps: &SubmitDeps<'_>,
    host: &Arc<dyn HostSide>,
    submission: &Arc<Submission>,
    patient: bool,
) -> Result<Step, Stop> {
    let now = deps.clock.now();
    let ttl = deps.ttl;
    let first_attempt = deps.first_attempt.clone();
    let (host, submission, sealer) = (host.clone(), submission.clone(), deps.sealer.clone());
    deps.db
        .write(move |txn| {
            Box::pin(async move {
                let world = match host.open(txn, now).await? {
                    Opened::Fresh(world) => *world,
                    Opened::Answered(answer) => return Ok(Step::Answer(answer)),
                    Opened::InProgress => return Err(Stop::WaitForInteraction),
                };
                let (shop_id, interaction_id) = (&submission.shop_id, &submission.interaction_id);

                // A resubmission of an interaction that already issued an invitation: its outcome.
                if let Some(existing) = state::invitation_of_interaction(txn, shop_id, interaction_id).await?
                {
                    return match existing.answer {
                        Some(body) => {
                            answer_with(txn, &submission.message_id, StoredAnswer { status: 200, body }).await
                        }
                        None => Err(Stop::WaitForInteraction),
                    };
                }

                let refuse = |outcome: Outcome| {
                    answer_with(txn, &submission.message_id, host.answer(&outcome, &world))
                };
                let eligible = match world.evaluate(txn, now).await? {
                    Ok(eligible) => eligible,
                    // Two staff members at the same moment: the other one's invitation is issued and
                    // its first attempt is under way. Its outcome is known within the host's budget,
                    // so the loser is told the truth (delivered or not), not "still being retried".
                    // (Only while it is young: one whose submission died before answering would
                    // otherwise make every later submission wait.)
                    Err(Refusal::AlreadyInvited(other))
                        if patient && !other.answered && now - other.invited_at < first_attempt_window() =>
                    {
                        return Err(Stop::WaitForOther);
                    }
                    Err(refusal) => return refuse(Outcome::Refused(refusal)).await,
                };
                let Some(channel) = submission.channel.as_deref().and_then(Channel::parse) else {
                    return refuse(Outcome::InvalidChannel).await;
                };
                let address = match (channel, &eligible.mobile) {
                    (Channel::Email, _) => eligible.email.as_str().to_owned(),
                    (Channel::Sms, Some(mobile)) => mobile.as_str().to_owned(),
                    (Channel::Sms, None) => return refuse(Outcome::MobileMissing).await,
                };
                let issued = issue_invitation(
                    txn,
                    IssueRequest {
                        shop_id,
                        customer_id: &submission.customer_id,
                        email: &eligible.email,
                        channel,
                        recipient: &address,
                        interaction_id: Some(interaction_id.as_str()),
                        requested_by: Some(&submission.requested_by),
                        ttl,
                        first_attempt: &first_attempt,
                        sealer: &sealer,
                    },
                    now,
                )
                .await?;
                let World { shop: Some(shop), customer: Some(customer) } = world else {
                    return Err(Stop::Failed(SubmitError::Internal(
                        "an eligible customer without a shop".into(),
                    )));
                };
                Ok(Step::Issued(Box::new(Issue {
                    issued,
                    to: Recipient { channel, address },
                    username: eligible.email.normalized(),
                    shop,
                    customer,
                })))
            })
        })
        .await
}

/// Stores `answer` as the message's, and gives it.
async fn answer_with(
    txn: &DatabaseTransaction,
    message_id: &WebhookId,
    answer: StoredAnswer,
) -> Result<Step, Stop> {
    inbox::record_answer(txn, message_id, &answer).await?;
    Ok(Step::Answer(answer))
}

/// The first delivery attempt, handed to the courier; the answer says what became of it. The result
/// and the answer are recorded in one transaction.
async fn first_attempt(
    deps: &SubmitDeps<'_>,
    host: Arc<dyn HostSide>,
    message_id: &WebhookId,
    issue: Issue,
) -> Result<StoredAnswer, SubmitError> {
    let Issue { issued, to, username, shop, customer } = issue;
    let Issued { invitation, message: row, token, expires_at } = issued;
    let (handoff, awaited) = handoff::pair();
    let letter = Letter {
        message: row.clone(),
        shop: shop.clone(),
        customer: customer.clone(),
        username,
        channel: to.channel,
        recipient: to.address.clone(),
        token,
        expires_at,
    };
    deps.courier.clone().start(letter, handoff).map_err(SubmitError::Internal)?;
    // If the host hangs up while we wait, this future is dropped here: the attempt then records its
    // own result rather than leaving it for nobody (and the row to be sent again).
    let attempt = awaited.within(INLINE_BUDGET).await;

    let world = World { shop: Some(shop), customer: Some(customer) };
    let now = deps.clock.now();
    let (message, logged, message_id) = (row.clone(), attempt.clone(), message_id.clone());
    let written = deps
        .db
        .write(move |txn| {
            Box::pin(async move {
                let recorded = match &attempt {
                    Some(attempt) => Some(state::record_attempt(txn, &message, attempt, now).await?),
                    None => None,
                };
                let outcome = match &recorded {
                    Some(Recorded::Sent) => Outcome::Sent { to, expires_at },
                    Some(Recorded::Failed(reason)) => Outcome::Rejected { to, reason: reason.clone() },
                    // Also when the message was erased with the customer before it could be recorded.
                    _ if matches!(attempt, Some(Attempt::Cancelled { .. })) => Outcome::ChangedMeanwhile,
                    _ => Outcome::Queued { to },
                };
                let answer = host.answer(&outcome, &world);
                inbox::record_answer(txn, &message_id, &answer).await?;
                state::remember_answer(txn, &invitation.id, &answer.body).await?;
                Ok::<_, SubmitError>((answer, recorded))
            })
        })
        .await;
    let (answer, recorded) = match written {
        Ok(done) => done,
        Err(error) => {
            // The answer could not be stored; the attempt's result still must be, or the worker
            // would send again once the lease runs out.
            if let Some(attempt) = logged {
                state::record_attempt_alone(deps.db, &row, attempt, deps.clock.now()).await;
            }
            return Err(error);
        }
    };
    if let (Some(attempt), Some(recorded)) = (logged, recorded) {
        outbox::log(&row, &attempt, &Ok(recorded));
    }
    Ok(answer)
}

/// A repeat of a message (or interaction) whose first processing has not answered within the wait:
/// answer from the invitation's state, honestly (not stored: the first processing stores its own).
async fn answer_so_far(
    deps: &SubmitDeps<'_>,
    host: &dyn HostSide,
    submission: &Submission,
) -> Result<StoredAnswer, SubmitError> {
    let conn = deps.db.conn();
    let Some(invitation) =
        state::invitation_of_interaction(conn, &submission.shop_id, &submission.interaction_id).await?
    else {
        return Err(SubmitError::Busy);
    };
    if let Some(body) = invitation.answer.clone() {
        return Ok(StoredAnswer { status: 200, body });
    }
    let shop = shop::Entity::find_by_id(invitation.shop_id.as_str()).one(conn).await?;
    let customer = customer::Entity::find_by_id((invitation.shop_id.clone(), invitation.customer_id.clone()))
        .one(conn)
        .await?;
    let channel = Channel::parse(&invitation.channel).unwrap_or(Channel::Email);
    let address = match channel {
        Channel::Email => customer.as_ref().and_then(|c| c.email.clone()),
        Channel::Sms => customer.as_ref().and_then(|c| c.mobile.clone()),
    }
    .unwrap_or_default();
    let to = Recipient { channel, address };
    let outcome = if InvitationStatus::of(&invitation) == Some(InvitationStatus::Sent) {
        let expires_at = token::Entity::find()
            .filter(token::Column::InvitationId.eq(invitation.id.as_str()))
            .one(conn)
            .await?
            .map(|t| from_millis(t.expires_at))
            .unwrap_or_else(|| deps.clock.now());
        Outcome::Sent { to, expires_at }
    } else {
        Outcome::Queued { to }
    };
    Ok(host.answer(&outcome, &World { shop, customer }))
}
