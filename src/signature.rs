//! Standard Webhooks v1 signatures (contract §2): `HMAC-SHA256(secret, "{id}.{timestamp}.{body}")`,
//! base64 in `webhook-signature` as one or more space-separated `v1,<sig>` entries.
//!
//! Verification works on the raw body bytes, before anything parses them, and compares in constant
//! time. Every configured secret is tried against every `v1` entry, so a rotation (the host signing
//! with the old and the new secret side by side) needs no coordination.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::domain::WebhookId;

/// How far the timestamp may be from our clock, either way.
pub const TOLERANCE_SECONDS: i64 = 300;

/// The prefix of a secret as the host shows it.
pub const SECRET_PREFIX: &str = "whsec_";

/// Entries beyond this in one header are not looked at: the host sends one or two.
const MAX_SIGNATURE_ENTRIES: usize = 16;

/// A signing secret shared with the host. Its bytes never appear in `Debug` output.
#[derive(Clone)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

/// Why a configured secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSecret {
    /// The `whsec_` prefix is missing.
    #[error("does not start with whsec_")]
    Prefix,
    /// What follows the prefix is not standard base64.
    #[error("is not whsec_ followed by standard base64")]
    Base64,
    /// The host creates secrets of 24 to 64 random bytes.
    #[error("decodes to {0} bytes, but host secrets have 24 to 64")]
    Length(usize),
}

impl WebhookSecret {
    /// Parses `whsec_` + base64 of 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, InvalidSecret> {
        let encoded = text.strip_prefix(SECRET_PREFIX).ok_or(InvalidSecret::Prefix)?;
        let key = STANDARD.decode(encoded).map_err(|_| InvalidSecret::Base64)?;
        if !(24..=64).contains(&key.len()) {
            return Err(InvalidSecret::Length(key.len()));
        }
        Ok(Self { key })
    }

    /// A fresh secret of 32 random bytes, in the form the host and `PORTAL_WEBHOOK_SECRETS` use.
    pub fn generate() -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(crate::random::bytes::<32>()))
    }

    /// Whether `presented` is this secret exactly as the host shows it (`whsec_` and its base64), in
    /// constant time (the host also uses it as its OpenID client secret, §8).
    pub fn matches_text(&self, presented: &str) -> bool {
        bool::from(subtle::ConstantTimeEq::ct_eq(self.text().as_bytes(), presented.as_bytes()))
    }

    /// The secret as the host shows it (`whsec_` and its base64), which is also the OpenID client
    /// secret the host presents (§8): for acting as the host (`demo`'s stand-in portal, tests).
    pub fn text(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// The raw HMAC tag of one message.
    fn tag(&self, id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// The `webhook-signature` entry the host would send for this message (for tests and `simulate`).
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.tag(id, timestamp, body)))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(redacted)")
    }
}

/// The three signature headers as they arrived (`None` when absent or not visible ASCII).
#[derive(Debug, Clone, Copy, Default)]
pub struct SignatureHeaders<'a> {
    /// `webhook-id`.
    pub id: Option<&'a str>,
    /// `webhook-timestamp`.
    pub timestamp: Option<&'a str>,
    /// `webhook-signature`.
    pub signature: Option<&'a str>,
}

/// Why a message was not accepted as coming from the host. Every variant answers `401`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A required header is absent.
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// A header is present but not in the form the contract gives.
    #[error("the {0} header is malformed")]
    MalformedHeader(&'static str),
    /// The timestamp is more than the tolerance behind our clock.
    #[error("webhook-timestamp is more than 300 seconds in the past")]
    TooOld,
    /// The timestamp is more than the tolerance ahead of our clock.
    #[error("webhook-timestamp is more than 300 seconds in the future")]
    TooNew,
    /// No `v1` entry matches any configured secret.
    #[error("no v1 signature matches a configured secret")]
    NoMatch,
}

/// What a valid signature proves about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The message id, the key for de-duplication.
    pub id: WebhookId,
    /// The attempt's Unix timestamp.
    pub timestamp: i64,
}

