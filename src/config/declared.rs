//! Every setting, declared once: its name, default, help text and parser side by side.
//!
//! The loader reads a value only through its declaration ([`Setting::read`]), so a setting cannot be
//! read under a misspelt name, and `--help` and the README's table list [`SETTINGS`], which names the
//! same declarations. Bounds live in the parser, where the loader cannot forget them.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use url::Url;

use super::{
    SettingError,
    values::{
        DatabaseUrl, LogFormat, Secret, parse_duration, parse_log_filter, parse_proxies, parse_public_url,
        parse_secrets, parse_smtp_url, parse_span,
    },
};
use crate::signature::WebhookSecret;

/// What `--help` and the README say about a setting.
#[derive(Debug)]
pub struct SettingInfo {
    /// The environment variable; the file's key is this without `PORTAL_`, in lower case.
    pub env: &'static str,
    /// Used when the setting is not given.
    pub default: Option<&'static str>,
    pub help: &'static str,
}

/// A setting and the parser that turns its text into the value the service uses.
pub struct Setting<P> {
    pub info: SettingInfo,
    parser: P,
}

/// Turns a setting's text into its value, or says what is wrong (the caller adds the name).
pub trait Parser {
    type Value;
    fn parse(&self, text: &str) -> Result<Self::Value, String>;
}

impl<P: Parser> Setting<P> {
    /// The value from `raw` (keyed by environment variable), its default, or the empty text.
    pub(super) fn read(&self, raw: &super::Raw) -> Result<P::Value, SettingError> {
        debug_assert!(SETTINGS.iter().any(|s| s.env == self.info.env), "{} is not listed", self.info.env);
        let text = raw.get(self.info.env).map(String::as_str).or(self.info.default).unwrap_or("");
        self.parser.parse(text).map_err(|message| SettingError::new(self.info.env, message))
    }
}

/// A parser written for one setting.
pub struct Custom<T>(fn(&str) -> Result<T, String>);

impl<T> Parser for Custom<T> {
    type Value = T;
    fn parse(&self, text: &str) -> Result<T, String> {
        (self.0)(text)
    }
}

/// Blank (or unset) is `None`; anything else goes to the inner parser, trimmed.
pub struct Optional<P>(P);

impl<P: Parser> Parser for Optional<P> {
    type Value = Option<P::Value>;
    fn parse(&self, text: &str) -> Result<Self::Value, String> {
        let text = text.trim();
        if text.is_empty() { Ok(None) } else { self.0.parse(text).map(Some) }
    }
}

/// A lifetime: something is added to the current time with it, so it has a ceiling.
pub struct Lifetime {
    most: Duration,
    example: &'static str,
}

impl Parser for Lifetime {
    type Value = Duration;
    fn parse(&self, text: &str) -> Result<Duration, String> {
        parse_duration(text).filter(|d| *d <= self.most).ok_or_else(|| {
            format!(
                "is not a duration of at most {}d; use e.g. {}",
                self.most.as_secs() / 86_400,
                self.example
            )
        })
    }
}

/// A duration within whole seconds.
pub struct Seconds {
    least: u64,
    most: u64,
}

impl Parser for Seconds {
    type Value = Duration;
    fn parse(&self, text: &str) -> Result<Duration, String> {
        let (least, most) = (self.least, self.most);
        parse_duration(text)
            .filter(|d| (least..=most).contains(&d.as_secs()))
            .ok_or_else(|| format!("must be a duration from {least}s to {most}s, e.g. 30s"))
    }
}

/// A span of whole days kept: what is older goes.
pub struct Days {
    least: u64,
    most: u64,
    example: &'static str,
}

impl Parser for Days {
    type Value = Duration;
    fn parse(&self, text: &str) -> Result<Duration, String> {
        let (least, most) = (days(self.least), days(self.most));
        parse_span(text).filter(|d| (least..=most).contains(d)).ok_or_else(|| {
            format!("must be a duration from {}d to {}d, e.g. {}", self.least, self.most, self.example)
        })
    }
}

/// A count within bounds.
pub struct WholeNumber {
    least: usize,
    most: usize,
}

impl Parser for WholeNumber {
    type Value = usize;
    fn parse(&self, text: &str) -> Result<usize, String> {
        let (least, most) = (self.least, self.most);
        text.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (least..=most).contains(n))
            .ok_or_else(|| format!("must be a whole number from {least} to {most}"))
    }
}

/// Text taken as it is.
pub struct Text;

impl Parser for Text {
    type Value = String;
    fn parse(&self, text: &str) -> Result<String, String> {
        Ok(text.to_owned())
    }
}

