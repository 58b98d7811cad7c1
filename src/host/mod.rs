//! The host-facing edge: Standard Webhooks signatures, the envelope and its events, problem answers,
//! the staff-facing wording, and the endpoints the manifest names (`/webhooks`; the star-menu action
//! goes beside it in `actions`).

pub mod actions;
pub mod dialog;
pub mod events;
pub mod intake;
pub mod lifecycle_bulk;
pub mod lifecycle_writer;
pub mod problem;
pub mod staff_text;
pub mod webhooks;

use std::{sync::Arc, time::Duration};

use self::events::LifecycleEventType;
use crate::{
    access::PortalAccess, clock::Clock, db::Database, inbox::RecentlyAnswered, invitations::handoff::Courier,
    outbox::FirstAttempt, sealing::Sealer, shops::cache::ShopCache,
};

/// What the host's endpoints need, built by the app. Cheap to clone.
#[derive(Clone)]
pub struct HostContext {
    pub db: Database,
    pub clock: Clock,
    /// The service's public base URL, for the login links the texts name.
    pub public_url: url::Url,
    /// How long an invitation's set-up link works (`PORTAL_INVITATION_TTL`).
    pub invitation_ttl: Duration,
    /// Shop rows the customer pages read: forgotten when a host message may have changed them.
    pub shops: Arc<ShopCache>,
    /// Commits lifecycle events, many per transaction.
    pub lifecycle: Arc<lifecycle_writer::LifecycleWriter>,
    /// Lifecycle messages answered lately, to answer the host's retries from memory.
    pub recent_answers: Arc<RecentlyAnswered<LifecycleEventType>>,
    /// Makes the first delivery attempt of an invitation (delivery, passed in by the app).
    pub courier: Arc<dyn Courier>,
    /// Who the courier is in the outbox: an invitation's row starts leased to it.
    pub first_attempt: FirstAttempt,
    /// Seals the set-up link into the invitation's outbox row.
    pub sealer: Arc<Sealer>,
    /// The staff's view of portal access and its acts.
    pub access: Arc<PortalAccess>,
    /// Wakes the sender when an act queued a message.
    pub wake_sender: Arc<tokio::sync::Notify>,
}
