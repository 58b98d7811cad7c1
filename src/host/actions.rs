//! `POST /actions/send-portal-invitation`: the star-menu action (contract §6).
//!
//! `action.invoked` answers with the email/SMS dialog, or a message saying why no invitation can be
//! sent. `dialog.submitted` checks every rule again, issues the invitation in one transaction, makes
//! the first delivery attempt itself within the host's 3-second budget, and answers truthfully:
//! sent, queued, or refused. Messages are signed and de-duplicated by `webhook-id` like `/webhooks`;
//! a resubmission of the same `interaction_id` gets the first outcome and sends nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object, OpenApi};
use sea_orm::{ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, SqlErr};
use serde::Deserialize;

use super::{
    dedupe::{self, Claim, MessageInfo, StoredAnswer},
    dialog::{ActionAnswered, ActionResponse, StoredJson},
    events::{
        ActorWire, CustomerWire, LifecycleEventType, RawEnvelope, ShopWire, check_customer, check_shop,
    },
    intake::SignedMessage,
    problem::{HostError, HostProblem},
    webhooks::Tags,
};
use crate::{
    app::AppState,
    clock::from_millis,
    delivery::{outbox::Recorded, send},
    domain::{InteractionId, ShopId},
    entities::{customer, invitation, shop, token},
    invitations::{
        self, Channel,
        eligibility::{self, Facts, Refusal},
        issue::{IssueRequest, issue_invitation},
        staff_text::{self, Audience},
    },
    links,
    shops::{self, records, snapshot::CustomerSnapshot, snapshot::ShopSnapshot},
};

/// The route, as stored with each message.
pub const ENDPOINT: &str = "actions/send-portal-invitation";
/// The manifest's action key.
pub const ACTION_KEY: &str = "send-portal-invitation";
/// How long the request waits for the first delivery attempt (the host waits 3 s in all).
pub const INLINE_BUDGET: Duration = Duration::from_millis(2000);
/// How long a repeated submission waits for the first one's outcome.
const ANSWER_WAIT: Duration = Duration::from_millis(2500);

/// The two messages of the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum ActionEventType {
    /// The staff member picked the action in the star menu.
    #[oai(rename = "action.invoked")]
    Invoked,
    /// The staff member submitted the dialog.
    #[oai(rename = "dialog.submitted")]
    Submitted,
}

/// `data` of both action messages.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct ActionData {
    /// `send-portal-invitation`.
    pub action_key: String,
    /// Shared by a dialog and its resubmissions.
    pub interaction_id: String,
    /// The staff member.
    pub user: ActorWire,
    /// The shop as it is now.
    pub shop: ShopWire,
    /// The customer whose profile the action was picked on.
    pub customer: CustomerWire,
    /// The dialog's values (`dialog.submitted` only), e.g. `{"channel": "email"}`.
    #[serde(default)]
    pub values: Option<serde_json::Value>,
}

/// A star-menu message as the host sends it (the documented schema).
#[derive(Debug, Clone, Object)]
pub struct ActionEnvelope {
    /// `action.invoked` or `dialog.submitted`.
    #[oai(rename = "type")]
    pub event_type: ActionEventType,
    /// When it happened on the host.
    pub timestamp: DateTime<Utc>,
    /// The shop.
    pub shop_id: String,
    /// The action's data.
    pub data: ActionData,
}

/// The star-menu API.
pub struct ActionsApi {
    /// Shared service state.
    pub state: AppState,
}

#[OpenApi]
impl ActionsApi {
    /// Send Customer Portal Invitation (star menu).
    ///
    /// `action.invoked` gets the email/SMS dialog or a message; `dialog.submitted` issues the
    /// invitation and confirms it (`invitation_sent`, or `invitation_queued` while delivery is retried).
    #[oai(
        path = "/actions/send-portal-invitation",
        method = "post",
        tag = "Tags::Host",
        operation_id = "sendPortalInvitation"
    )]
    async fn send_portal_invitation(
        &self,
        message: SignedMessage<ActionEnvelope>,
    ) -> Result<ActionAnswered, HostProblem> {
        let answer = receive_action(&self.state, &message).await?;
        Ok(ActionAnswered::Ok(StoredJson::new(answer.body)))
    }
}

