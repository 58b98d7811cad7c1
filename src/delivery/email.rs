//! Email: over SMTP with lettre, or, when no SMTP server is configured, as `.eml` files in the outbox
//! folder.
//!
//! Each message has a connection of its own. lettre's pool would hand a connection whose exchange our
//! deadline cut short (see [`super::send::transmit`]) to the next message, which would then read the
//! late answer to the previous message's command as its own; a fresh connection per message costs a
//! greeting and a handshake and is never out of step. lettre's own timeout is set too, per step;
//! the deadline bounds the whole exchange, whatever the server does between steps.

use std::{path::PathBuf, time::Duration};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
    transport::smtp::Error as SmtpError,
};

use super::{files::MessageFile, redact::redact};
use crate::config::MailSettings;
use crate::outbox::Attempt;

/// A rendered email, ready to send.
pub struct Email {
    pub to: String,
    /// The recipient's name, if known.
    pub to_name: Option<String>,
    /// The display name of the sender (the shop's name), in front of the configured address.
    pub from_name: String,
    /// Where replies go (the shop's own address), if known.
    pub reply_to: Option<String>,
    /// One line.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
}

/// Where email goes.
pub enum Mailer {
    Smtp {
        /// The pooled transport.
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    /// Files in a folder (the embedded default).
    Files { dir: PathBuf, from: Mailbox },
}

impl Mailer {
    /// From the settings; the SMTP URL was checked when the settings were read.
    pub fn new(
        settings: &MailSettings,
        outbox_dir: PathBuf,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        match &settings.smtp_url {
            Some(url) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .map_err(|e| format!("PORTAL_SMTP_URL: {e}"))?
                    .timeout(Some(connect_timeout))
                    .build();
                Ok(Self::Smtp { transport, from: settings.from.clone() })
            }
            None => Ok(Self::Files { dir: outbox_dir, from: settings.from.clone() }),
        }
    }

    /// Where email goes, for the start-up log line (no credentials).
    pub fn describe(&self) -> String {
        match self {
            Self::Smtp { .. } => "email is sent through the SMTP server of PORTAL_SMTP_URL".to_owned(),
            Self::Files { dir, .. } => format!(
                "email is written as .eml files to {} (set PORTAL_SMTP_URL to send it)",
                dir.display()
            ),
        }
    }

    /// Sends one email; `file` says where it goes in file mode.
    pub async fn send(&self, email: Email, file: &MessageFile) -> Attempt {
        let from = match self {
            Self::Smtp { from, .. } | Self::Files { from, .. } => from,
        };
        let message = match build(email, from) {
            Ok(message) => message,
            Err(reason) => return Attempt::Permanent { reason },
        };
        match self {
            Self::Smtp { transport, .. } => match transport.send(message).await {
                Ok(_) => Attempt::Sent { provider_ref: None },
                Err(error) => classify(&error),
            },
            Self::Files { dir, .. } => {
                super::files::write(&file.path(dir, "eml"), &message.formatted()).await
            }
        }
    }
}

fn build(email: Email, from: &Mailbox) -> Result<Message, String> {
    let to = Mailbox::new(
        email.to_name,
        email.to.parse().map_err(|e| redact(&format!("the address is not usable: {e}")))?,
    );
    let sender = Mailbox::new(Some(email.from_name), from.email.clone());
    let mut builder = Message::builder().from(sender).to(to).subject(email.subject);
    if let Some(reply_to) = email.reply_to.and_then(|r| r.parse().ok()) {
        builder = builder.reply_to(Mailbox::new(None, reply_to));
    }
    builder
        .multipart(MultiPart::alternative_plain_html(email.text, email.html))
        .map_err(|e| format!("the message could not be built: {e}"))
}

/// SMTP 5xx is permanent (the address or message was refused); 4xx, timeouts and connection trouble
/// are worth retrying. The reason keeps the class and code, and the server's words without the
/// address they may echo.
fn classify(error: &SmtpError) -> Attempt {
    let class = if error.is_permanent() {
        "refused"
    } else if error.is_transient() {
        "deferred"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_tls() {
        "TLS failed"
    } else {
        "failed"
    };
    let reason = format!("SMTP {class}: {}", redact(&error.to_string()));
    if error.is_permanent() {
        Attempt::Permanent { reason }
    } else {
        Attempt::Transient { reason, retry_after: None }
    }
}
