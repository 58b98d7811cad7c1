//! Typed settings from the environment and, optionally, a TOML file (`--config`).
//!
//! Every setting has one name: `PORTAL_X` in the environment, `x` (lower case, no prefix) in the file.
//! The environment wins over the file, so an operator can override one value without editing it. A
//! missing or malformed value becomes a [`SettingError`] that names the setting and what to do; the
//! binary prints it on one line and exits with code 2.

use std::{collections::BTreeMap, fmt, net::SocketAddr, path::Path, time::Duration};

use url::Url;

use crate::signature::WebhookSecret;

mod values;
pub use values::parse_duration;
use values::{non_empty, parse_proxies, parse_public_url, parse_secrets, parse_twilio};

/// One setting the service understands, for parsing, `--help` and the README.
pub struct SettingInfo {
    /// The environment variable.
    pub env: &'static str,
    /// The default, when there is one.
    pub default: Option<&'static str>,
    /// What it does.
    pub help: &'static str,
}

const DAY: Duration = Duration::from_secs(86_400);

/// Every setting, in the order the README lists them.
pub const SETTINGS: &[SettingInfo] = &[
    SettingInfo {
        env: "PORTAL_LISTEN",
        default: Some("127.0.0.1:8080"),
        help: "address and port to listen on",
    },
    SettingInfo {
        env: "PORTAL_PUBLIC_URL",
        default: Some("http://127.0.0.1:8080"),
        help: "the base of every link we send (https in production)",
    },
    SettingInfo {
        env: "PORTAL_DATABASE_URL",
        default: Some("sqlite://data/portal-invites.db?mode=rwc"),
        help: "sqlite://PATH or postgres://USER@HOST/DB",
    },
    SettingInfo {
        env: "PORTAL_WEBHOOK_SECRETS",
        default: None,
        help: "one or more whsec_… secrets from the host, separated by spaces (required by serve)",
    },
    SettingInfo {
        env: "PORTAL_LOG",
        default: Some("info"),
        help: "log filter, e.g. info or portal_invites=debug,info",
    },
    SettingInfo { env: "PORTAL_LOG_FORMAT", default: Some("text"), help: "text or json" },
    SettingInfo {
        env: "PORTAL_INVITATION_TTL",
        default: Some("7d"),
        help: "how long a set-up link works (s, m, h or d)",
    },
    SettingInfo {
        env: "PORTAL_SMTP_URL",
        default: None,
        help: "send email through this SMTP server (smtp://, smtps://, ?tls=required); unset: write .eml files",
    },
    SettingInfo {
        env: "PORTAL_MAIL_FROM",
        default: Some("Customer Portal <portal@localhost>"),
        help: "the From address of every email",
    },
    SettingInfo {
        env: "PORTAL_OUTBOX_DIR",
        default: Some("data/outbox"),
        help: "where email and SMS are written when no SMTP server or SMS gateway is set",
    },
    SettingInfo {
        env: "PORTAL_TEMPLATES_DIR",
        default: None,
        help: "a folder whose files override the built-in templates (checked at start-up)",
    },
    SettingInfo {
        env: "PORTAL_TWILIO_ACCOUNT_SID",
        default: None,
        help: "SMS through a Twilio-compatible Messages API: the account SID",
    },
    SettingInfo { env: "PORTAL_TWILIO_AUTH_TOKEN", default: None, help: "SMS: the auth token" },
    SettingInfo { env: "PORTAL_TWILIO_FROM", default: None, help: "SMS: the sender number or name" },
    SettingInfo {
        env: "PORTAL_TWILIO_API_URL",
        default: Some("https://api.twilio.com"),
        help: "SMS: the API base URL",
    },
    SettingInfo {
        env: "PORTAL_RESET_TTL",
        default: Some("1h"),
        help: "how long a password-reset link works",
    },
    SettingInfo {
        env: "PORTAL_PASSWORD_MIN_LENGTH",
        default: Some("8"),
        help: "the shortest password accepted (8 to 64 characters)",
    },
    SettingInfo {
        env: "PORTAL_SESSION_IDLE",
        default: Some("30m"),
        help: "a customer is logged out after this long without a request",
    },
    SettingInfo {
        env: "PORTAL_SESSION_LIFETIME",
        default: Some("12h"),
        help: "a customer is logged out this long after logging in, however active",
    },
    SettingInfo {
        env: "PORTAL_TRUSTED_PROXIES",
        default: None,
        help: "addresses or CIDR ranges of reverse proxies whose X-Forwarded-For is believed (space-separated)",
    },
    SettingInfo {
        env: "PORTAL_HASHING_LIMIT",
        default: None,
        help: "password hashes computed at once (default: the number of CPU cores); more wait up to 1 s, then get 503",
    },
    SettingInfo {
        env: "PORTAL_SEND_TIMEOUT",
        default: Some("30s"),
        help: "the deadline on one whole exchange with the SMTP server or SMS gateway (1s to 120s); outbox leases last twice this plus 30 s",
    },
    SettingInfo {
        env: "PORTAL_SHUTDOWN_GRACE",
        default: Some("20s"),
        help: "after SIGTERM, how long sends in flight may finish before they are abandoned (1s to 300s)",
    },
];

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

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The database to use. `Debug` and `Display` hide a password in the URL.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(Url);

