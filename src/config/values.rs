//! The types of setting values that need more than the standard library (a database URL that hides
//! its password, secrets kept out of `Debug`, the log format), and the parsers of single values that
//! the declarations in `declared.rs` use. Each parser returns what is wrong; the caller adds the name.

use std::{fmt, time::Duration};

use url::Url;

use crate::signature::WebhookSecret;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("is {other:?}; use text or json")),
        }
    }
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
pub struct Secret(pub(super) String);

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

/// An SMTP URL in lettre's form, checked by building (not connecting) a transport from it.
pub(super) fn parse_smtp_url(text: &str) -> Result<Secret, String> {
    lettre::transport::smtp::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(text).map_err(|e| {
        format!("is not an SMTP URL ({e}); use e.g. smtp://user:password@mail.example.com:587?tls=required")
    })?;
    Ok(Secret(text.to_owned()))
}

/// A filter as `tracing_subscriber` takes it, kept as text (the subscriber is built later).
pub(super) fn parse_log_filter(text: &str) -> Result<String, String> {
    // tracing-subscriber's parser panics on some non-ASCII text (it slices inside a character);
    // targets and levels are ASCII, so such text is refused before it gets there.
    if !text.is_ascii() {
        return Err(
            "is not a log filter (only ASCII is accepted); use e.g. info or portal_invites=debug,info".into(),
        );
    }
    tracing_subscriber::EnvFilter::try_new(text)
        .map_err(|e| format!("is not a log filter ({e}); use e.g. info or portal_invites=debug,info"))?;
    Ok(text.to_owned())
}

pub(super) fn parse_public_url(text: &str) -> Result<Url, String> {
    let fail =
        |why: &str| format!("{why}; set it to the address customers open, e.g. https://portal.example.com");
    let url = Url::parse(text.trim()).map_err(|e| fail(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(fail("must be an http or https URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(fail("must not have a query or fragment"));
    }
    Ok(url)
}

pub(super) fn parse_secrets(text: &str) -> Result<Vec<WebhookSecret>, String> {
    text.split_whitespace()
        .enumerate()
        .map(|(i, s)| {
            WebhookSecret::parse(s)
                .map_err(|e| format!("secret number {} {e}; copy it exactly as the host showed it", i + 1))
        })
        .collect()
}

/// Addresses (`10.0.0.5`) or ranges (`10.0.0.0/8`), separated by spaces or commas.
pub(super) fn parse_proxies(text: &str) -> Result<Vec<ipnet::IpNet>, String> {
    text.split([' ', ','])
        .filter(|t| !t.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{item:?} is not an address or CIDR range such as 10.0.0.0/8"))
        })
        .collect()
}

/// The longest lifetime a setting may have. Every lifetime is added to the current time somewhere
/// (an expiry, a session's end), and chrono panics past the year 262143: a typo such as `100000000d`
/// must stop the start with the setting named, not crash the first login. A year is far beyond any
/// sensible link or session.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Parses a duration such as `90s`, `30m`, `12h` or `7d`, from one second to `MAX_DURATION` (used
/// by settings with a lifetime).
pub fn parse_duration(text: &str) -> Option<Duration> {
    parse_span(text).filter(|d| *d <= MAX_DURATION)
}

/// Parses a duration as [`parse_duration`] does, from one second up, with no ceiling: a setting that
/// takes it has bounds of its own.
pub(super) fn parse_span(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => number,
        "m" => number.checked_mul(60)?,
        "h" => number.checked_mul(3600)?,
        "d" => number.checked_mul(86_400)?,
        _ => return None,
    };
    (seconds > 0).then_some(Duration::from_secs(seconds))
}
