//! Acting as the host: takes the shop and customer from the command line, signs the contract's
//! messages (built by [`super::host_messages`]) like the host does, sends them to a running instance
//! and prints the answers so a person can read them. Used by `simulate` and `demo`.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::host_messages::{Customer, Portal, Shop, Staff};
use crate::signature::WebhookSecret;

/// The shop in a simulated message.
#[derive(Debug, Clone, clap::Args)]
pub struct ShopArgs {
    /// The host's shop id.
    #[arg(long, default_value = "shop_demo")]
    pub shop_id: String,
    /// The shop's name.
    #[arg(long, default_value = "Southside Auto Care")]
    pub shop_name: String,
    /// bronze, silver, gold or platinum.
    #[arg(long, default_value = "gold")]
    pub tier: String,
    /// Whether the Customer Portal is activated.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub portal_active: bool,
    /// IANA time zone.
    #[arg(long, default_value = "Australia/Brisbane")]
    pub timezone: String,
    /// Language tag.
    #[arg(long, default_value = "en-AU")]
    pub locale: String,
    /// The shop's contact email.
    #[arg(long, default_value = "service@southside.example")]
    pub shop_email: String,
    /// The shop's phone.
    #[arg(long, default_value = "+61 7 3000 0000")]
    pub shop_phone: String,
    /// The host's own Customer Portal for the shop (the snapshot's `portal` object, contract §4), which
    /// signs customers in through this service with OpenID Connect (§8): its start page, where
    /// customers land after setting a password or logging in. Give its redirect URIs with
    /// --redirect-uri. Without this (or --portal-base) the shop has no portal.
    #[arg(long, value_name = "URL", conflicts_with = "portal_base")]
    pub portal_url: Option<String>,
    /// A redirect URI of the portal's OpenID Connect client, matched exactly; repeat for more.
    #[arg(long = "redirect-uri", value_name = "URI", requires = "portal_url")]
    pub redirect_uris: Vec<String>,
    /// Where the portal may ask to return after a sign-out, matched exactly; repeat for more.
    #[arg(long = "post-logout-redirect-uri", value_name = "URI", requires = "portal_url")]
    pub post_logout_redirect_uris: Vec<String>,
    /// Shorthand for a portal laid out like `demo`'s stand-in under BASE: start page BASE/{shop_id},
    /// redirect URI BASE/oidc/callback, post-logout redirect URI BASE/{shop_id}/signed-out.
    #[arg(long, value_name = "BASE")]
    pub portal_base: Option<String>,
}

/// The customer in a simulated message.
#[derive(Debug, Clone, clap::Args)]
pub struct CustomerArgs {
    /// The host's customer id.
    #[arg(long, default_value = "cus_demo")]
    pub customer_id: String,
    /// Given name.
    #[arg(long, default_value = "Jana")]
    pub first_name: String,
    /// Family name.
    #[arg(long, default_value = "Kowalski")]
    pub last_name: String,
    /// Email address (the portal username); `--email ""` sends none.
    #[arg(long, default_value = "jana@example.com")]
    pub email: String,
    /// E.164 mobile number; `--mobile ""` sends none.
    #[arg(long, default_value = "+61412345678")]
    pub mobile: String,
}

/// Snapshots get the current time as their version, so each simulated change is newer than the last.
pub fn fresh_version(now: DateTime<Utc>) -> i64 {
    now.timestamp_millis()
}

/// Who `simulate` and `demo` act as in the star menu.
pub const FRONT_DESK: Staff<'static> = Staff { id: "usr_simulator", name: "Simulator (front desk)" };

impl ShopArgs {
    /// The shop these options describe; an empty email or phone is sent as `null`.
    pub fn shop(&self) -> Shop {
        Shop {
            id: self.shop_id.clone(),
            name: self.shop_name.clone(),
            tier: self.tier.clone(),
            portal_active: self.portal_active,
            timezone: self.timezone.clone(),
            locale: self.locale.clone(),
            email: non_empty(&self.shop_email),
            phone: non_empty(&self.shop_phone),
            portal: self.portal(),
        }
    }

    fn portal(&self) -> Option<Portal> {
        if let Some(base) = &self.portal_base {
            return Some(Portal::at(base, &self.shop_id));
        }
        // Sent as given, even without a redirect URI: the service's answer says what is wrong.
        self.portal_url.as_ref().map(|url| Portal {
            url: url.clone(),
            redirect_uris: self.redirect_uris.clone(),
            post_logout_redirect_uris: self.post_logout_redirect_uris.clone(),
        })
    }
}

impl CustomerArgs {
    /// The customer these options describe; an empty email or mobile is sent as `null`.
    pub fn customer(&self) -> Customer {
        Customer {
            id: self.customer_id.clone(),
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            email: non_empty(&self.email),
            mobile: non_empty(&self.mobile),
        }
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// Sends messages to one instance, signed with one secret.
pub struct HostClient {
    base: String,
    secret: WebhookSecret,
    http: reqwest::Client,
}

/// An answer, as received.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body, parsed when it is JSON.
    pub json: Option<Value>,
    /// The body as text.
    pub text: String,
}

impl HostClient {
    /// A client for the instance at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, secret: WebhookSecret) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), secret, http })
    }

    /// Signs and POSTs `message` to `path` with a fresh `webhook-id`.
    pub async fn send(&self, path: &str, message: &Value) -> Result<Answer, String> {
        let body = serde_json::to_vec(message).expect("JSON serialises");
        let id = crate::random::id("msg");
        let timestamp = Utc::now().timestamp();
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", self.secret.sign(&id, timestamp, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| {
                format!("cannot reach {}: {e}; is `portal-invites serve` running there?", self.base)
            })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok(Answer { status, json: serde_json::from_str(&text).ok(), text })
    }
}

