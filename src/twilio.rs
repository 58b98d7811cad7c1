//! What the SMS gateway (a Twilio-compatible Messages API) says about a message after we sent it
//! (contract §10), as pure code: the signature on its status reports, the statuses and how far each
//! one goes, and the checks on the values it hands us (a message's `sid`, an error code, the
//! answers of its API). Everything here is hostile input until checked; nothing here panics on it.

use base64::{Engine, engine::general_purpose::STANDARD};
use ring::hmac;
use subtle::ConstantTimeEq;

/// The header a status report's signature comes in.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// The longest `sid` we keep (the column's width; Twilio's are 34 characters).
pub const MAX_SID: usize = 64;
/// The longest status or error code we keep (the columns' width).
pub const MAX_FIELD: usize = 16;

/// The raw signature of a report: HMAC-SHA1, keyed with the account's auth token, over the URL as the
/// gateway called it followed by every POST parameter sorted by name (then value), each as name then
/// value with no separators.
pub fn signature(auth_token: &[u8], url: &str, params: &[(String, String)]) -> [u8; 20] {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token);
    let mut context = hmac::Context::with_key(&key);
    context.update(url.as_bytes());
    for (name, value) in sorted {
        context.update(name.as_bytes());
        context.update(value.as_bytes());
    }
    let mut tag = [0u8; 20];
    tag.copy_from_slice(context.sign().as_ref());
    tag
}

/// The `X-Twilio-Signature` value the gateway sends for this report (base64).
pub fn sign(auth_token: &[u8], url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(signature(auth_token, url, params))
}

/// Whether `header` is the report's signature. The header is decoded and the raw bytes compared in
/// constant time; a missing, malformed or wrong-length header is simply not the signature.
pub fn verify(auth_token: &[u8], url: &str, params: &[(String, String)], header: Option<&str>) -> bool {
    let Some(presented) = header.and_then(|h| STANDARD.decode(h.trim()).ok()) else {
        return false;
    };
    let expected = signature(auth_token, url, params);
    bool::from(expected.as_slice().ct_eq(presented.as_slice()))
}

/// A message's status as the gateway reports it, the ones that mean something to us. Others
/// (`read`, `canceled`, whatever a compatible gateway invents) are kept as reported and change
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    Queued,
    Accepted,
    Scheduled,
    Sending,
    Sent,
    Delivered,
    Undelivered,
    Failed,
}

const ALL: [MessageStatus; 8] = [
    MessageStatus::Queued,
    MessageStatus::Accepted,
    MessageStatus::Scheduled,
    MessageStatus::Sending,
    MessageStatus::Sent,
    MessageStatus::Delivered,
    MessageStatus::Undelivered,
    MessageStatus::Failed,
];

impl MessageStatus {
    /// As reported and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Accepted => "accepted",
            Self::Scheduled => "scheduled",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
        }
    }

    /// The status named exactly so (as [`status_text`] leaves it).
    pub fn parse(value: &str) -> Option<Self> {
        ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// How far along a message is: reports arrive out of order, and only a later stage may replace
    /// an earlier one.
    fn stage(self) -> u8 {
        match self {
            Self::Queued | Self::Accepted | Self::Scheduled => 1,
            Self::Sending => 2,
            Self::Sent => 3,
            Self::Delivered | Self::Undelivered | Self::Failed => 4,
        }
    }

    /// `delivered`, `undelivered` or `failed`: the last word on the message.
    pub fn is_final(self) -> bool {
        self.stage() == 4
    }

    /// `undelivered` or `failed`: the customer did not get the message.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Undelivered | Self::Failed)
    }

    /// The stored statuses this one may replace: every earlier stage. A final status replaces no
    /// other final one, so the first final report wins and never reverts.
    pub fn replaces(self) -> Vec<&'static str> {
        ALL.into_iter().filter(|s| s.stage() < self.stage()).map(Self::as_str).collect()
    }
}

