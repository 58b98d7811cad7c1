//! Typed settings from the environment and, optionally, a TOML file (`--config`).
//!
//! Every setting has one name: `PORTAL_X` in the environment, `x` (lower case, no prefix) in the file.
//! The environment wins over the file, so an operator can override one value without editing it. A
//! missing or malformed value becomes a [`SettingError`] that names the setting and what to do; the
//! binary prints it on one line and exits with code 2.
//!
//! Each setting is declared once, in `declared.rs` (name, default, help, parser with its bounds);
//! `values.rs` holds the value types and parsers, `file.rs` the `--config` file. This module puts the
//! read values together into [`Settings`] and checks the rules that span settings (Twilio's three).

use std::{collections::BTreeMap, net::SocketAddr, path::Path, time::Duration};

use url::Url;

use crate::signature::WebhookSecret;

mod declared;
mod file;
mod values;
use declared::*;
pub use declared::{SETTINGS, SettingInfo};
pub use values::{DatabaseUrl, LogFormat, Secret, parse_duration};

/// Setting values as given, by environment variable.
type Raw = BTreeMap<String, String>;

/// A setting that stops the start: which one, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct SettingError {
    /// The environment variable (or `--config` for the file itself).
    pub name: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl SettingError {
    fn new(name: &str, message: impl Into<String>) -> Self {
        Self { name: name.to_owned(), message: message.into() }
    }
}

/// How email leaves the service.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `PORTAL_SMTP_URL`; `None` writes `.eml` files instead.
    pub smtp_url: Option<Secret>,
    /// `PORTAL_MAIL_FROM`, checked.
    pub from: lettre::message::Mailbox,
}

/// A Twilio-compatible Messages API.
#[derive(Debug, Clone)]
pub struct TwilioSettings {
    /// `PORTAL_TWILIO_ACCOUNT_SID`.
    pub account_sid: String,
    /// `PORTAL_TWILIO_AUTH_TOKEN`.
    pub auth_token: Secret,
    /// `PORTAL_TWILIO_FROM`.
    pub from: String,
    /// `PORTAL_TWILIO_API_URL`.
    pub api_url: Url,
}

/// The customer pages.
#[derive(Debug, Clone)]
pub struct PortalSettings {
    /// `PORTAL_RESET_TTL`.
    pub reset_ttl: Duration,
    /// `PORTAL_PASSWORD_MIN_LENGTH`.
    pub password_min_length: usize,
    /// `PORTAL_SESSION_IDLE`.
    pub session_idle: Duration,
    /// `PORTAL_SESSION_LIFETIME`.
    pub session_lifetime: Duration,
    /// `PORTAL_TRUSTED_PROXIES`.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `PORTAL_HASHING_LIMIT`.
    pub hashing_limit: usize,
}

/// Everything the service reads from its settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `PORTAL_LISTEN`.
    pub listen: SocketAddr,
    /// `PORTAL_PUBLIC_URL`, without a trailing slash.
    pub public_url: Url,
    /// `PORTAL_DATABASE_URL`.
    pub database_url: DatabaseUrl,
    /// `PORTAL_WEBHOOK_SECRETS`; empty unless set (only `serve` requires it).
    pub webhook_secrets: Vec<WebhookSecret>,
    /// `PORTAL_LOG`.
    pub log_filter: String,
    /// `PORTAL_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `PORTAL_INVITATION_TTL`.
    pub invitation_ttl: Duration,
    pub mail: MailSettings,
    /// `PORTAL_OUTBOX_DIR`: where messages go when there is no server or gateway.
    pub outbox_dir: std::path::PathBuf,
    /// `PORTAL_TEMPLATES_DIR`.
    pub templates_dir: Option<std::path::PathBuf>,
    /// SMS delivery; `None` writes SMS to files in the outbox folder.
    pub twilio: Option<TwilioSettings>,
    pub portal: PortalSettings,
    /// `PORTAL_SEND_TIMEOUT`.
    pub send_timeout: Duration,
    /// `PORTAL_SHUTDOWN_GRACE`.
    pub shutdown_grace: Duration,
    /// `PORTAL_AUDIT_RETENTION`.
    pub audit_retention: Duration,
    /// `PORTAL_METRICS_LISTEN`; never the same as `listen`.
    pub metrics_listen: Option<SocketAddr>,
}

