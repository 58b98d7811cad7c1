//! Getting messages to customers: the outbox (claiming, retries), email through lettre, SMS through a
//! Twilio-compatible API, rendering from templates, and the background worker.

pub mod email;
pub mod files;
pub mod messages;
pub mod outbox;
pub mod redact;
pub mod send;
pub mod sms;
pub mod worker;

use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::{config::Settings, templates::Templates};

/// A rendered message.
pub enum Composed {
    /// An email.
    Email(Box<email::Email>),
    /// An SMS.
    Sms {
        /// The number.
        to: String,
        /// The text.
        body: String,
    },
}

/// Everything needed to send messages.
pub struct Delivery {
    /// Email.
    pub mailer: email::Mailer,
    /// SMS.
    pub sms: sms::SmsGateway,
    /// Message (and page) templates.
    pub templates: Templates,
    /// Wakes the worker when a message was queued without a first attempt.
    pub wake: Notify,
    /// This instance's name in outbox leases.
    pub instance: String,
    /// The deadline on one whole exchange with a mail server or gateway (`PORTAL_SEND_TIMEOUT`).
    pub send_timeout: Duration,
    /// How long a claim holds a message: longer than an attempt can take.
    pub lease: TimeDelta,
    /// Attempts under way, so that a shutdown can let them finish (within its grace period).
    pub in_flight: TaskTracker,
}

impl Delivery {
    /// Whether messages are written to files (no SMTP server or no SMS gateway configured).
    pub fn writes_files(&self) -> bool {
        matches!(self.mailer, email::Mailer::Files { .. })
            || matches!(self.sms, sms::SmsGateway::Files { .. })
    }

    /// Builds the senders from the settings and checks the templates, so a broken override or an
    /// unusable SMTP URL stops the start instead of the first send.
    pub fn new(settings: &Settings) -> Result<Self, String> {
        let templates = Templates::load(settings.templates_dir.as_deref())
            .and_then(|t| messages::check_templates(&t).map(|()| t))
            .and_then(|t| crate::portal::pages::check_templates(&t).map(|()| t))
            .map_err(|e| format!("PORTAL_TEMPLATES_DIR: {e}"))?;
        let send_timeout = settings.send_timeout;
        Ok(Self {
            mailer: email::Mailer::new(&settings.mail, settings.outbox_dir.clone(), send_timeout)?,
            sms: sms::SmsGateway::new(settings.twilio.as_ref(), settings.outbox_dir.clone(), send_timeout)?,
            templates,
            wake: Notify::new(),
            instance: crate::random::id("worker"),
            send_timeout,
            lease: outbox::lease_for(send_timeout),
            in_flight: TaskTracker::new(),
        })
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("instance", &self.instance).finish_non_exhaustive()
    }
}
