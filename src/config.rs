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
        Ok(Self { listen, public_url, database_url, webhook_secrets, log_filter, log_format })
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
