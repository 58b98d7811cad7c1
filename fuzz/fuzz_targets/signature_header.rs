//! The Standard Webhooks check on whatever a caller sends: the input is split at its first two
//! newlines into `webhook-id`, `webhook-timestamp` and `webhook-signature`; the rest is the body.
//! A header that is not visible ASCII reaches `verify` as absent, as it does in the service.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portal_invites::signature::{SignatureHeaders, WebhookSecret, verify};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_614_265_330;

fn header(bytes: &[u8]) -> Option<&str> {
    bytes.iter().all(|b| (0x20..0x7f).contains(b)).then(|| std::str::from_utf8(bytes).ok()).flatten()
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == b'\n');
    let id = parts.next().and_then(header);
    let timestamp = parts.next().and_then(header);
    let signature = parts.next().and_then(header);
    let body = parts.next().unwrap_or_default();

    let secret = WebhookSecret::parse(SECRET).unwrap();
    let headers = SignatureHeaders { id, timestamp, signature };
    let result = verify(std::slice::from_ref(&secret), headers, body, NOW);
    // Only the holder of the secret can produce a passing header; libFuzzer cannot forge HMAC.
    if let Ok(verified) = result {
        let signature = signature.unwrap();
        let expected = secret.sign(verified.id.as_str(), verified.timestamp, body);
        assert!(signature.split(' ').any(|entry| entry == expected), "{signature:?} passed");
    }

    // The configured secret is the other value that is parsed from text.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = WebhookSecret::parse(text);
    }
});