/// A reported status, as we keep it: lower case, at most [`MAX_FIELD`] of `a-z 0-9 _ -`. `None`
/// for a value with nothing of that left.
pub fn status_text(value: &str) -> Option<String> {
    let kept: String = value
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(MAX_FIELD)
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// A message `sid` as the gateway gives it: 1 to [`MAX_SID`] characters of `A-Z a-z 0-9 _ -`
/// (Twilio's are `SM` and 32 hex digits; a compatible gateway may differ). Anything else is not one.
pub fn message_sid(value: &str) -> Option<&str> {
    let ok = (1..=MAX_SID).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(value)
}

/// An `ErrorCode`: 1 to [`MAX_FIELD`] digits. Anything else (empty, words) counts as no code.
pub fn error_code(value: &str) -> Option<&str> {
    let value = value.trim();
    let ok = (1..=MAX_FIELD).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(value)
}

/// What a report or a look-up says about a message, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// The gateway's id of the message.
    pub sid: String,
    /// The status as reported (see [`status_text`]).
    pub status: String,
    /// The same, when it is one we act on.
    pub known: Option<MessageStatus>,
    /// `ErrorCode`, when there is one.
    pub error_code: Option<String>,
}

impl StatusReport {
    fn new(sid: &str, status: &str, error_code: Option<&str>) -> Option<Self> {
        let sid = message_sid(sid)?.to_owned();
        let status = status_text(status)?;
        let known = MessageStatus::parse(&status);
        Some(Self {
            sid,
            status,
            known,
            error_code: error_code.and_then(self::error_code).map(str::to_owned),
        })
    }
}

/// Why a signed report cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnreadableReport {
    /// `MessageSid` is missing or not a sid.
    #[error("MessageSid is missing or is not a message sid")]
    Sid,
    /// `MessageStatus` is missing or empty.
    #[error("MessageStatus is missing or empty")]
    Status,
}

/// Reads a status report's form parameters (`MessageSid`, `MessageStatus`, `ErrorCode`; the rest,
/// the phone numbers among them, are not kept). A repeated field counts by its first value.
pub fn read_report(params: &[(String, String)]) -> Result<StatusReport, UnreadableReport> {
    let field = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let sid = field("MessageSid").and_then(message_sid).ok_or(UnreadableReport::Sid)?;
    let status = field("MessageStatus").ok_or(UnreadableReport::Status)?;
    StatusReport::new(sid, status, field("ErrorCode")).ok_or(UnreadableReport::Status)
}

/// The `sid` in the gateway's answer to a message it accepted (`{"sid": "SM…", …}`), if the answer
/// is the API's and the sid is one.
pub fn sid_of_answer(body: &[u8]) -> Option<String> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    message_sid(answer.get("sid")?.as_str()?).map(str::to_owned)
}

