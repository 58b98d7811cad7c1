//! SMS through a Twilio-compatible Messages API (`POST {api}/2010-04-01/Accounts/{sid}/Messages.json`
//! with `To`, `From`, `Body` and basic auth), or, when no gateway is configured, as files in the outbox
//! folder.

use std::{path::PathBuf, time::Duration};

use reqwest::{StatusCode, header::RETRY_AFTER};

use super::{email::write_file, outbox::Attempt};
use crate::config::{Secret, TwilioSettings};

/// How long one call to the gateway may take.
pub const GATEWAY_TIMEOUT: Duration = Duration::from_secs(10);

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
        /// The sender.
        from: String,
    },
    /// Files in a folder (the embedded default).
    Files {
        /// The folder.
        dir: PathBuf,
    },
}

impl SmsGateway {
    /// From the settings.
    pub fn new(settings: Option<&TwilioSettings>, outbox_dir: PathBuf) -> Result<Self, String> {
        let Some(twilio) = settings else {
            return Ok(Self::Files { dir: outbox_dir });
        };
        let client = reqwest::Client::builder()
            .timeout(GATEWAY_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
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

    /// Sends one SMS; `id` names the file in file mode.
    pub async fn send(&self, to: &str, body: &str, id: &str) -> Attempt {
        match self {
            Self::Files { dir } => {
                write_file(dir, &format!("{id}.sms"), format!("To: {to}\n\n{body}\n").as_bytes()).await
            }
            Self::Twilio { client, endpoint, account_sid, auth_token, from } => {
                let response = client
                    .post(endpoint)
                    .basic_auth(account_sid, Some(auth_token.expose()))
                    .form(&[("To", to), ("From", from.as_str()), ("Body", body)])
                    .send()
                    .await;
                match response {
                    Ok(response) => classify(response).await,
                    Err(e) => Attempt::Transient {
                        reason: format!("SMS gateway unreachable: {e}"),
                        retry_after: None,
                    },
                }
            }
        }
    }
}

/// 2xx accepted; 429 and 5xx retried (honouring `Retry-After`); any other 4xx refused for good (an
/// invalid number, for example).
async fn classify(response: reqwest::Response) -> Attempt {
    let status = response.status();
    if status.is_success() {
        return Attempt::Sent;
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // The gateway's own explanation, e.g. "The 'To' number is not a valid phone number."
    let detail = response
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_default();
    let reason =
        format!("SMS gateway answered {status}{}{detail}", if detail.is_empty() { "" } else { ": " });
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Attempt::Transient { reason, retry_after }
    } else {
        Attempt::Permanent { reason }
    }
}