impl DatabaseUrl {
    /// Accepts `sqlite:` and `postgres:`/`postgresql:` URLs.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text).map_err(|e| format!("{e}"))?;
        match url.scheme() {
            "sqlite" | "postgres" | "postgresql" => Ok(Self(url)),
            other => Err(format!("the scheme {other}: is not supported")),
        }
    }

    /// Whether this is the embedded SQLite database.
    pub fn is_sqlite(&self) -> bool {
        self.0.scheme() == "sqlite"
    }

    /// The URL with its password, for the driver only.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("redacted"));
        }
        f.write_str(shown.as_str())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// A secret setting: `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
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
    /// Email delivery.
    pub mail: MailSettings,
    /// `PORTAL_OUTBOX_DIR`: where messages go when there is no server or gateway.
    pub outbox_dir: std::path::PathBuf,
    /// `PORTAL_TEMPLATES_DIR`.
    pub templates_dir: Option<std::path::PathBuf>,
    /// SMS delivery; `None` writes SMS to files in the outbox folder.
    pub twilio: Option<TwilioSettings>,
    /// The customer pages.
    pub portal: PortalSettings,
    /// `PORTAL_SEND_TIMEOUT`.
    pub send_timeout: Duration,
    /// `PORTAL_SHUTDOWN_GRACE`.
    pub shutdown_grace: Duration,
}