/// The answer as a person reads it.
pub fn describe(answer: &Answer) -> String {
    let reason =
        reqwest::StatusCode::from_u16(answer.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let mut out = format!("{} {reason}", answer.status);
    let Some(json) = &answer.json else {
        if !answer.text.is_empty() {
            let _ = write!(out, "\n    {}", answer.text);
        }
        return out;
    };
    if json.get("type").is_some() && json.get("status").is_some() {
        let _ = write!(
            out,
            " [{}]\n    {}",
            json["code"].as_str().unwrap_or("problem"),
            json["detail"].as_str().unwrap_or("")
        );
        return out;
    }
    match json["response_action"].as_str() {
        Some("open_dialog") => {
            let dialog = &json["dialog"];
            let _ = write!(out, ": open_dialog \"{}\"", dialog["title"].as_str().unwrap_or(""));
            for field in dialog["fields"].as_array().into_iter().flatten() {
                if let Some(text) = field["text"].as_str() {
                    let _ = write!(out, "\n    {}", text.replace('\n', "\n    "));
                    continue;
                }
                let _ = write!(out, "\n    {}:", field["label"].as_str().unwrap_or(""));
                for option in field["options"].as_array().into_iter().flatten() {
                    let disabled = if option["disabled"] == true { "  (disabled)" } else { "" };
                    let _ = write!(
                        out,
                        "\n      ( ) {:<6} {}{disabled}",
                        option["value"].as_str().unwrap_or(""),
                        option["label"].as_str().unwrap_or("")
                    );
                }
            }
        }
        Some(action @ ("message" | "close")) => {
            let message = &json["message"];
            let _ = write!(
                out,
                ": {action} [{} {}]\n    {}",
                message["level"].as_str().unwrap_or(""),
                message["code"].as_str().unwrap_or(""),
                message["text"].as_str().unwrap_or("")
            );
        }
        Some("errors") => {
            let _ = write!(out, ": errors (the dialog stays open)");
            for (field, error) in json["errors"].as_object().into_iter().flatten() {
                let _ = write!(
                    out,
                    "\n    {field}: [{}] {}",
                    error["code"].as_str().unwrap_or(""),
                    error["text"].as_str().unwrap_or("")
                );
            }
        }
        _ => {
            let _ = write!(out, "\n    {}", answer.text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn answer(status: u16, json: Value) -> Answer {
        Answer { status, text: json.to_string(), json: Some(json) }
    }

    #[derive(clap::Parser)]
    struct Shop {
        #[command(flatten)]
        shop: ShopArgs,
    }

    fn shop_of(args: &[&str]) -> Result<super::Shop, clap::Error> {
        use clap::Parser;
        Shop::try_parse_from(std::iter::once("shop").chain(args.iter().copied())).map(|s| s.shop.shop())
    }

    #[test]
    fn a_portal_is_registered_only_when_asked_for() {
        assert_eq!(shop_of(&[]).unwrap().portal, None);
        let given = shop_of(&[
            "--portal-url",
            "https://my.workshop.example/portal/shop_demo",
            "--redirect-uri",
            "https://my.workshop.example/cb1",
            "--redirect-uri",
            "https://my.workshop.example/cb2",
            "--post-logout-redirect-uri",
            "https://my.workshop.example/out",
        ])
        .unwrap();
        assert_eq!(
            given.portal,
            Some(Portal {
                url: "https://my.workshop.example/portal/shop_demo".into(),
                redirect_uris: vec![
                    "https://my.workshop.example/cb1".into(),
                    "https://my.workshop.example/cb2".into()
                ],
                post_logout_redirect_uris: vec!["https://my.workshop.example/out".into()],
            })
        );
        let laid_out =
            shop_of(&["--shop-id", "shop_9", "--portal-base", "http://127.0.0.1:9000/portal/"]).unwrap();
        assert_eq!(laid_out.portal, Some(Portal::at("http://127.0.0.1:9000/portal", "shop_9")));
        assert!(
            shop_of(&["--redirect-uri", "https://x.example/cb"]).is_err(),
            "a redirect URI needs a portal"
        );
        assert!(
            shop_of(&["--portal-url", "https://x.example/p", "--portal-base", "https://x.example"]).is_err()
        );
    }

    #[test]
    fn answers_read_like_the_host_would_show_them() {
        let dialog = answer(
            200,
            json!({"response_action": "open_dialog", "dialog": {"title": "Send Customer Portal Invitation",
                "fields": [{"label": "Send the invitation by", "options": [
                    {"value": "email", "label": "Email to jana@example.com"},
                    {"value": "sms", "label": "SMS (no mobile)", "disabled": true}]}]}}),
        );
        let shown = describe(&dialog);
        assert!(shown.starts_with("200 OK: open_dialog"));
        assert!(shown.contains("( ) email  Email to jana@example.com"));
        assert!(shown.contains("(disabled)"));
        let sent = answer(
            200,
            json!({"response_action": "close", "message": {"level": "success", "code": "invitation_sent", "text": "Sent."}}),
        );
        assert_eq!(describe(&sent), "200 OK: close [success invitation_sent]\n    Sent.");
        let problem = answer(
            401,
            json!({"type": "/problems/invalid-signature", "status": 401, "code": "invalid-signature", "detail": "no match"}),
        );
        assert_eq!(describe(&problem), "401 Unauthorized [invalid-signature]\n    no match");
        let empty = Answer { status: 204, json: None, text: String::new() };
        assert_eq!(describe(&empty), "204 No Content");
    }
}
