//! Typed settings from the environment and, optionally, a TOML file (`--config`).
//!
//! Every setting has one name: `PORTAL_X` in the environment, `x` (lower case, no prefix) in the file.
//! The environment wins over the file, so an operator can override one value without editing it. A
//! missing or malformed value becomes a [`SettingError`] that names the setting and what to do; the
//! binary prints it on one line and exits with code 2.

use std::{collections::BTreeMap, fmt, net::SocketAddr, path::Path, time::Duration};

use url::Url;

use crate::host::signature::WebhookSecret;

/// One setting the service understands, for parsing, `--help` and the README.
pub struct SettingInfo {
    /// The environment variable.
    pub env: &'static str,
    /// The default, when there is one.
    pub default: Option<&'static str>,
    /// What it does.
    pub help: &'static str,
}

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
        let invitation_ttl = parse_duration(&get("PORTAL_INVITATION_TTL")).ok_or_else(|| {
            SettingError::new("PORTAL_INVITATION_TTL", "is not a duration; use e.g. 7d, 48h or 90m")
        })?;
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

fn non_empty(value: Option<&String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// All three Twilio settings, or none of them.
fn parse_twilio(
    raw: &BTreeMap<String, String>,
    api_url: &str,
) -> Result<Option<TwilioSettings>, SettingError> {
    let sid = non_empty(raw.get("PORTAL_TWILIO_ACCOUNT_SID"));
    let token = non_empty(raw.get("PORTAL_TWILIO_AUTH_TOKEN"));
    let from = non_empty(raw.get("PORTAL_TWILIO_FROM"));
    let (account_sid, auth_token, from) = match (sid, token, from) {
        (None, None, None) => return Ok(None),
        (Some(sid), Some(token), Some(from)) => (sid, token, from),
        (sid, token, _) => {
            let missing = if sid.is_none() {
                "PORTAL_TWILIO_ACCOUNT_SID"
            } else if token.is_none() {
                "PORTAL_TWILIO_AUTH_TOKEN"
            } else {
                "PORTAL_TWILIO_FROM"
            };
            return Err(SettingError::new(
                missing,
                "is not set, but other PORTAL_TWILIO_ settings are; set all three to send SMS, or none to write SMS to files",
            ));
        }
    };
    let api_url = Url::parse(api_url.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            SettingError::new(
                "PORTAL_TWILIO_API_URL",
                "is not an http(s) URL; the default is https://api.twilio.com",
            )
        })?;
    Ok(Some(TwilioSettings { account_sid, auth_token: Secret(auth_token), from, api_url }))
}

