//! Getting messages to customers: the outbox (claiming, retries), email through lettre, SMS through a
//! Twilio-compatible API, rendering from templates, and the background worker.

pub mod email;
pub mod messages;
pub mod outbox;
pub mod send;
pub mod sms;
pub mod worker;

use tokio::sync::Notify;

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
}

impl Delivery {
    /// Builds the senders from the settings and checks the templates, so a broken override or an
    /// unusable SMTP URL stops the start instead of the first send.
    pub fn new(settings: &Settings) -> Result<Self, String> {
        let templates = Templates::load(settings.templates_dir.as_deref())
            .and_then(|t| messages::check_templates(&t).map(|()| t))
            .and_then(|t| crate::portal::pages::check_templates(&t).map(|()| t))
            .map_err(|e| format!("PORTAL_TEMPLATES_DIR: {e}"))?;
        Ok(Self {
            mailer: email::Mailer::new(&settings.mail, settings.outbox_dir.clone())?,
            sms: sms::SmsGateway::new(settings.twilio.as_ref(), settings.outbox_dir.clone())?,
            templates,
            wake: Notify::new(),
            instance: crate::random::id("worker"),
        })
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("instance", &self.instance).finish_non_exhaustive()
    }
}
