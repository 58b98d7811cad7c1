//! Sending: email through lettre, SMS through a Twilio-compatible API, rendering from templates, one
//! attempt at an outbox message, the first attempt of a star-menu invitation
//! ([`first_attempt`]), and the background worker. Then what the SMS gateway says about a message it
//! accepted: its signed status reports ([`receipts`], `POST /sms/status`) and, a day later, a look-up
//! of one still without a final word ([`lookup`]). The queue itself is [`crate::outbox`]; what an
//! attempt or a report means for an invitation is [`crate::invitations::state`].

pub mod email;
pub mod files;
pub mod first_attempt;
pub mod lookup;
pub mod messages;
pub mod receipts;
pub mod redact;
pub mod reset;
pub mod send;
pub mod sms;
pub mod worker;

use std::{sync::Arc, time::Duration};

use chrono::TimeDelta;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::{clock::Clock, config::Settings, db::Database, sealing::Sealer, templates::Templates};

/// A rendered message.
pub enum Composed {
    Email(Box<email::Email>),
    Sms {
        /// The number in E.164 form.
        to: String,
        body: String,
    },
}

/// The mail server, the SMS gateway and the templates, built (and checked) from the settings before
/// anything else starts, so a broken override or an unusable SMTP URL stops the start at once.
pub struct Senders {
    mailer: email::Mailer,
    sms: sms::SmsGateway,
    templates: Arc<Templates>,
    send_timeout: Duration,
}

impl Senders {
    /// Builds the senders and checks the message templates. The portal's page templates, loaded
    /// from the same folder, are the app's to check ([`Senders::templates`]).
    pub fn new(settings: &Settings) -> Result<Self, String> {
        let templates = Templates::load(settings.templates_dir.as_deref())
            .and_then(|t| messages::check_templates(&t).map(|()| t))
            .map_err(|e| format!("PORTAL_TEMPLATES_DIR: {e}"))?;
        let send_timeout = settings.send_timeout;
        Ok(Self {
            mailer: email::Mailer::new(&settings.mail, settings.outbox_dir.clone(), send_timeout)?,
            sms: sms::SmsGateway::new(settings.twilio.as_ref(), settings.outbox_dir.clone(), send_timeout)?,
            templates: Arc::new(templates),
            send_timeout,
        })
    }

    /// The templates loaded from the one folder: the messages' and the pages'.
    pub fn templates(&self) -> &Arc<Templates> {
        &self.templates
    }
}

/// Everything sending needs: its own context, built by the app.
pub struct Delivery {
    pub db: Database,
    pub clock: Clock,
    /// The service's public base URL, for the links in messages.
    pub public_url: url::Url,
    pub templates: Arc<Templates>,
    pub mailer: email::Mailer,
    pub sms: sms::SmsGateway,
    /// Seals and opens the links kept in unfinished outbox rows.
    pub sealer: Arc<Sealer>,
    /// How long a reset link works (`PORTAL_RESET_TTL`).
    pub reset_ttl: Duration,
    /// This instance's name in outbox leases.
    pub instance: String,
    /// The deadline on one whole exchange with a mail server or gateway (`PORTAL_SEND_TIMEOUT`).
    pub send_timeout: Duration,
    /// How long a claim holds a message: longer than an attempt can take.
    pub lease: TimeDelta,
    /// Attempts under way, so that a shutdown can let them finish (within its grace period).
    pub in_flight: TaskTracker,
    /// Wakes the worker when a message was queued without a first attempt.
    pub wake: Arc<Notify>,
}

impl Delivery {
    /// The context for sending, from checked senders and the service's shared parts.
    pub fn new(
        senders: Senders,
        settings: &Settings,
        db: Database,
        clock: Clock,
        sealer: Arc<Sealer>,
    ) -> Self {
        let Senders { mailer, sms, templates, send_timeout } = senders;
        Self {
            db,
            clock,
            public_url: settings.public_url.clone(),
            templates,
            mailer,
            sms,
            sealer,
            reset_ttl: settings.portal.reset_ttl,
            instance: crate::random::id("worker"),
            send_timeout,
            lease: crate::outbox::lease_for(send_timeout),
            in_flight: TaskTracker::new(),
            wake: Arc::default(),
        }
    }

    /// Whether messages are written to files (no SMTP server or no SMS gateway configured).
    pub fn writes_files(&self) -> bool {
        matches!(self.mailer, email::Mailer::Files { .. })
            || matches!(self.sms, sms::SmsGateway::Files { .. })
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("instance", &self.instance).finish_non_exhaustive()
    }
}