const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

const fn setting<P>(
    env: &'static str,
    default: Option<&'static str>,
    help: &'static str,
    parser: P,
) -> Setting<P> {
    Setting { info: SettingInfo { env, default, help }, parser }
}

pub const LISTEN: Setting<Custom<SocketAddr>> = setting(
    "PORTAL_LISTEN",
    Some("127.0.0.1:8080"),
    "address and port to listen on",
    Custom(|text| {
        text.trim()
            .parse()
            .map_err(|_| "is not an address and port such as 127.0.0.1:8080 or 0.0.0.0:8080".to_owned())
    }),
);
pub const PUBLIC_URL: Setting<Custom<Url>> = setting(
    "PORTAL_PUBLIC_URL",
    Some("http://127.0.0.1:8080"),
    "the base of every link we send (https in production)",
    Custom(parse_public_url),
);
pub const DATABASE_URL: Setting<Custom<DatabaseUrl>> = setting(
    "PORTAL_DATABASE_URL",
    Some("sqlite://data/portal-invites.db?mode=rwc"),
    "sqlite://PATH or postgres://USER@HOST/DB",
    Custom(|text| {
        DatabaseUrl::parse(text.trim()).map_err(|e| {
            format!("{e}; use sqlite://data/portal-invites.db?mode=rwc or postgres://user@host/database")
        })
    }),
);
pub const WEBHOOK_SECRETS: Setting<Custom<Vec<WebhookSecret>>> = setting(
    "PORTAL_WEBHOOK_SECRETS",
    None,
    "one or more whsec_… secrets from the host, separated by spaces (required by serve)",
    Custom(parse_secrets),
);
pub const LOG: Setting<Custom<String>> = setting(
    "PORTAL_LOG",
    Some("info"),
    "log filter, e.g. info or portal_invites=debug,info",
    Custom(parse_log_filter),
);
pub const LOG_FORMAT: Setting<Custom<LogFormat>> =
    setting("PORTAL_LOG_FORMAT", Some("text"), "text or json", Custom(LogFormat::parse));
// Every duration is bounded: expiry times are computed from them, and an absurd one must stop the
// start with its name rather than overflow later.
pub const INVITATION_TTL: Setting<Lifetime> = setting(
    "PORTAL_INVITATION_TTL",
    Some("7d"),
    "how long a set-up link works (s, m, h or d)",
    Lifetime { most: days(90), example: "7d, 48h or 90m" },
);
pub const SMTP_URL: Setting<Optional<Custom<Secret>>> = setting(
    "PORTAL_SMTP_URL",
    None,
    "send email through this SMTP server (smtp://, smtps://, ?tls=required); unset: write .eml files",
    Optional(Custom(parse_smtp_url)),
);
pub const MAIL_FROM: Setting<Custom<lettre::message::Mailbox>> = setting(
    "PORTAL_MAIL_FROM",
    Some("Customer Portal <portal@localhost>"),
    "the From address of every email",
    Custom(|text| {
        text.trim()
            .parse()
            .map_err(|_| "is not a mailbox; use e.g. Customer Portal <portal@example.com>".to_owned())
    }),
);
pub const OUTBOX_DIR: Setting<Custom<PathBuf>> = setting(
    "PORTAL_OUTBOX_DIR",
    Some("data/outbox"),
    "where email and SMS are written when no SMTP server or SMS gateway is set",
    Custom(|text| Ok(PathBuf::from(text.trim()))),
);
pub const TEMPLATES_DIR: Setting<Optional<Custom<PathBuf>>> = setting(
    "PORTAL_TEMPLATES_DIR",
    None,
    "a folder whose files override the built-in templates (checked at start-up)",
    Optional(Custom(|text| Ok(PathBuf::from(text)))),
);
pub const TWILIO_ACCOUNT_SID: Setting<Optional<Text>> = setting(
    "PORTAL_TWILIO_ACCOUNT_SID",
    None,
    "SMS through a Twilio-compatible Messages API: the account SID",
    Optional(Text),
);
pub const TWILIO_AUTH_TOKEN: Setting<Optional<Text>> =
    setting("PORTAL_TWILIO_AUTH_TOKEN", None, "SMS: the auth token", Optional(Text));
pub const TWILIO_FROM: Setting<Optional<Text>> =
    setting("PORTAL_TWILIO_FROM", None, "SMS: the sender number or name", Optional(Text));