impl Settings {
    /// Reads the settings from an optional TOML file and the given environment (which wins).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingError> {
        let mut raw = match file {
            Some(path) => file::read(path)?,
            None => Raw::new(),
        };
        for (key, value) in env {
            if SETTINGS.iter().any(|s| s.env == key) {
                raw.insert(key, value);
            }
        }
        Self::from_raw(&raw)
    }

    // The order of the reads is the order in which errors are found: the first bad value is reported.
    fn from_raw(raw: &Raw) -> Result<Self, SettingError> {
        let listen = LISTEN.read(raw)?;
        let public_url = PUBLIC_URL.read(raw)?;
        let database_url = DATABASE_URL.read(raw)?;
        let webhook_secrets = WEBHOOK_SECRETS.read(raw)?;
        let log_filter = LOG.read(raw)?;
        let log_format = LOG_FORMAT.read(raw)?;
        let invitation_ttl = INVITATION_TTL.read(raw)?;
        let mail = MailSettings { smtp_url: SMTP_URL.read(raw)?, from: MAIL_FROM.read(raw)? };
        let outbox_dir = OUTBOX_DIR.read(raw)?;
        let templates_dir = TEMPLATES_DIR.read(raw)?;
        let twilio = read_twilio(raw)?;
        let password_min_length = PASSWORD_MIN_LENGTH.read(raw)?;
        let hashing_limit = HASHING_LIMIT
            .read(raw)?
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let send_timeout = SEND_TIMEOUT.read(raw)?;
        let shutdown_grace = SHUTDOWN_GRACE.read(raw)?;
        let audit_retention = AUDIT_RETENTION.read(raw)?;
        let metrics_listen = METRICS_LISTEN.read(raw)?;
        if metrics_listen.is_some_and(|metrics| metrics == listen) {
            return Err(SettingError::new(
                METRICS_LISTEN.info.env,
                "is the same address as PORTAL_LISTEN; the metrics are served on a listener of their own, \
                 never on the public port",
            ));
        }
        let portal = PortalSettings {
            reset_ttl: RESET_TTL.read(raw)?,
            password_min_length,
            session_idle: SESSION_IDLE.read(raw)?,
            session_lifetime: SESSION_LIFETIME.read(raw)?,
            trusted_proxies: TRUSTED_PROXIES.read(raw)?,
            hashing_limit,
        };
        Ok(Self {
            listen,
            public_url,
            database_url,
            webhook_secrets,
            log_filter,
            log_format,
            invitation_ttl,
            mail,
            outbox_dir,
            templates_dir,
            twilio,
            portal,
            send_timeout,
            shutdown_grace,
            audit_retention,
            metrics_listen,
        })
    }

    /// The secrets, or the error `serve` reports when none are configured.
    pub fn require_webhook_secrets(&self) -> Result<&[WebhookSecret], SettingError> {
        if self.webhook_secrets.is_empty() {
            return Err(SettingError::new(
                WEBHOOK_SECRETS.info.env,
                "is not set; set it to the signing secret the host showed when the plugin was registered \
                 (or run `portal-invites secret` to make one for testing)",
            ));
        }
        Ok(&self.webhook_secrets)
    }

    /// Whether links and cookies are for plain http on this machine only (local use and tests).
    pub fn is_local_http(&self) -> bool {
        self.public_url.scheme() == "http"
            && matches!(self.public_url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
    }
}

/// All three Twilio settings, or none of them; the API URL is checked only when they are set.
fn read_twilio(raw: &Raw) -> Result<Option<TwilioSettings>, SettingError> {
    let parts = (TWILIO_ACCOUNT_SID.read(raw)?, TWILIO_AUTH_TOKEN.read(raw)?, TWILIO_FROM.read(raw)?);
    let (account_sid, auth_token, from) = match parts {
        (None, None, None) => return Ok(None),
        (Some(sid), Some(token), Some(from)) => (sid, token, from),
        (sid, token, _) => {
            let missing = if sid.is_none() {
                &TWILIO_ACCOUNT_SID.info
            } else if token.is_none() {
                &TWILIO_AUTH_TOKEN.info
            } else {
                &TWILIO_FROM.info
            };
            return Err(SettingError::new(
                missing.env,
                "is not set, but other PORTAL_TWILIO_ settings are; set all three to send SMS, or none to write SMS to files",
            ));
        }
    };
    let api_url = TWILIO_API_URL.read(raw)?;
    Ok(Some(TwilioSettings { account_sid, auth_token: Secret(auth_token), from, api_url }))
}

#[cfg(test)]
mod tests;
