//! The host as the one confidential client (§8): `client_id` is the manifest's plugin key, and the
//! secret is the plugin's webhook signing secret, the whole `whsec_…` string (either one during a
//! rotation), sent with HTTP Basic (`client_secret_basic`).
//!
//! RFC 6749 §2.3.1 has the client form-encode both before Basic encoding; many libraries do not. A
//! `whsec_` secret holds `+ / =` but never `%` or a space, so the two readings cannot collide, and
//! both are accepted. Every comparison is constant-time on bytes.

use base64::{Engine, engine::general_purpose::STANDARD};
use subtle::ConstantTimeEq;

use crate::signature::WebhookSecret;

/// The client's credentials as configured.
#[derive(Clone)]
pub struct Client {
    id: String,
    secrets: Vec<WebhookSecret>,
}

/// Why the client was not authenticated (all are `invalid_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRefusal {
    /// No `Authorization: Basic` header (or one that does not decode).
    NoCredentials,
    /// The header names another client, or the secret is wrong.
    Mismatch,
}

impl Client {
    pub fn new(id: String, secrets: Vec<WebhookSecret>) -> Self {
        Self { id, secrets }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `client_id` (as a request names it) is ours.
    pub fn is(&self, client_id: &str) -> bool {
        bool::from(client_id.as_bytes().ct_eq(self.id.as_bytes()))
    }

    /// Authenticates an `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<(), ClientRefusal> {
        let (id, secret) = authorization.and_then(basic_credentials).ok_or(ClientRefusal::NoCredentials)?;
        let id_ok = self.is(&id) || form_decoded(&id).is_some_and(|d| self.is(&d));
        let secret_ok =
            self.secret_matches(&secret) || form_decoded(&secret).is_some_and(|d| self.secret_matches(&d));
        if id_ok && secret_ok { Ok(()) } else { Err(ClientRefusal::Mismatch) }
    }

    fn secret_matches(&self, presented: &str) -> bool {
        // Every configured secret is compared, so the time does not tell which one matched.
        self.secrets.iter().fold(false, |found, s| s.matches_text(presented) | found)
    }
}

/// `(user, password)` of an `Authorization: Basic` header.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The `application/x-www-form-urlencoded` reading of a credential, when it differs from as-is.
fn form_decoded(text: &str) -> Option<String> {
    if !text.contains(['%', '+']) {
        return None;
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={text}")).ok()?;
    pairs.into_iter().next().map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
    }

    fn form_encode(text: &str) -> String {
        serde_urlencoded::to_string([("v", text)]).unwrap().trim_start_matches("v=").to_owned()
    }

    #[test]
    fn the_secret_is_accepted_as_is_and_form_encoded_and_either_during_a_rotation() {
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw+/hxa+5q8zs=".to_owned();
        let new = WebhookSecret::generate();
        let client = Client::new(
            "customer-portal-invitations".into(),
            vec![WebhookSecret::parse(&old).unwrap(), WebhookSecret::parse(&new).unwrap()],
        );
        let id = "customer-portal-invitations";
        for secret in [&old, &new] {
            assert_eq!(client.authenticate(Some(&basic(id, secret))), Ok(()));
            assert_eq!(client.authenticate(Some(&basic(id, &form_encode(secret)))), Ok(()));
        }
        assert!(form_encode(&old).contains("%2B"), "the example must exercise the encoded reading");
    }

    #[test]
    fn anything_else_is_refused() {
        let secret = WebhookSecret::generate();
        let client = Client::new("plugin".into(), vec![WebhookSecret::parse(&secret).unwrap()]);
        let other = WebhookSecret::generate();
        for (header, why) in [
            (None, ClientRefusal::NoCredentials),
            (Some("Bearer abc".to_owned()), ClientRefusal::NoCredentials),
            (Some("Basic !!!".to_owned()), ClientRefusal::NoCredentials),
            (Some(basic("plugin", &other)), ClientRefusal::Mismatch),
            (Some(basic("other", &secret)), ClientRefusal::Mismatch),
            (Some(basic("plugin", &secret[..secret.len() - 1])), ClientRefusal::Mismatch),
            (Some(basic("plugin", "")), ClientRefusal::Mismatch),
        ] {
            assert_eq!(client.authenticate(header.as_deref()), Err(why), "{header:?}");
        }
    }
}
