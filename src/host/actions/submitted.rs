//! `dialog.submitted` at the edge: what the staff member asked for goes to
//! [`invitations::submit`](crate::invitations::submit), which decides, issues, hands the first
//! attempt to delivery and stores the answer; here the message is claimed and the world loaded, and
//! each outcome is worded for the staff member.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

use super::{Action, world};
use crate::{
    domain::{ShopId, WebhookId},
    host::{
        HostContext,
        dialog::ActionResponse,
        intake::SignedMessage,
        problem::HostError,
        staff_text::{self, Audience},
    },
    inbox::StoredAnswer,
    invitations::{
        eligibility::{Opened, World},
        submit::{self, HostFuture, HostSide, Outcome, Submission, SubmitDeps, SubmitError},
    },
    links,
};

/// The host's side of one submitted message.
struct SubmittedMessage {
    id: WebhookId,
    action: Action,
    shop_id: ShopId,
    public_url: url::Url,
}

impl HostSide for SubmittedMessage {
    fn open<'t>(&'t self, txn: &'t DatabaseTransaction, now: DateTime<Utc>) -> HostFuture<'t, Opened> {
        Box::pin(world::open(txn, &self.id, &self.action, &self.shop_id, now))
    }

    fn answer(&self, outcome: &Outcome, world: &World) -> StoredAnswer {
        // The texts about an issued invitation name the login page of the shop it was issued for.
        let issued_for = || Audience {
            shop: world.shop.as_ref(),
            customer: world.customer.as_ref(),
            login_url: links::login(&self.public_url, self.shop_id.as_str()),
        };
        let response = match outcome {
            // A submission closes the dialog on a refusal: there is nothing to choose any more.
            Outcome::Refused(refusal) => {
                match staff_text::refusal(refusal, &world::audience(world, &self.public_url)) {
                    ActionResponse::Message(m) => ActionResponse::Close(m),
                    other => other,
                }
            }
            Outcome::InvalidChannel => staff_text::invalid_channel(),
            Outcome::MobileMissing => staff_text::mobile_missing(),
            Outcome::Sent { to, expires_at } => {
                staff_text::sent(to.channel, &to.address, *expires_at, &issued_for())
            }
            Outcome::Queued { to } => staff_text::queued(to.channel, &to.address, &issued_for()),
            Outcome::Rejected { to, reason } => staff_text::rejected(to.channel, &to.address, reason),
            Outcome::ChangedMeanwhile => staff_text::changed_meanwhile(),
        };
        StoredAnswer { status: 200, body: response.to_json() }
    }
}

/// Handles a submission: answers it, or issues the invitation and makes the first attempt.
pub(super) async fn submitted<T>(
    ctx: &HostContext,
    message: &SignedMessage<T>,
    action: &Action,
    shop_id: &ShopId,
) -> Result<StoredAnswer, HostError> {
    let host = Arc::new(SubmittedMessage {
        id: message.verified.id.clone(),
        action: action.clone(),
        shop_id: shop_id.clone(),
        public_url: ctx.public_url.clone(),
    });
    let submission = Arc::new(Submission {
        message_id: message.verified.id.clone(),
        shop_id: shop_id.clone(),
        customer_id: action.customer.id.clone(),
        interaction_id: action.interaction_id.clone(),
        requested_by: action.user.clone(),
        channel: action.channel.clone(),
    });
    let deps = SubmitDeps {
        db: &ctx.db,
        clock: &ctx.clock,
        ttl: ctx.invitation_ttl,
        sealer: &ctx.sealer,
        courier: &ctx.courier,
        first_attempt: &ctx.first_attempt,
    };
    submit::submit(&deps, host, submission).await.map_err(|e| match e {
        SubmitError::Busy => HostError::Busy,
        SubmitError::Db(e) => HostError::from(e),
        SubmitError::Internal(why) => HostError::Internal(why),
    })
}