fn parse_public_url(text: &str) -> Result<Url, SettingError> {
    let fail = |why: &str| {
        SettingError::new(
            "PORTAL_PUBLIC_URL",
            format!("{why}; set it to the address customers open, e.g. https://portal.example.com"),
        )
    };
    let url = Url::parse(text.trim()).map_err(|e| fail(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(fail("must be an http or https URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(fail("must not have a query or fragment"));
    }
    Ok(url)
}

fn parse_secrets(text: &str) -> Result<Vec<WebhookSecret>, SettingError> {
    text.split_whitespace()
        .enumerate()
        .map(|(i, s)| {
            WebhookSecret::parse(s).map_err(|e| {
                SettingError::new(
                    "PORTAL_WEBHOOK_SECRETS",
                    format!("secret number {} {e}; copy it exactly as the host showed it", i + 1),
                )
            })
        })
        .collect()
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

/// Parses a duration such as `90s`, `30m`, `12h` or `7d` (used by settings with a lifetime).
pub fn parse_duration(text: &str) -> Option<Duration> {
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
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_fill_what_is_not_set() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.public_url.as_str(), "http://127.0.0.1:8080/");
        assert!(s.database_url.is_sqlite());
        assert!(s.webhook_secrets.is_empty());
        assert_eq!(s.log_format, LogFormat::Text);
        assert!(s.is_local_http());
        let err = s.require_webhook_secrets().unwrap_err();
        assert_eq!(err.name, "PORTAL_WEBHOOK_SECRETS");
        assert!(err.to_string().contains("portal-invites secret"));
    }

    #[test]
    fn a_malformed_value_names_its_setting() {
        for (name, value) in [
            ("PORTAL_LISTEN", "8080"),
            ("PORTAL_PUBLIC_URL", "portal.example.com"),
            ("PORTAL_PUBLIC_URL", "ftp://portal.example.com"),
            ("PORTAL_DATABASE_URL", "mysql://localhost/x"),
            ("PORTAL_WEBHOOK_SECRETS", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw nope"),
            ("PORTAL_LOG", "info,[[["),
            ("PORTAL_LOG_FORMAT", "xml"),
        ] {
            let err = Settings::load(None, env(&[(name, value)])).unwrap_err();
            assert_eq!(err.name, name, "{value}");
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn secrets_are_space_separated_and_never_printed() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let other = WebhookSecret::generate();
        let s = Settings::load(None, env(&[("PORTAL_WEBHOOK_SECRETS", &format!(" {secret}  {other} "))]))
            .unwrap();
        assert_eq!(s.webhook_secrets.len(), 2);
        let shown = format!("{s:?}");
        assert!(!shown.contains("MfKQ9r8") && !shown.contains(&other[6..]));
        let err = Settings::load(None, env(&[("PORTAL_WEBHOOK_SECRETS", "whsec_c2hvcnQ=")])).unwrap_err();
        assert!(!err.to_string().contains("c2hvcnQ"));
    }

    #[test]
    fn a_database_password_is_hidden() {
        let s = Settings::load(None, env(&[("PORTAL_DATABASE_URL", "postgres://app:hunter2@db/portal")]))
            .unwrap();
        assert!(!format!("{:?} {}", s, s.database_url).contains("hunter2"));
        assert!(s.database_url.expose().contains("hunter2"));
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portal.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\nlog_format = \"json\"\nwebhook_secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n",
        )
        .unwrap();
        let s = Settings::load(Some(&path), env(&[("PORTAL_LISTEN", "127.0.0.1:9001")])).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:9001");
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.webhook_secrets.len(), 1);
    }

    #[test]
    fn the_file_refuses_unknown_keys_and_bad_toml() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portal.toml");
        std::fs::write(&path, "lisen = \"0.0.0.0:9000\"\n").unwrap();
        let err = Settings::load(Some(&path), env(&[])).unwrap_err();
        assert_eq!(err.name, "--config");
        assert!(err.message.contains("lisen"));
        std::fs::write(&path, "listen = \n").unwrap();
        assert!(Settings::load(Some(&path), env(&[])).unwrap_err().message.contains("TOML"));
        let missing = dir.path().join("missing.toml");
        assert!(Settings::load(Some(&missing), env(&[])).unwrap_err().message.contains("cannot be read"));
    }

    #[test]
    fn delivery_settings_are_checked_and_secrets_hidden() {
        let s = Settings::load(
            None,
            env(&[
                ("PORTAL_SMTP_URL", "smtp://user:hunter2@mail.example.com:587?tls=required"),
                ("PORTAL_TWILIO_ACCOUNT_SID", "AC123"),
                ("PORTAL_TWILIO_AUTH_TOKEN", "tw-secret"),
                ("PORTAL_TWILIO_FROM", "+15550001111"),
            ]),
        )
        .unwrap();
        assert!(s.mail.smtp_url.is_some() && s.twilio.is_some());
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("tw-secret"), "{shown}");
        assert_eq!(s.invitation_ttl, Duration::from_secs(7 * 86_400));

        for (pairs, name) in [
            (vec![("PORTAL_TWILIO_ACCOUNT_SID", "AC123")], "PORTAL_TWILIO_AUTH_TOKEN"),
            (vec![("PORTAL_SMTP_URL", "http://mail.example.com")], "PORTAL_SMTP_URL"),
            (vec![("PORTAL_MAIL_FROM", "not a mailbox")], "PORTAL_MAIL_FROM"),
            (vec![("PORTAL_INVITATION_TTL", "a week")], "PORTAL_INVITATION_TTL"),
        ] {
            assert_eq!(Settings::load(None, env(&pairs)).unwrap_err().name, name);
        }
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "7", "d", "0h", "-1h", "1.5h", "1w"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