/// Checks a message against the configured secrets at time `now` (Unix seconds).
pub fn verify(
    secrets: &[WebhookSecret],
    headers: SignatureHeaders<'_>,
    body: &[u8],
    now: i64,
) -> Result<Verified, SignatureError> {
    let id = headers.id.ok_or(SignatureError::MissingHeader("webhook-id"))?;
    let timestamp = headers.timestamp.ok_or(SignatureError::MissingHeader("webhook-timestamp"))?;
    let signature = headers.signature.ok_or(SignatureError::MissingHeader("webhook-signature"))?;

    let id = WebhookId::parse(id).map_err(|_| SignatureError::MalformedHeader("webhook-id"))?;
    let timestamp = parse_timestamp(timestamp)?;
    let candidates = parse_v1_entries(signature)?;

    if timestamp < now - TOLERANCE_SECONDS {
        return Err(SignatureError::TooOld);
    }
    if timestamp > now + TOLERANCE_SECONDS {
        return Err(SignatureError::TooNew);
    }

    // Fold every comparison into one flag so the time taken does not depend on which pair matched.
    let mut matched = subtle::Choice::from(0u8);
    for secret in secrets {
        let expected = secret.tag(id.as_str(), timestamp, body);
        for candidate in &candidates {
            matched |= expected.ct_eq(candidate);
        }
    }
    if bool::from(matched) { Ok(Verified { id, timestamp }) } else { Err(SignatureError::NoMatch) }
}

/// Integer Unix seconds: ASCII digits only (no sign, no spaces, no fraction).
fn parse_timestamp(text: &str) -> Result<i64, SignatureError> {
    let malformed = SignatureError::MalformedHeader("webhook-timestamp");
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed);
    }
    text.parse().map_err(|_| malformed)
}