/// A checked action message.
#[derive(Clone)]
struct Action {
    kind: ActionEventType,
    shop: ShopSnapshot,
    customer: CustomerSnapshot,
    interaction_id: InteractionId,
    user_id: String,
    channel: Option<String>,
}

impl Action {
    fn parse<T>(message: &SignedMessage<T>) -> Result<(Self, ShopId), HostError> {
        let envelope = RawEnvelope::parse(&message.body)?;
        let kind = match envelope.event_type.as_str() {
            "action.invoked" => ActionEventType::Invoked,
            "dialog.submitted" => ActionEventType::Submitted,
            other if LifecycleEventType::from_name(other).is_some() => {
                return Err(HostError::Rule(format!(
                    "{other} belongs to the webhooks URL of the manifest, not the action URL"
                )));
            }
            other => return Err(HostError::UnknownType(other.to_owned())),
        };
        let shop_id = envelope.shop_id()?;
        let data: ActionData = envelope.data()?;
        if data.action_key != ACTION_KEY {
            return Err(HostError::Rule(format!(
                "data.action_key must be {ACTION_KEY}, not {:?}",
                data.action_key
            )));
        }
        let interaction_id = InteractionId::parse(&data.interaction_id)
            .map_err(|e| HostError::Rule(format!("data.interaction_id {e}")))?;
        let channel =
            data.values.as_ref().and_then(|v| v.get("channel")).and_then(|c| c.as_str()).map(str::to_owned);
        let action = Self {
            kind,
            shop: check_shop(&data.shop, &shop_id, "data.shop")?,
            customer: check_customer(&data.customer, "data.customer")?,
            interaction_id,
            user_id: data.user.id.chars().take(64).collect(),
            channel,
        };
        Ok((action, shop_id))
    }
}

/// Processes one verified action message and returns the answer to give (already stored).
pub async fn receive_action<T>(
    state: &AppState,
    message: &SignedMessage<T>,
) -> Result<StoredAnswer, HostError> {
    let (action, shop_id) = Action::parse(message)?;
    let answer = match action.kind {
        ActionEventType::Invoked => invoked(state, message, &action, &shop_id).await,
        ActionEventType::Submitted => submitted(state, message, &action, &shop_id).await,
    };
    // The payload's shop snapshot may have changed the shop.
    state.shops.forget(shop_id.as_str());
    let answer = answer?;
    tracing::info!(
        webhook_id = %message.verified.id,
        shop_id = %shop_id,
        customer_id = %action.customer.id,
        interaction_id = %action.interaction_id,
        kind = ?action.kind,
        "star-menu action answered"
    );
    Ok(answer)
}

/// What one transaction of the flow decided.
enum Step {
    /// Answer this (already stored for the message).
    Answer(StoredAnswer),
    /// The invitation was issued and committed; make the first attempt.
    Issued(Box<invitations::issue::Issued>, Channel, String),
}

/// Why a transaction of the flow rolled back.
enum Stop {
    Host(HostError),
    /// The interaction's invitation exists but its first outcome is not known yet.
    WaitForInteraction,
    /// Another request issued an invitation (or took the username) at the same moment.
    Raced,
}

impl From<DbErr> for Stop {
    fn from(e: DbErr) -> Self {
        match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Self::Raced,
            _ => Self::Host(HostError::from(e)),
        }
    }
}

impl From<HostError> for Stop {
    fn from(e: HostError) -> Self {
        Self::Host(e)
    }
}

fn info<'a>(
    message_id: &'a crate::domain::WebhookId,
    shop_id: &'a ShopId,
    action: &'a Action,
) -> MessageInfo<'a> {
    MessageInfo {
        id: message_id,
        endpoint: ENDPOINT,
        event_type: match action.kind {
            ActionEventType::Invoked => "action.invoked",
            ActionEventType::Submitted => "dialog.submitted",
        },
        shop_id,
        customer_id: Some(&action.customer.id),
    }
}

