//! SMS through a Twilio-compatible Messages API (`POST {api}/2010-04-01/Accounts/{sid}/Messages.json`
//! with `To`, `From`, `Body`, `StatusCallback` and basic auth), or, when no gateway is configured, as
//! files in the outbox folder. The gateway's answer names the message (`sid`), which its status reports
//! and a later look-up (`GET …/Messages/{sid}.json`) use.

use std::{path::PathBuf, time::Duration};

use chrono::{DateTime, Utc};
use reqwest::{StatusCode, header::RETRY_AFTER};

use super::{files::MessageFile, redact::redact};
use crate::{
    config::{Secret, TwilioSettings},
    outbox::{Attempt, BACKOFF_CAP},
    twilio::{self, StatusReport},
};

/// The most of a gateway's answer that is read: a message's JSON, or an explanation of a refusal,
/// is a few hundred bytes.
const MAX_ANSWER_BODY: usize = 16 * 1024;

/// Where SMS go.
pub enum SmsGateway {
    /// A Twilio-compatible API.
    Twilio {
        /// The HTTP client (rustls, connection pool).
        client: reqwest::Client,
        /// The full Messages.json URL.
        endpoint: String,
        /// Basic-auth user.
        account_sid: String,
        /// Basic-auth password.
        auth_token: Secret,
        from: String,
    },
    /// Files in a folder (the embedded default).
    Files { dir: PathBuf },
}

impl SmsGateway {
    /// From the settings.
    /// `deadline` bounds each whole request, answer included.
    pub fn new(
        settings: Option<&TwilioSettings>,
        outbox_dir: PathBuf,
        deadline: Duration,
    ) -> Result<Self, String> {
        let Some(twilio) = settings else {
            return Ok(Self::Files { dir: outbox_dir });
        };
        let client = reqwest::Client::builder()
            .timeout(deadline)
            .connect_timeout(deadline.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| format!("cannot build the HTTP client for SMS: {e}"))?;
        let endpoint = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            twilio.api_url.as_str().trim_end_matches('/'),
            url::form_urlencoded::byte_serialize(twilio.account_sid.as_bytes()).collect::<String>()
        );
        Ok(Self::Twilio {
            client,
            endpoint,
            account_sid: twilio.account_sid.clone(),
            auth_token: twilio.auth_token.clone(),
            from: twilio.from.clone(),
        })
    }

    /// Where SMS go, for the start-up log line.
    pub fn describe(&self) -> String {
        match self {
            Self::Twilio { .. } => {
                "SMS are sent through the Twilio-compatible API of PORTAL_TWILIO_API_URL".to_owned()
            }
            Self::Files { dir } => format!(
                "SMS are written as .sms files to {} (set the PORTAL_TWILIO_ settings to send them)",
                dir.display()
            ),
        }
    }

    /// The auth token that signs the gateway's status reports; `None` in file mode, where no report
    /// can be genuine.
    pub fn auth_token(&self) -> Option<&Secret> {
        match self {
            Self::Twilio { auth_token, .. } => Some(auth_token),
            Self::Files { .. } => None,
        }
    }

    /// Sends one SMS, asking for its status reports at `status_callback`; `file` says where it goes
    /// in file mode.
    pub async fn send(&self, to: &str, body: &str, status_callback: &str, file: &MessageFile) -> Attempt {
        match self {
            Self::Files { dir } => {
                super::files::write(&file.path(dir, "sms"), format!("To: {to}\n\n{body}\n").as_bytes()).await
            }
            Self::Twilio { client, endpoint, account_sid, auth_token, from } => {
                let response = client
                    .post(endpoint)
                    .basic_auth(account_sid, Some(auth_token.expose()))
                    .form(&[
                        ("To", to),
                        ("From", from.as_str()),
                        ("Body", body),
                        ("StatusCallback", status_callback),
                    ])
                    .send()
                    .await;
                match response {
                    Ok(response) => classify(response, Utc::now()).await,
                    Err(e) => Attempt::Transient {
                        reason: format!("SMS gateway unreachable: {}", transport_error(&e)),
                        retry_after: None,
                    },
                }
            }
        }
    }

    /// Asks the API where the message `sid` stands (`GET …/Messages/{sid}.json`).
    pub async fn look_up(&self, sid: &str) -> LookedUp {
        let Self::Twilio { client, endpoint, account_sid, auth_token, .. } = self else {
            return LookedUp::NoGateway;
        };
        let Some(sid) = twilio::message_sid(sid) else { return LookedUp::NoStatus };
        let url = format!("{}/{sid}.json", endpoint.trim_end_matches(".json"));
        let response = client.get(url).basic_auth(account_sid, Some(auth_token.expose())).send().await;
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                return LookedUp::Unreachable(format!("SMS gateway unreachable: {}", transport_error(&e)));
            }
        };
        let status = response.status();
        // Our credentials refused (a rotated auth token, say) is our fault, not the message's: the
        // one look-up it gets is kept for when the gateway answers.
        let ours = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
        if ours || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return LookedUp::Unreachable(format!("SMS gateway answered {status}"));
        }
        if !status.is_success() {
            return LookedUp::NoStatus;
        }
        match twilio::read_lookup(sid, &read_limited(response).await) {
            Some(report) => LookedUp::Status(report),
            None => LookedUp::NoStatus,
        }
    }
}

