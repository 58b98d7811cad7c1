//! The star-menu actions: `POST /actions/send-portal-invitation` (contract §6) and
//! `POST /actions/portal-access` (§9, `portal_access.rs`).
//!
//! Send Customer Portal Invitation: `action.invoked` (here) answers with the email/SMS dialog, or a message saying why no invitation
//! can be sent. `dialog.submitted` (`submitted.rs`) hands the request to
//! [`invitations::submit`](crate::invitations::submit), which checks every rule again, issues the
//! invitation, has delivery make the first attempt within the host's 3-second budget, and answers
//! truthfully: sent, queued, or refused; this module words the answer. Messages are signed and
//! de-duplicated by `webhook-id` like `/webhooks`; a resubmission of the same `interaction_id` gets
//! the first outcome and sends nothing.

mod portal_access;
mod submitted;
mod world;

use std::time::Duration;

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object, OpenApi};
use sea_orm::{DatabaseTransaction, DbErr};
use serde::Deserialize;

use super::{
    HostContext,
    dialog::{ActionAnswered, ActionResponse, StoredJson},
    events::{
        ActorWire, CustomerWire, LifecycleEventType, RawEnvelope, ShopWire, check_customer, check_shop,
    },
    intake::SignedMessage,
    problem::{HostError, HostProblem},
    staff_text,
    webhooks::Tags,
};
use crate::{
    db::lost_a_race,
    domain::{InteractionId, ShopId, StaffMember, WebhookId},
    inbox::{self, Endpoint, MessageInfo, StoredAnswer},
    invitations::eligibility::Opened,
    shops::snapshot::{CustomerSnapshot, ShopSnapshot},
};

/// The manifest's key of the first action.
pub const ACTION_KEY: &str = "send-portal-invitation";
/// The manifest's key of the portal-access action.
pub const ACCESS_ACTION_KEY: &str = "portal-access";

/// Which star-menu action a message is for (each has its URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    SendInvitation,
    PortalAccess,
}

impl Which {
    fn key(self) -> &'static str {
        match self {
            Self::SendInvitation => ACTION_KEY,
            Self::PortalAccess => ACCESS_ACTION_KEY,
        }
    }

    fn endpoint(self) -> Endpoint {
        match self {
            Self::SendInvitation => Endpoint::SendPortalInvitation,
            Self::PortalAccess => Endpoint::PortalAccess,
        }
    }
}

/// How long a repeated click waits for the first copy's answer (the host waits 3 s in all).
const CLICK_WAIT: Duration = Duration::from_millis(2500);

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
    /// `send-portal-invitation` or `portal-access`, as the URL says.
    pub action_key: String,
    /// Shared by a dialog and its resubmissions.
    pub interaction_id: String,
    /// The staff member.
    pub user: ActorWire,
    /// The shop as it is now.
    pub shop: ShopWire,
    /// The customer whose profile the action was picked on.
    pub customer: CustomerWire,
    /// The dialog's values (`dialog.submitted` only), e.g. `{"channel": "email"}` or
    /// `{"action": "end_sessions"}`.
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
    pub ctx: HostContext,
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
        let answer = receive_action(&self.ctx, &message, Which::SendInvitation).await?;
        Ok(ActionAnswered::Ok(StoredJson::new(answer.body)))
    }

    /// Customer Portal access (star menu).
    ///
    /// `action.invoked` gets a dialog with where the customer stands and the choices that fit
    /// (`password_reset`, `end_sessions`, `cancel_invitation`), or a message (`no_portal_account`,
    /// `portal_status`); `dialog.submitted` does the chosen act and confirms it
    /// (`password_reset_sent`, `sessions_ended`, `invitation_cancelled`) or says why not.
    #[oai(
        path = "/actions/portal-access",
        method = "post",
        tag = "Tags::Host",
        operation_id = "portalAccess"
    )]
    async fn portal_access(
        &self,
        message: SignedMessage<ActionEnvelope>,
    ) -> Result<ActionAnswered, HostProblem> {
        let answer = receive_action(&self.ctx, &message, Which::PortalAccess).await?;
        Ok(ActionAnswered::Ok(StoredJson::new(answer.body)))
    }
}

/// A checked action message.
#[derive(Clone)]
struct Action {
    which: Which,
    kind: ActionEventType,
    shop: ShopSnapshot,
    customer: CustomerSnapshot,
    interaction_id: InteractionId,
    user: StaffMember,
    /// The dialog's `channel` (send an invitation).
    channel: Option<String>,
    /// The dialog's `action` (portal access).
    choice: Option<String>,
}