async fn invoked<T>(
    state: &AppState,
    message: &SignedMessage<T>,
    action: &Action,
    shop_id: &ShopId,
) -> Result<StoredAnswer, HostError> {
    let now = state.clock.now();
    let id = message.verified.id.clone();
    let public_url = state.settings.public_url.clone();
    let (action, shop_id) = (action.clone(), shop_id.clone());
    let result = state
        .db
        .write(move |txn| {
            Box::pin(async move {
                let (action, shop_id) = (&action, &shop_id);
                let world = match World::claim_and_load(txn, &id, action, shop_id, now).await? {
                    Ok(world) => world,
                    Err(answer) => return Ok(Step::Answer(answer)),
                };
                let response = match world.evaluate(txn).await? {
                    Ok(eligible) => staff_text::dialog(&eligible),
                    Err(refusal) => staff_text::refusal(&refusal, &world.audience(&public_url)),
                };
                Ok(Step::Answer(store(txn, &id, &response).await?))
            })
        })
        .await;
    match result {
        Ok(Step::Answer(answer)) => Ok(answer),
        Ok(Step::Issued(..)) => unreachable_issue(),
        Err(Stop::Host(e)) => Err(e),
        Err(Stop::WaitForInteraction) => wait_for_message_answer(state, &message.verified.id).await,
        Err(Stop::Raced) => Err(HostError::Busy),
    }
}

fn unreachable_issue() -> Result<StoredAnswer, HostError> {
    Err(HostError::Internal("a click issued an invitation".into()))
}

async fn submitted<T>(
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
            Ok(Step::Issued(issued, channel, recipient)) => {
                return first_attempt(state, message, *issued, channel, &recipient).await;
            }
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
    let instance = state.delivery.instance.clone();
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

                let audience = world.audience(&public_url);
                let eligible = match world.evaluate(txn).await? {
                    Ok(eligible) => eligible,
                    Err(refusal) => {
                        let response = match staff_text::refusal(&refusal, &audience) {
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
                        first_attempt_by: &instance,
                    },
                    now,
                )
                .await?;
                Ok(Step::Issued(Box::new(issued), channel, recipient))
            })
        })
        .await
}

/// The first delivery attempt, made by the request itself; the answer says what became of it.
async fn first_attempt<T>(
    state: &AppState,
    message: &SignedMessage<T>,
    issued: invitations::issue::Issued,
    channel: Channel,
    recipient: &str,
) -> Result<StoredAnswer, HostError> {
    let invitations::issue::Issued { invitation, message: outbox_row, token, expires_at } = issued;
    // The attempt runs on its own task: if it outlasts the budget, it still finishes and records its
    // result (the outbox row stays leased to it), and the answer says "queued".
    let task = {
        let state = state.clone();
        tokio::spawn(async move { send::attempt(&state, &outbox_row, Some(token)).await })
    };
    let recorded = tokio::time::timeout(INLINE_BUDGET, task).await;
    let (shop, customer) = load_audience(state, &invitation).await?;
    let audience = Audience {
        shop: shop.as_ref(),
        customer: customer.as_ref(),
        login_url: links::login(&state.settings.public_url, &invitation.shop_id),
    };
    let response = match recorded {
        Ok(Ok(Recorded::Sent)) => staff_text::sent(channel, recipient, expires_at, &audience),
        Ok(Ok(Recorded::Failed(reason))) => staff_text::rejected(channel, recipient, &reason),
        Ok(Ok(Recorded::Cancelled)) => ActionResponse::close(
            crate::host::dialog::Level::Error,
            "customer_email_missing",
            "The invitation was not sent: the customer profile or the shop changed at the same moment. \
             Refresh the profile and try again."
                .to_owned(),
        ),
        _ => staff_text::queued(channel, recipient, &audience),
    };
    let body = response.to_json();
    let id = message.verified.id.clone();
    let invitation_id = invitation.id.clone();
    let answer = StoredAnswer { status: 200, body };
    let stored = answer.clone();
    state
        .db
        .write(move |txn| {
            Box::pin(async move {
                dedupe::record_answer(txn, &id, &stored).await?;
                invitation::Entity::update_many()
                    .col_expr(
                        invitation::Column::Answer,
                        sea_orm::sea_query::Expr::value(stored.body.clone()),
                    )
                    .filter(invitation::Column::Id.eq(invitation_id.as_str()))
                    .exec(txn)
                    .await?;
                Ok::<_, HostError>(())
            })
        })
        .await?;
    Ok(answer)
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
    let (shop, customer) = load_audience(state, &invitation).await?;
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

async fn load_audience(
    state: &AppState,
    invitation: &invitation::Model,
) -> Result<(Option<shop::Model>, Option<customer::Model>), HostError> {
    let conn = state.db.conn();
    let shop = shop::Entity::find_by_id(invitation.shop_id.as_str()).one(conn).await?;
    let customer = customer::Entity::find_by_id((invitation.shop_id.clone(), invitation.customer_id.clone()))
        .one(conn)
        .await?;
    Ok((shop, customer))
}

/// Waits for the answer of a message another request is processing.
async fn wait_for_message_answer(
    state: &AppState,
    id: &crate::domain::WebhookId,
) -> Result<StoredAnswer, HostError> {
    let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(answer) = dedupe::stored_answer(state.db.conn(), id).await? {
            return Ok(answer);
        }
    }
    Err(HostError::Busy)
}