/// What a look-up of a message found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookedUp {
    /// Where the message stands.
    Status(StatusReport),
    /// The gateway answered, but not with a status: it does not know the message, or the answer is
    /// not the API's. Asking again would not help.
    NoStatus,
    /// The gateway could not be asked now (unreachable, too slow, busy, a fault of its own).
    Unreachable(String),
    /// No gateway is configured (SMS go to files).
    NoGateway,
}

/// What went wrong on the way, without the URL (it names the account).
fn transport_error(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_body() || error.is_decode() {
        "the answer was cut off"
    } else {
        "the request failed"
    }
}

/// 2xx accepted (with the message's `sid`, when the answer names one); 429 and 5xx retried (honouring `Retry-After`, up to the retry cap); any other 4xx
/// refused for good (an invalid number, for example). Anything the gateway says is untrusted: the
/// body is read up to a limit, its explanation is redacted, and a status outside 2xx-5xx counts as
/// a transient failure.
async fn classify(response: reqwest::Response, now: DateTime<Utc>) -> Attempt {
    let status = response.status();
    if status.is_success() {
        // The sid is kept for the message's status reports; an answer without one (a proxy's page,
        // say) is still an acceptance.
        let provider_ref = twilio::sid_of_answer(&read_limited(response).await);
        return Attempt::Sent { provider_ref };
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now));
    let body = read_limited(response).await;
    let reason = explain(status, &body);
    if status == StatusCode::TOO_MANY_REQUESTS || !status.is_client_error() {
        Attempt::Transient { reason, retry_after }
    } else {
        Attempt::Permanent { reason }
    }
}

async fn read_limited(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ANSWER_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ANSWER_BODY {
            break;
        }
    }
    body
}

/// The reason recorded for a gateway's refusal: its status, its error code and its own explanation
/// ("The 'To' number is not a valid phone number."), without any number or address it echoes.
pub fn explain(status: StatusCode, body: &[u8]) -> String {
    let answer = serde_json::from_slice::<serde_json::Value>(body).ok();
    let field = |name: &str| answer.as_ref().and_then(|v| v.get(name)).cloned();
    let message = field("message").and_then(|m| m.as_str().map(|m| m.chars().take(300).collect::<String>()));
    let code = field("code").and_then(|c| c.as_i64());
    let mut reason = format!("SMS gateway answered {status}");
    if let Some(message) = message.filter(|m| !m.trim().is_empty()) {
        reason.push_str(": ");
        reason.push_str(&redact(&message));
    }
    if let Some(code) = code {
        reason.push_str(&format!(" (error {code})"));
    }
    reason
}

/// A `Retry-After` value (RFC 9110 §10.2.3): seconds, or an HTTP date, as a wait from `now`, held
/// to [`BACKOFF_CAP`] whatever it says. `None` for anything else.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time".
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = DateTime::parse_from_rfc2822(value).ok()?.to_utc();
        (at - now).to_std().unwrap_or(Duration::ZERO)
    };
    Some(wait.min(BACKOFF_CAP))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().to_utc()
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date_and_held_to_the_cap() {
        assert_eq!(parse_retry_after("120", now()), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now()), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("10000000000000", now()), Some(BACKOFF_CAP));
        assert_eq!(parse_retry_after(&"9".repeat(400), now()), Some(BACKOFF_CAP));
        assert_eq!(parse_retry_after("Mon, 23 Nov 2026 10:02:00 GMT", now()), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Sun, 22 Nov 2026 10:00:00 GMT", now()), Some(Duration::ZERO), "past");
        assert_eq!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now()), Some(BACKOFF_CAP));
        for bad in ["", "-5", "1.5", "soon", "+3", "0x10"] {
            assert_eq!(parse_retry_after(bad, now()), None, "{bad}");
        }
    }

    #[test]
    fn a_refusal_keeps_code_and_words_but_not_the_number() {
        let body = br#"{"code": 21211, "message": "The 'To' number +61412345678 is not a valid phone number.", "status": 400}"#;
        let reason = explain(StatusCode::BAD_REQUEST, body);
        assert_eq!(
            reason,
            "SMS gateway answered 400 Bad Request: The 'To' number [number] is not a valid phone number. (error 21211)"
        );
        assert_eq!(
            explain(StatusCode::BAD_GATEWAY, b"<html>nonsense"),
            "SMS gateway answered 502 Bad Gateway"
        );
    }

    proptest! {
        #[test]
        fn any_retry_after_or_answer_is_handled_without_panic(value in "\\PC{0,60}", body in proptest::collection::vec(any::<u8>(), 0..300), status in 100u16..600) {
            if let Some(wait) = parse_retry_after(&value, now()) {
                prop_assert!(wait <= BACKOFF_CAP);
            }
            let status = StatusCode::from_u16(status).unwrap();
            let _ = explain(status, &body);
        }
    }
}
