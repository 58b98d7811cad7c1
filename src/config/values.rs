//! Parsing single setting values: URLs, secrets, durations, the SMS gateway, proxies.

use std::{collections::BTreeMap, time::Duration};

use url::Url;

use super::{Secret, SettingError, TwilioSettings};
use crate::signature::WebhookSecret;

pub(super) fn non_empty(value: Option<&String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// All three Twilio settings, or none of them.
pub(super) fn parse_twilio(
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

pub(super) fn parse_public_url(text: &str) -> Result<Url, SettingError> {
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

pub(super) fn parse_secrets(text: &str) -> Result<Vec<WebhookSecret>, SettingError> {
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

/// Addresses (`10.0.0.5`) or ranges (`10.0.0.0/8`), separated by spaces or commas.
pub(super) fn parse_proxies(text: &str) -> Result<Vec<ipnet::IpNet>, SettingError> {
    text.split([' ', ','])
        .filter(|t| !t.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    SettingError::new(
                        "PORTAL_TRUSTED_PROXIES",
                        format!("{item:?} is not an address or CIDR range such as 10.0.0.0/8"),
                    )
                })
        })
        .collect()
}

/// The longest lifetime a setting may have. Every lifetime is added to the current time somewhere
/// (an expiry, a session's end), and chrono panics past the year 262143: a typo such as `100000000d`
/// must stop the start with the setting named, not crash the first login. A year is far beyond any
/// sensible link or session.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Parses a duration such as `90s`, `30m`, `12h` or `7d`, from one second to [`MAX_DURATION`] (used
/// by settings with a lifetime).
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
    let duration = Duration::from_secs(seconds);
    (seconds > 0 && duration <= MAX_DURATION).then_some(duration)
}