impl Action {
    fn parse<T>(message: &SignedMessage<T>, which: Which) -> Result<(Self, ShopId), HostError> {
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
        if data.action_key != which.key() {
            return Err(HostError::Rule(format!(
                "data.action_key must be {}, as the URL says, not {:?}",
                which.key(),
                data.action_key
            )));
        }
        let interaction_id = InteractionId::parse(&data.interaction_id)
            .map_err(|e| HostError::Rule(format!("data.interaction_id {e}")))?;
        let value = |name: &str| {
            data.values.as_ref().and_then(|v| v.get(name)).and_then(|c| c.as_str()).map(str::to_owned)
        };
        let action = Self {
            which,
            kind,
            shop: check_shop(&data.shop, &shop_id, "data.shop")?,
            customer: check_customer(&data.customer, "data.customer")?,
            interaction_id,
            user: StaffMember::from_host(&data.user.id, &data.user.name),
            channel: value("channel"),
            choice: value("action"),
        };
        Ok((action, shop_id))
    }
}

/// Processes one verified action message and returns the answer to give (already stored).
pub async fn receive_action<T>(
    ctx: &HostContext,
    message: &SignedMessage<T>,
    which: Which,
) -> Result<StoredAnswer, HostError> {
    let (action, shop_id) = Action::parse(message, which)?;
    let answer = match (which, action.kind) {
        (Which::SendInvitation, ActionEventType::Invoked) => invoked(ctx, message, &action, &shop_id).await,
        (Which::SendInvitation, ActionEventType::Submitted) => {
            submitted::submitted(ctx, message, &action, &shop_id).await
        }
        (Which::PortalAccess, ActionEventType::Invoked) => {
            portal_access::invoked(ctx, message, &action, &shop_id).await
        }
        (Which::PortalAccess, ActionEventType::Submitted) => {
            portal_access::submitted(ctx, message, &action, &shop_id).await
        }
    };
    // The payload's shop snapshot may have changed the shop.
    ctx.shops.forget(&shop_id);
    let answer = answer?;
    tracing::info!(
        webhook_id = %message.verified.id,
        shop_id = %shop_id,
        customer_id = %action.customer.id,
        interaction_id = %action.interaction_id,
        action = which.key(),
        kind = ?action.kind,
        "star-menu action answered"
    );
    Ok(answer)
}

fn info<'a>(message_id: &'a WebhookId, shop_id: &'a ShopId, action: &'a Action) -> MessageInfo<'a> {
    MessageInfo {
        id: message_id,
        endpoint: action.which.endpoint(),
        event_type: match action.kind {
            ActionEventType::Invoked => "action.invoked",
            ActionEventType::Submitted => "dialog.submitted",
        },
        shop_id,
        customer_id: Some(&action.customer.id),
    }
}

async fn invoked<T>(
    ctx: &HostContext,
    message: &SignedMessage<T>,
    action: &Action,
    shop_id: &ShopId,
) -> Result<StoredAnswer, HostError> {
    let now = ctx.clock.now();
    let id = message.verified.id.clone();
    let public_url = ctx.public_url.clone();
    let (action, shop_id) = (action.clone(), shop_id.clone());
    let result = ctx
        .db
        .write(move |txn| {
            Box::pin(async move {
                let world = match world::open(txn, &id, &action, &shop_id, now).await? {
                    Opened::Fresh(world) => world,
                    Opened::Answered(answer) => return Ok(answer),
                    // Claimed by a request still at work: roll back, and wait for its answer.
                    Opened::InProgress => return Err(Clicked::InProgress),
                };
                let response = match world.evaluate(txn, now).await? {
                    Ok(eligible) => staff_text::dialog(&eligible),
                    Err(refusal) => staff_text::refusal(&refusal, &world::audience(&world, &public_url)),
                };
                Ok(store(txn, &id, &response).await?)
            })
        })
        .await;
    match result {
        Ok(answer) => Ok(answer),
        Err(Clicked::InProgress) => wait_for_message_answer(ctx, &message.verified.id).await,
        Err(Clicked::Raced) => Err(HostError::Busy),
        Err(Clicked::Failed(e)) => Err(e),
    }
}

/// Why a click's transaction rolled back.
enum Clicked {
    Failed(HostError),
    /// The message is claimed by a request still at work.
    InProgress,
    /// Another request changed the same rows at the same moment.
    Raced,
}

impl From<DbErr> for Clicked {
    fn from(e: DbErr) -> Self {
        if lost_a_race(&e) { Self::Raced } else { Self::Failed(HostError::from(e)) }
    }
}

/// Waits for the answer of a message another request is processing.
async fn wait_for_message_answer(ctx: &HostContext, id: &WebhookId) -> Result<StoredAnswer, HostError> {
    let deadline = tokio::time::Instant::now() + CLICK_WAIT;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(answer) = inbox::stored_answer(ctx.db.conn(), id).await? {
            return Ok(answer);
        }
    }
    Err(HostError::Busy)
}

async fn store(
    txn: &DatabaseTransaction,
    id: &WebhookId,
    response: &ActionResponse,
) -> Result<StoredAnswer, DbErr> {
    let answer = StoredAnswer { status: 200, body: response.to_json() };
    inbox::record_answer(txn, id, &answer).await?;
    Ok(answer)
}