async fn store(
    txn: &DatabaseTransaction,
    id: &crate::domain::WebhookId,
    response: &ActionResponse,
) -> Result<StoredAnswer, DbErr> {
    let answer = StoredAnswer { status: 200, body: response.to_json() };
    dedupe::record_answer(txn, id, &answer).await?;
    Ok(answer)
}

/// The stored world an action is judged against, after the payload's snapshots were applied.
struct World {
    shop: Option<shop::Model>,
    customer: Option<customer::Model>,
}

impl World {
    /// Claims the message; if it was answered before, that answer, otherwise the world after the
    /// payload's snapshots were applied.
    async fn claim_and_load(
        txn: &DatabaseTransaction,
        id: &crate::domain::WebhookId,
        action: &Action,
        shop_id: &ShopId,
        now: DateTime<Utc>,
    ) -> Result<Result<Self, StoredAnswer>, Stop> {
        match dedupe::claim(txn, &info(id, shop_id, action), now).await? {
            Claim::Fresh => Ok(Ok(Self::load_and_update(txn, action, shop_id, now).await?)),
            Claim::Answered(answer) => Ok(Err(answer)),
            Claim::InProgress => Err(Stop::WaitForInteraction),
        }
    }

    async fn load_and_update(
        txn: &DatabaseTransaction,
        action: &Action,
        shop_id: &ShopId,
        now: DateTime<Utc>,
    ) -> Result<Self, DbErr> {
        let Some(_) = records::find_shop(txn, shop_id).await? else {
            // Never installed: nothing is stored for a shop we do not serve.
            return Ok(Self { shop: None, customer: None });
        };
        records::store_shop(txn, &action.shop, now).await?;
        let shop = records::find_shop(txn, shop_id).await?.expect("the shop was found above");
        shops::update_customer(txn, &shop, &action.customer, now).await?;
        let customer = customer::Entity::find_by_id((
            shop_id.as_str().to_owned(),
            action.customer.id.as_str().to_owned(),
        ))
        .one(txn)
        .await?;
        Ok(Self { shop: Some(shop), customer })
    }

    async fn evaluate(
        &self,
        txn: &DatabaseTransaction,
    ) -> Result<Result<eligibility::Eligible, Refusal>, DbErr> {
        let (invitation, email_taken) = match (&self.shop, &self.customer) {
            (Some(shop), Some(customer)) => {
                let invitation = invitations::current_invitation(txn, &shop.id, &customer.id).await?;
                let taken = match customer
                    .email
                    .as_deref()
                    .and_then(|e| crate::domain::EmailAddress::parse(e).ok())
                {
                    Some(email) => invitations::email_taken(txn, &shop.id, &customer.id, &email).await?,
                    None => false,
                };
                (invitation, taken)
            }
            _ => (None, false),
        };
        Ok(eligibility::evaluate(&Facts {
            shop: self.shop.as_ref(),
            customer: self.customer.as_ref(),
            invitation: invitation.as_ref(),
            email_taken,
        }))
    }

    fn audience(&self, public_url: &url::Url) -> Audience<'_> {
        Audience {
            shop: self.shop.as_ref(),
            customer: self.customer.as_ref(),
            login_url: self.shop.as_ref().map(|s| links::login(public_url, &s.id)).unwrap_or_default(),
        }
    }
}