impl Settings {
    /// Reads the settings from an optional TOML file and the given environment (which wins).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingError> {
        let mut raw = match file {
            Some(path) => read_file(path)?,
            None => BTreeMap::new(),
        };
        for (key, value) in env {
            if SETTINGS.iter().any(|s| s.env == key) {
                raw.insert(key, value);
            }
        }
        Self::from_raw(&raw)
    }

    fn from_raw(raw: &BTreeMap<String, String>) -> Result<Self, SettingError> {
        let get = |name: &str| -> String {
            raw.get(name).cloned().unwrap_or_else(|| {
                SETTINGS.iter().find(|s| s.env == name).and_then(|s| s.default).unwrap_or("").to_owned()
            })
        };

        let listen = get("PORTAL_LISTEN").trim().parse().map_err(|_| {
            SettingError::new(
                "PORTAL_LISTEN",
                "is not an address and port such as 127.0.0.1:8080 or 0.0.0.0:8080",
            )
        })?;
        let public_url = parse_public_url(&get("PORTAL_PUBLIC_URL"))?;
        let database_url = DatabaseUrl::parse(get("PORTAL_DATABASE_URL").trim()).map_err(|e| {
            SettingError::new(
                "PORTAL_DATABASE_URL",
                format!("{e}; use sqlite://data/portal-invites.db?mode=rwc or postgres://user@host/database"),
            )
        })?;
        let webhook_secrets = parse_secrets(&get("PORTAL_WEBHOOK_SECRETS"))?;
        let log_filter = get("PORTAL_LOG");
        tracing_subscriber::EnvFilter::try_new(&log_filter).map_err(|e| {
            SettingError::new(
                "PORTAL_LOG",
                format!("is not a log filter ({e}); use e.g. info or portal_invites=debug,info"),
            )
        })?;
        let log_format = match get("PORTAL_LOG_FORMAT").trim() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(SettingError::new(
                    "PORTAL_LOG_FORMAT",
                    format!("is {other:?}; use text or json"),
                ));
            }
        };
        // Every duration is bounded: expiry times are computed from them, and an absurd one must stop
        // the start with its name rather than overflow later.
        let within = |name: &str, most: Duration, example: &str| {
            parse_duration(&get(name)).filter(|d| *d <= most).ok_or_else(|| {
                SettingError::new(
                    name,
                    format!("is not a duration of at most {}d; use e.g. {example}", most.as_secs() / 86_400),
                )
            })
        };
        let invitation_ttl = within("PORTAL_INVITATION_TTL", DAY * 90, "7d, 48h or 90m")?;
        let smtp_url = non_empty(raw.get("PORTAL_SMTP_URL"));
        if let Some(url) = &smtp_url {
            lettre::transport::smtp::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url).map_err(|e| {
                SettingError::new(
                    "PORTAL_SMTP_URL",
                    format!("is not an SMTP URL ({e}); use e.g. smtp://user:password@mail.example.com:587?tls=required"),
                )
            })?;
        }
        let from = get("PORTAL_MAIL_FROM").trim().parse().map_err(|_| {
            SettingError::new(
                "PORTAL_MAIL_FROM",
                "is not a mailbox; use e.g. Customer Portal <portal@example.com>",
            )
        })?;
        let outbox_dir = std::path::PathBuf::from(get("PORTAL_OUTBOX_DIR").trim());
        let templates_dir = non_empty(raw.get("PORTAL_TEMPLATES_DIR")).map(std::path::PathBuf::from);
        let twilio = parse_twilio(raw, &get("PORTAL_TWILIO_API_URL"))?;
        let duration = |name: &str| within(name, DAY * 365, "30m, 12h or 1d");
        let password_min_length = get("PORTAL_PASSWORD_MIN_LENGTH")
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (8..=64).contains(n))
            .ok_or_else(|| {
                SettingError::new("PORTAL_PASSWORD_MIN_LENGTH", "must be a whole number from 8 to 64")
            })?;
        let hashing_limit = match non_empty(raw.get("PORTAL_HASHING_LIMIT")) {
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
            Some(text) => text.parse::<usize>().ok().filter(|n| (1..=256).contains(n)).ok_or_else(|| {
                SettingError::new("PORTAL_HASHING_LIMIT", "must be a whole number from 1 to 256")
            })?,
        };
        let bounded = |name: &str, least: u64, most: u64| {
            parse_duration(&get(name)).filter(|d| (least..=most).contains(&d.as_secs())).ok_or_else(|| {
                SettingError::new(name, format!("must be a duration from {least}s to {most}s, e.g. 30s"))
            })
        };
        let send_timeout = bounded("PORTAL_SEND_TIMEOUT", 1, 120)?;
        let shutdown_grace = bounded("PORTAL_SHUTDOWN_GRACE", 1, 300)?;
        let portal = PortalSettings {
            reset_ttl: within("PORTAL_RESET_TTL", DAY * 7, "1h or 30m")?,
            password_min_length,
            session_idle: duration("PORTAL_SESSION_IDLE")?,
            session_lifetime: duration("PORTAL_SESSION_LIFETIME")?,
            trusted_proxies: parse_proxies(&get("PORTAL_TRUSTED_PROXIES"))?,
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
            mail: MailSettings { smtp_url: smtp_url.map(Secret), from },
            outbox_dir,
            templates_dir,
            twilio,
            portal,
            send_timeout,
            shutdown_grace,
        })
    }

    /// The secrets, or the error `serve` reports when none are configured.
    pub fn require_webhook_secrets(&self) -> Result<&[WebhookSecret], SettingError> {
        if self.webhook_secrets.is_empty() {
            return Err(SettingError::new(
                "PORTAL_WEBHOOK_SECRETS",
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

/// Reads the `--config` file into environment-variable names.
fn read_file(path: &Path) -> Result<BTreeMap<String, String>, SettingError> {
    let fail = |message: String| SettingError::new("--config", format!("{}: {message}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot be read ({e})")))?;
    let table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| fail(format!("is not valid TOML ({})", e.message())))?;
    let mut raw = BTreeMap::new();
    for (key, value) in table {
        let env = format!("PORTAL_{}", key.to_ascii_uppercase());
        if !SETTINGS.iter().any(|s| s.env == env) || key.to_ascii_lowercase() != key {
            return Err(fail(format!(
                "unknown setting {key:?}; the file takes the names of the README without PORTAL_, in lower case"
            )));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_owned).ok_or_else(|| fail(format!("{key} must hold strings")))
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(" "),
            _ => return Err(fail(format!("{key} must be a string"))),
        };
        raw.insert(env, value);
    }
    Ok(raw)
}

#[cfg(test)]
mod tests;