/// What the API's `GET …/Messages/{sid}.json` says of the message `sid`: its `status` and
/// `error_code` (a number or a string, or null). `None` for an answer that is not the API's.
pub fn read_lookup(sid: &str, body: &[u8]) -> Option<StatusReport> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let status = answer.get("status")?.as_str()?;
    let code = match answer.get("error_code") {
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    StatusReport::new(sid, status, code.as_deref())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::hostile;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    /// Twilio's published example (contract §10), parameters given out of order.
    fn example() -> (&'static str, Vec<(String, String)>) {
        (
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            params(&[
                ("To", "+18005551212"),
                ("CallSid", "CA1234567890ABCDE"),
                ("Digits", "1234"),
                ("From", "+12349013030"),
                ("Caller", "+12349013030"),
            ]),
        )
    }

    #[test]
    fn the_contracts_published_example_signs_as_published() {
        let (url, params) = example();
        assert_eq!(sign(b"12345", url, &params), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(verify(b"12345", url, &params, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")));
    }

    #[test]
    fn a_signature_fails_for_any_other_token_url_parameter_or_header() {
        let (url, params) = example();
        let good = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
        assert!(!verify(b"12346", url, &params, Some(good)), "another token");
        assert!(!verify(b"12345", "https://mycompany.com/myapp.php?foo=1&bar=3", &params, Some(good)));
        let mut changed = params.clone();
        changed[2].1 = "1235".into();
        assert!(!verify(b"12345", url, &changed, Some(good)), "a changed parameter");
        let mut added = params.clone();
        added.push(("ErrorCode".into(), String::new()));
        assert!(!verify(b"12345", url, &added, Some(good)), "an added parameter");
        for bad in [None, Some(""), Some("not base64!"), Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ"), Some("AAAA")] {
            assert!(!verify(b"12345", url, &params, bad), "{bad:?}");
        }
    }

    #[test]
    fn statuses_advance_only_to_a_later_stage_and_a_final_one_is_never_replaced() {
        use MessageStatus::*;
        assert!(Sent.replaces().contains(&"queued") && Sent.replaces().contains(&"sending"));
        assert!(!Sent.replaces().contains(&"sent"), "a repeat replaces nothing");
        assert!(Delivered.replaces().contains(&"sent"));
        for last in [Delivered, Undelivered, Failed] {
            assert!(last.is_final());
            for other in [Delivered, Undelivered, Failed, Sent] {
                assert!(!other.replaces().contains(&last.as_str()), "{other:?} over {last:?}");
            }
        }
        assert!(Undelivered.is_failure() && Failed.is_failure() && !Delivered.is_failure());
        for status in ALL {
            assert_eq!(MessageStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn a_report_keeps_its_sid_status_and_code_and_drops_the_rest() {
        let report = read_report(&params(&[
            ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
            ("To", "+61412345678"),
        ]))
        .unwrap();
        assert_eq!(report.sid, "SM0123456789abcdef0123456789abcdef");
        assert_eq!((report.status.as_str(), report.known), ("undelivered", Some(MessageStatus::Undelivered)));
        assert_eq!(report.error_code.as_deref(), Some("30003"));

        let unknown =
            read_report(&params(&[("MessageSid", "SM1"), ("MessageStatus", "Partially_Delivered")]));
        assert_eq!(unknown.map(|r| (r.status, r.known)), Ok(("partially_delive".into(), None)));
        let wordy =
            read_report(&params(&[("MessageSid", "SM1"), ("MessageStatus", "sent"), ("ErrorCode", "n/a")]));
        assert_eq!(wordy.unwrap().error_code, None);
        assert_eq!(read_report(&params(&[("MessageStatus", "sent")])), Err(UnreadableReport::Sid));
        assert_eq!(
            read_report(&params(&[("MessageSid", "SM 1"), ("MessageStatus", "sent")])),
            Err(UnreadableReport::Sid)
        );
        assert_eq!(
            read_report(&params(&[("MessageSid", "SM1"), ("MessageStatus", " ")])),
            Err(UnreadableReport::Status)
        );
    }

    #[test]
    fn the_apis_answers_give_a_sid_and_a_status() {
        assert_eq!(sid_of_answer(br#"{"sid": "SMabc", "status": "queued"}"#).as_deref(), Some("SMabc"));
        assert_eq!(sid_of_answer(br#"{"sid": "SM abc"}"#), None);
        assert_eq!(sid_of_answer(&[b'{'; 3]), None);
        let long = format!(r#"{{"sid": "{}"}}"#, "S".repeat(MAX_SID + 1));
        assert_eq!(sid_of_answer(long.as_bytes()), None);
        let looked = read_lookup("SMabc", br#"{"status": "undelivered", "error_code": 30003}"#).unwrap();
        assert_eq!(
            (looked.known, looked.error_code.as_deref()),
            (Some(MessageStatus::Undelivered), Some("30003"))
        );
        let delivered = read_lookup("SMabc", br#"{"status": "delivered", "error_code": null}"#).unwrap();
        assert_eq!((delivered.known, delivered.error_code), (Some(MessageStatus::Delivered), None));
        assert_eq!(read_lookup("SMabc", b"<html>"), None);
        assert_eq!(read_lookup("SMabc", br#"{"status": 3}"#), None);
    }

    proptest! {
        #[test]
        fn any_report_signature_or_answer_is_judged_without_panic(
            token in hostile::bytes(),
            url in hostile::text(),
            pairs in proptest::collection::vec((hostile::text(), hostile::text()), 0..6),
            header in proptest::option::of(hostile::text()),
            body in hostile::bytes(),
        ) {
            let expected = sign(&token, &url, &pairs);
            prop_assert!(verify(&token, &url, &pairs, Some(&expected)));
            let _ = verify(&token, &url, &pairs, header.as_deref());
            if let Ok(report) = read_report(&pairs) {
                prop_assert!(report.sid.len() <= MAX_SID && report.status.len() <= MAX_FIELD);
                prop_assert!(report.error_code.is_none_or(|c| c.len() <= MAX_FIELD));
            }
            if let Some(sid) = sid_of_answer(&body) {
                prop_assert!(message_sid(&sid).is_some());
            }
            let _ = read_lookup("SMabc", &body);
        }

        #[test]
        fn any_json_answer_is_read_without_panic(answer in hostile::json()) {
            let body = serde_json::to_vec(&answer).unwrap();
            let _ = sid_of_answer(&body);
            if let Some(report) = read_lookup("SMabc", &body) {
                prop_assert!(report.status.len() <= MAX_FIELD);
            }
        }
    }
}