/// The decoded `v1` signatures of the header; entries of other versions are skipped. A `v1` entry
/// that is not base64 of 32 bytes cannot match anything and is skipped too.
fn parse_v1_entries(header: &str) -> Result<Vec<[u8; 32]>, SignatureError> {
    let malformed = SignatureError::MalformedHeader("webhook-signature");
    let entries: Vec<&str> = header.split(' ').filter(|e| !e.is_empty()).collect();
    if entries.is_empty() || entries.len() > MAX_SIGNATURE_ENTRIES {
        return Err(malformed);
    }
    let mut v1 = Vec::new();
    for entry in entries {
        let (version, value) = entry.split_once(',').ok_or(malformed.clone())?;
        if version != "v1" {
            continue;
        }
        if let Ok(bytes) = STANDARD.decode(value)
            && let Ok(tag) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            v1.push(tag);
        }
    }
    Ok(v1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::hostile;
    use proptest::prelude::*;

    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1614265330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secret() -> WebhookSecret {
        WebhookSecret::parse(VECTOR_SECRET).unwrap()
    }

    fn headers(signature: &str) -> SignatureHeaders<'_> {
        SignatureHeaders { id: Some(VECTOR_ID), timestamp: Some("1614265330"), signature: Some(signature) }
    }

    fn check(signature: &str) -> Result<Verified, SignatureError> {
        verify(&[secret()], headers(signature), VECTOR_BODY, VECTOR_TIMESTAMP)
    }

    #[test]
    fn the_official_test_vector_is_signed_and_verified() {
        assert_eq!(secret().sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY), VECTOR_SIGNATURE);
        let verified = check(VECTOR_SIGNATURE).unwrap();
        assert_eq!(verified.id.as_str(), VECTOR_ID);
        assert_eq!(verified.timestamp, VECTOR_TIMESTAMP);
    }

    #[test]
    fn a_wrong_signature_is_refused() {
        assert_eq!(check("v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU="), Err(SignatureError::NoMatch));
    }

    #[test]
    fn a_truncated_signature_is_refused() {
        assert_eq!(check("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE"), Err(SignatureError::NoMatch));
        assert_eq!(check("v1,g0hM9SsE+OTPJTGt"), Err(SignatureError::NoMatch));
    }

    #[test]
    fn a_changed_body_id_or_timestamp_breaks_the_signature() {
        let body = br#"{"test": 2432232315}"#;
        assert!(verify(&[secret()], headers(VECTOR_SIGNATURE), body, VECTOR_TIMESTAMP).is_err());
        let other_id = SignatureHeaders { id: Some("msg_other"), ..headers(VECTOR_SIGNATURE) };
        assert!(verify(&[secret()], other_id, VECTOR_BODY, VECTOR_TIMESTAMP).is_err());
        let other_ts = SignatureHeaders { timestamp: Some("1614265331"), ..headers(VECTOR_SIGNATURE) };
        assert_eq!(
            verify(&[secret()], other_ts, VECTOR_BODY, VECTOR_TIMESTAMP),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn timestamps_outside_the_window_are_refused_both_ways() {
        let sign_at = |ts: i64| secret().sign(VECTOR_ID, ts, VECTOR_BODY);
        for (offset, expected) in [
            (-(TOLERANCE_SECONDS + 1), Err(SignatureError::TooOld)),
            (TOLERANCE_SECONDS + 1, Err(SignatureError::TooNew)),
        ] {
            let ts = VECTOR_TIMESTAMP + offset;
            let ts_text = ts.to_string();
            let signature = sign_at(ts);
            let hdrs = SignatureHeaders { timestamp: Some(&ts_text), ..headers(&signature) };
            let result = verify(&[secret()], hdrs, VECTOR_BODY, VECTOR_TIMESTAMP).map(|_| ());
            assert_eq!(result, expected);
        }
        for offset in [-TOLERANCE_SECONDS, TOLERANCE_SECONDS] {
            let ts = VECTOR_TIMESTAMP + offset;
            let ts_text = ts.to_string();
            let signature = sign_at(ts);
            let hdrs = SignatureHeaders { timestamp: Some(&ts_text), ..headers(&signature) };
            assert!(verify(&[secret()], hdrs, VECTOR_BODY, VECTOR_TIMESTAMP).is_ok());
        }
    }

    #[test]
    fn each_missing_header_is_named() {
        let full = headers(VECTOR_SIGNATURE);
        let cases = [
            (SignatureHeaders { id: None, ..full }, "webhook-id"),
            (SignatureHeaders { timestamp: None, ..full }, "webhook-timestamp"),
            (SignatureHeaders { signature: None, ..full }, "webhook-signature"),
        ];
        for (hdrs, name) in cases {
            assert_eq!(
                verify(&[secret()], hdrs, VECTOR_BODY, VECTOR_TIMESTAMP),
                Err(SignatureError::MissingHeader(name))
            );
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        for ts in ["", "+1614265330", "1614265330.5", " 1614265330", "-5", "1e9", "9999999999999"] {
            let hdrs = SignatureHeaders { timestamp: Some(ts), ..headers(VECTOR_SIGNATURE) };
            assert_eq!(
                verify(&[secret()], hdrs, VECTOR_BODY, VECTOR_TIMESTAMP),
                Err(SignatureError::MalformedHeader("webhook-timestamp")),
                "timestamp {ts:?}"
            );
        }
        for id in ["", "msg with space", "msg.dot", &"a".repeat(65)] {
            let hdrs = SignatureHeaders { id: Some(id), ..headers(VECTOR_SIGNATURE) };
            assert_eq!(
                verify(&[secret()], hdrs, VECTOR_BODY, VECTOR_TIMESTAMP),
                Err(SignatureError::MalformedHeader("webhook-id"))
            );
        }
        for sig in ["", "   ", "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="] {
            assert_eq!(check(sig), Err(SignatureError::MalformedHeader("webhook-signature")), "{sig:?}");
        }
    }

    #[test]
    fn other_versions_are_skipped_and_any_v1_entry_may_match() {
        let valid_b64 = VECTOR_SIGNATURE.trim_start_matches("v1,");
        // The right bytes under another version name do not count.
        assert_eq!(check(&format!("v1a,{valid_b64}")), Err(SignatureError::NoMatch));
        assert_eq!(check(&format!("v2,{valid_b64}")), Err(SignatureError::NoMatch));
        let several = format!(
            "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= v1a,abc v2,{valid_b64} {VECTOR_SIGNATURE} v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q="
        );
        assert!(check(&several).is_ok());
        let none_right =
            "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q=";
        assert_eq!(check(none_right), Err(SignatureError::NoMatch));
    }

    #[test]
    fn any_configured_secret_may_match_during_a_rotation() {
        let new = WebhookSecret::parse(&WebhookSecret::generate()).unwrap();
        let secrets = [new.clone(), secret()];
        assert!(verify(&secrets, headers(VECTOR_SIGNATURE), VECTOR_BODY, VECTOR_TIMESTAMP).is_ok());
        let by_new = new.sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY);
        let both = format!("{by_new} {VECTOR_SIGNATURE}");
        assert!(verify(std::slice::from_ref(&new), headers(&both), VECTOR_BODY, VECTOR_TIMESTAMP).is_ok());
        assert!(verify(&[secret()], headers(&both), VECTOR_BODY, VECTOR_TIMESTAMP).is_ok());
        assert_eq!(
            verify(&[new], headers(VECTOR_SIGNATURE), VECTOR_BODY, VECTOR_TIMESTAMP),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn secrets_are_checked_and_never_shown() {
        assert_eq!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(),
            InvalidSecret::Prefix
        );
        assert_eq!(WebhookSecret::parse("whsec_not base64!").unwrap_err(), InvalidSecret::Base64);
        assert_eq!(WebhookSecret::parse("whsec_c2hvcnQ=").unwrap_err(), InvalidSecret::Length(5));
        let generated = WebhookSecret::generate();
        assert!(generated.starts_with("whsec_"));
        let parsed = WebhookSecret::parse(&generated).unwrap();
        assert_eq!(parsed.key.len(), 32);
        assert_eq!(format!("{parsed:?}"), "WebhookSecret(redacted)");
        assert_eq!(parsed.text(), generated, "the host's form survives parsing, for the client secret");
        assert_ne!(WebhookSecret::generate(), generated);
    }

    proptest! {
        #[test]
        fn whatever_is_signed_verifies_and_any_flipped_bit_does_not(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            flip in any::<usize>(),
        ) {
            let s = secret();
            let signature = s.sign(VECTOR_ID, VECTOR_TIMESTAMP, &body);
            prop_assert!(verify(std::slice::from_ref(&s), headers(&signature), &body, VECTOR_TIMESTAMP).is_ok());
            if !body.is_empty() {
                let mut changed = body.clone();
                let i = flip % changed.len();
                changed[i] ^= 1 << (flip % 8);
                prop_assert!(verify(&[s], headers(&signature), &changed, VECTOR_TIMESTAMP).is_err());
            }
        }
    }

    /// A `webhook-timestamp` as senders get it wrong: digits of any length, signs, spaces, fractions.
    fn near_timestamp() -> impl Strategy<Value = String> {
        prop_oneof!["[0-9]{0,25}", "[+-]?[0-9]{1,12}(\\.[0-9]{1,3})?", " ?[0-9]{10} ?", hostile::text(),]
    }

    /// One `webhook-signature` entry with a comma: a version (often `v1`) and base64-ish text.
    fn signature_entry() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| format!("v1,{}", STANDARD.encode(b))),
            "v[0-9a-z]{0,3},[A-Za-z0-9+/=,]{0,60}",
        ]
    }

    /// A `webhook-signature` header: entries with and without commas, runs of spaces, sometimes far
    /// more entries than the host ever sends, or no structure at all.
    fn near_signature() -> impl Strategy<Value = String> {
        let entry = prop_oneof![signature_entry(), "[^ ]{0,20}"];
        prop_oneof![
            (prop::collection::vec(entry, 0..40), " {1,3}").prop_map(|(entries, gap)| entries.join(&gap)),
            hostile::text(),
        ]
    }

    proptest! {
        #[test]
        fn any_headers_and_body_are_answered_without_panicking(
            id in proptest::option::of(prop_oneof!["[A-Za-z0-9_-]{0,70}", hostile::text()]),
            timestamp in proptest::option::of(near_timestamp()),
            signature in proptest::option::of(near_signature()),
            body in hostile::bytes(),
            now in 0i64..4_000_000_000,
        ) {
            let headers = SignatureHeaders {
                id: id.as_deref(),
                timestamp: timestamp.as_deref(),
                signature: signature.as_deref(),
            };
            let result = verify(&[secret()], headers, &body, now);
            // Nothing here was signed with the secret, so nothing may pass.
            prop_assert!(result.is_err(), "{result:?}");
        }

        #[test]
        fn a_valid_signature_verifies_among_any_other_entries(
            others in prop::collection::vec(signature_entry(), 0..15),
            position in any::<prop::sample::Index>(),
            gap in " {1,3}",
            body in hostile::bytes(),
        ) {
            let s = secret();
            let mut entries = others;
            entries.insert(position.index(entries.len() + 1), s.sign(VECTOR_ID, VECTOR_TIMESTAMP, &body));
            let header = entries.join(&gap);
            prop_assert!(verify(&[s], headers(&header), &body, VECTOR_TIMESTAMP).is_ok(), "{header}");
        }

        #[test]
        fn any_text_is_a_secret_or_an_error(text in prop_oneof![
            hostile::text(),
            hostile::text().prop_map(|t| format!("{SECRET_PREFIX}{t}")),
        ]) {
            if let Ok(secret) = WebhookSecret::parse(&text) {
                prop_assert!((24..=64).contains(&secret.key.len()));
            }
        }

        #[test]
        fn a_secret_of_any_length_is_accepted_exactly_from_24_to_64_bytes(
            key in prop::collection::vec(any::<u8>(), 0..100),
        ) {
            let parsed = WebhookSecret::parse(&format!("{SECRET_PREFIX}{}", STANDARD.encode(&key)));
            match parsed {
                Ok(secret) => prop_assert_eq!(secret.key, key),
                Err(e) => prop_assert_eq!(e, InvalidSecret::Length(key.len())),
            }
        }

        #[test]
        fn timestamps_round_trip_and_anything_else_is_malformed(ts in 0i64..1_000_000_000_000, text in near_timestamp()) {
            prop_assert_eq!(parse_timestamp(&ts.to_string()), Ok(ts));
            if let Ok(parsed) = parse_timestamp(&text) {
                let shown = parsed.to_string();
                prop_assert_eq!(shown.trim_start_matches('0'), text.trim_start_matches('0'));
            }
        }
    }
}