pub const TWILIO_API_URL: Setting<Custom<Url>> = setting(
    "PORTAL_TWILIO_API_URL",
    Some("https://api.twilio.com"),
    "SMS: the API base URL",
    Custom(|text| {
        Url::parse(text.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| "is not an http(s) URL; the default is https://api.twilio.com".to_owned())
    }),
);
pub const RESET_TTL: Setting<Lifetime> = setting(
    "PORTAL_RESET_TTL",
    Some("1h"),
    "how long a password-reset link works",
    Lifetime { most: days(7), example: "1h or 30m" },
);
pub const PASSWORD_MIN_LENGTH: Setting<WholeNumber> = setting(
    "PORTAL_PASSWORD_MIN_LENGTH",
    Some("8"),
    "the shortest password accepted (8 to 64 characters)",
    WholeNumber { least: 8, most: 64 },
);
pub const SESSION_IDLE: Setting<Lifetime> = setting(
    "PORTAL_SESSION_IDLE",
    Some("30m"),
    "a customer is logged out after this long without a request",
    Lifetime { most: days(365), example: "30m, 12h or 1d" },
);
pub const SESSION_LIFETIME: Setting<Lifetime> = setting(
    "PORTAL_SESSION_LIFETIME",
    Some("12h"),
    "a customer is logged out this long after logging in, however active",
    Lifetime { most: days(365), example: "30m, 12h or 1d" },
);
pub const TRUSTED_PROXIES: Setting<Custom<Vec<ipnet::IpNet>>> = setting(
    "PORTAL_TRUSTED_PROXIES",
    None,
    "addresses or CIDR ranges of reverse proxies whose X-Forwarded-For is believed (space-separated)",
    Custom(parse_proxies),
);
/// Unset means one per CPU core (the loader decides).
pub const HASHING_LIMIT: Setting<Optional<WholeNumber>> = setting(
    "PORTAL_HASHING_LIMIT",
    None,
    "password hashes computed at once (default: the number of CPU cores); more wait up to 1 s, then get 503",
    Optional(WholeNumber { least: 1, most: 256 }),
);
pub const SEND_TIMEOUT: Setting<Seconds> = setting(
    "PORTAL_SEND_TIMEOUT",
    Some("30s"),
    "the deadline on one whole exchange with the SMTP server or SMS gateway (1s to 120s); outbox leases last twice this plus 30 s",
    Seconds { least: 1, most: 120 },
);
pub const SHUTDOWN_GRACE: Setting<Seconds> = setting(
    "PORTAL_SHUTDOWN_GRACE",
    Some("20s"),
    "after SIGTERM, how long sends in flight may finish before they are abandoned (1s to 300s)",
    Seconds { least: 1, most: 300 },
);
pub const AUDIT_RETENTION: Setting<Days> = setting(
    "PORTAL_AUDIT_RETENTION",
    Some("400d"),
    "how long audit-trail events are kept (1d to 3650d); older ones are purged by the housekeeping",
    Days { least: 1, most: 3650, example: "400d or 90d" },
);

/// Off unless set: the metrics are for the operator's scraper, never for the public port.
pub const METRICS_LISTEN: Setting<Optional<Custom<SocketAddr>>> = setting(
    "PORTAL_METRICS_LISTEN",
    None,
    "address and port of a separate listener serving Prometheus metrics at /metrics, e.g. 127.0.0.1:9464 (default: off)",
    Optional(Custom(|text| {
        text.parse().map_err(|_| "is not an address and port such as 127.0.0.1:9464".to_owned())
    })),
);

/// Every setting, in the order `--help` and the README list them. Only these are read from the
/// environment or accepted in the file.
pub const SETTINGS: &[&SettingInfo] = &[
    &LISTEN.info,
    &PUBLIC_URL.info,
    &DATABASE_URL.info,
    &WEBHOOK_SECRETS.info,
    &LOG.info,
    &LOG_FORMAT.info,
    &INVITATION_TTL.info,
    &SMTP_URL.info,
    &MAIL_FROM.info,
    &OUTBOX_DIR.info,
    &TEMPLATES_DIR.info,
    &TWILIO_ACCOUNT_SID.info,
    &TWILIO_AUTH_TOKEN.info,
    &TWILIO_FROM.info,
    &TWILIO_API_URL.info,
    &RESET_TTL.info,
    &PASSWORD_MIN_LENGTH.info,
    &SESSION_IDLE.info,
    &SESSION_LIFETIME.info,
    &TRUSTED_PROXIES.info,
    &HASHING_LIMIT.info,
    &SEND_TIMEOUT.info,
    &SHUTDOWN_GRACE.info,
    &AUDIT_RETENTION.info,
    &METRICS_LISTEN.info,
];
