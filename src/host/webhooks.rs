//! `POST /webhooks`: lifecycle and data events (contract §5). The handler is thin: the message was
//! verified by [`SignedMessage`]; [`receive_lifecycle_event`] parses it, de-duplicates it and applies
//! it in one transaction, and `204` is answered only after that transaction committed.

use poem_openapi::{ApiResponse, OpenApi};

use super::{
    HostContext,
    events::{LifecycleEnvelope, LifecycleEventType, RawEnvelope, parse_lifecycle},
    intake::SignedMessage,
    lifecycle_writer::PendingEvent,
    problem::{HostError, HostProblem},
};
use crate::{inbox::StoredAnswer, shops::records::Applied};

/// The success answer of `POST /webhooks`.
#[derive(Debug, ApiResponse)]
pub enum WebhookStored {
    /// The event is durably stored (or was already: a repeated `webhook-id`).
    #[oai(status = 204)]
    Stored,
}

/// The host-facing webhook API.
pub struct WebhooksApi {
    pub ctx: HostContext,
}

/// The OpenAPI tags.
#[derive(poem_openapi::Tags)]
pub enum Tags {
    /// Signed calls from the host platform.
    Host,
    /// Probes for orchestrators.
    Health,
}

#[OpenApi]
impl WebhooksApi {
    /// Receive a lifecycle or data event.
    ///
    /// `plugin.installed`, `plugin.uninstalled`, `shop.updated`, `customer.updated` and
    /// `customer.deleted`. Older snapshot versions are ignored; a repeated `webhook-id` gets the same
    /// answer without being applied again.
    #[oai(path = "/webhooks", method = "post", tag = "Tags::Host", operation_id = "receiveWebhook")]
    async fn receive(&self, message: SignedMessage<LifecycleEnvelope>) -> Result<WebhookStored, HostProblem> {
        let answer = receive_lifecycle_event(&self.ctx, &message).await?;
        match answer.status {
            204 => Ok(WebhookStored::Stored),
            other => {
                Err(HostError::Internal(format!("stored answer with status {other} on /webhooks")).into())
            }
        }
    }
}

/// Parses, de-duplicates and applies one verified lifecycle event, and counts what became of it.
pub async fn receive_lifecycle_event<T>(
    ctx: &HostContext,
    message: &SignedMessage<T>,
) -> Result<StoredAnswer, HostError> {
    let mut kind = None;
    let result = receive(ctx, message, &mut kind).await;
    let (outcome, reason) = match &result {
        Ok((_, Some(Applied::Stored))) => ("applied", ""),
        Ok((_, Some(Applied::Stale))) => ("stale", ""),
        Ok((_, Some(Applied::Deleted | Applied::ShopUninstalled))) => ("ignored", ""),
        Ok((_, None)) => ("duplicate", ""),
        Err(error) => ("rejected", error.reason_class()),
    };
    count_webhook(kind.map_or("unknown", LifecycleEventType::name), outcome, reason);
    result.map(|(answer, _)| answer)
}

/// One webhook in `portal_webhooks_total`; `reason` is empty unless it was rejected.
pub fn count_webhook(kind: &'static str, outcome: &'static str, reason: &'static str) {
    metrics::counter!("portal_webhooks_total", "type" => kind, "outcome" => outcome, "reason" => reason)
        .increment(1);
}

async fn receive<T>(
    ctx: &HostContext,
    message: &SignedMessage<T>,
    kind_seen: &mut Option<LifecycleEventType>,
) -> Result<(StoredAnswer, Option<Applied>), HostError> {
    // A repeat answered lately is answered again from memory, before any database work or parsing
    // (its type, for the count, was remembered with it).
    if let Some(kind) = ctx.recent_answers.get(&message.verified.id) {
        *kind_seen = Some(kind);
        tracing::debug!(webhook_id = %message.verified.id, "repeated message answered again");
        return Ok((StoredAnswer::no_content(), None));
    }
    let envelope = RawEnvelope::parse(&message.body)?;
    let kind = LifecycleEventType::from_name(&envelope.event_type).ok_or_else(|| {
        if envelope.event_type.starts_with("action.") || envelope.event_type.starts_with("dialog.") {
            HostError::Rule(format!(
                "{} belongs to the action URL of the manifest, not /webhooks",
                envelope.event_type
            ))
        } else {
            HostError::UnknownType(envelope.event_type.clone())
        }
    })?;
    *kind_seen = Some(kind);
    let shop_id = envelope.shop_id()?;
    let event = parse_lifecycle(kind, &envelope, &shop_id)?;
    let pending = PendingEvent {
        id: message.verified.id.clone(),
        kind,
        shop_id: shop_id.clone(),
        occurred_at: envelope.timestamp,
        event,
        now: ctx.clock.now(),
    };
    let (answer, applied) = ctx.lifecycle.commit(pending).await?;
    if answer.status == 204 {
        ctx.recent_answers.insert(&message.verified.id, kind);
    }
    ctx.shops.forget(&shop_id);
    match &applied {
        Some(applied) => tracing::debug!(
            webhook_id = %message.verified.id,
            event = kind.name(),
            shop_id = %envelope.shop_id,
            ?applied,
            "event processed"
        ),
        None => {
            tracing::debug!(webhook_id = %message.verified.id, event = kind.name(), "repeated message answered again")
        }
    }
    Ok((answer, applied))
}
