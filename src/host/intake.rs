//! The front door for every host call: size limit, signature, content type, in that order, before a
//! single byte of the body is parsed.
//!
//! [`SignedMessage`] is a poem-openapi extractor, so an operation that takes one only ever runs for
//! a message the host really sent, and the OpenAPI document still shows the typed body schema `T`.

use std::{marker::PhantomData, sync::Arc};

use bytes::Bytes;
use poem::{Request, RequestBody, http::header};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    registry::{MetaMediaType, MetaRequest, Registry},
    types::Type,
};

use super::problem::HostError;
use crate::{
    clock::Clock,
    signature::{self, SignatureError, SignatureHeaders, Verified, WebhookSecret},
};

/// The largest body the host sends (contract §2).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the extractor needs, attached to the routes as request data.
#[derive(Clone)]
pub struct IntakeKeys {
    /// Every configured secret (two during a rotation).
    pub secrets: Arc<[WebhookSecret]>,
    /// For the timestamp window.
    pub clock: Clock,
}

/// A message whose signature was verified over its raw bytes. `T` is the body's documented schema.
pub struct SignedMessage<T> {
    /// Who signed what, when.
    pub verified: Verified,
    /// The raw body, exactly as signed.
    pub body: Bytes,
    _schema: PhantomData<fn() -> T>,
}

impl<T> SignedMessage<T> {
    /// Checks a request as the contract requires; see the module documentation for the order.
    pub async fn check(request: &Request, body: &mut RequestBody) -> Result<Self, HostError> {
        let keys = request
            .data::<IntakeKeys>()
            .ok_or_else(|| HostError::Internal("the intake keys are not attached to this route".into()))?;

        // A declared length over the limit is refused before reading anything.
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
            return Err(HostError::BodyTooLarge);
        }
        // The limit also holds for what is actually read (a chunked body declares no length).
        let raw = body
            .take()
            .map_err(|e| HostError::Internal(e.to_string()))?
            .into_bytes_limit(MAX_BODY_BYTES)
            .await
            .map_err(|e| match e {
                poem::error::ReadBodyError::PayloadTooLarge => HostError::BodyTooLarge,
                other => HostError::Malformed(format!("the body could not be read: {other}")),
            })?;

        let text_header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        let headers = SignatureHeaders {
            id: text_header("webhook-id"),
            timestamp: text_header("webhook-timestamp"),
            signature: text_header("webhook-signature"),
        };
        let verified = signature::verify(&keys.secrets, headers, &raw, keys.clock.now().timestamp())
            .inspect_err(|error| log_refused_signature(request, error))?;

        if !is_json(request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())) {
            return Err(HostError::NotJson);
        }
        Ok(Self { verified, body: raw, _schema: PhantomData })
    }
}

/// A refused signature is a security event: a caller without the secret, a replay outside the
/// window, or a secret configured wrong. One line says which check failed and where the call came
/// from, and nothing the caller sent: not the signature, not the body, not even the header values.
fn log_refused_signature(request: &Request, error: &SignatureError) {
    let (reason, header) = match error {
        SignatureError::MissingHeader(name) => ("missing_header", *name),
        SignatureError::MalformedHeader(name) => ("malformed", *name),
        SignatureError::TooOld | SignatureError::TooNew => ("stale_timestamp", "webhook-timestamp"),
        SignatureError::NoMatch => ("no_matching_signature", "webhook-signature"),
    };
    let peer = request.remote_addr().as_socket_addr().map(|a| a.ip().to_string());
    tracing::warn!(
        target: "portal_invites::security",
        event = "bad_signature",
        reason,
        header,
        path = request.uri().path(),
        peer = peer.as_deref().unwrap_or("unknown"),
        "a host call was refused: its signature does not check out"
    );
}

/// `application/json`, with or without parameters such as `charset=utf-8`.
fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

impl<'a, T: Type> ApiExtractor<'a> for SignedMessage<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some(
                "Signed with Standard Webhooks v1: headers webhook-id, webhook-timestamp and \
                 webhook-signature; at most 64 KiB.",
            ),
            content: vec![MetaMediaType { content_type: "application/json", schema: T::schema_ref() }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Self::check(request, body)
            .await
            .inspect_err(|error| {
                // Refused before its type could be trusted; counted with the webhooks when it was one.
                if request.original_uri().path() == "/webhooks" {
                    super::webhooks::count_webhook("unverified", "rejected", error.reason_class());
                }
            })
            .map_err(poem::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;
    use crate::domain::hostile;
    use proptest::prelude::*;

    #[test]
    fn json_content_types_are_recognised() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("application/json; charset=utf-8")));
        assert!(is_json(Some("Application/JSON")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(Some("application/jsonx")));
        assert!(!is_json(None));
    }

    proptest! {
        #[test]
        fn any_content_type_is_judged_by_its_essence_alone(
            essence in prop_oneof![Just("application/json".to_owned()), Just("APPLICATION/Json".to_owned()), hostile::text()],
            parameters in proptest::option::of(hostile::text()),
            padding in "[ \t]{0,3}",
        ) {
            let header = match &parameters {
                Some(p) => format!("{padding}{essence}{padding};{p}"),
                None => format!("{padding}{essence}{padding}"),
            };
            let expected = essence.trim().eq_ignore_ascii_case("application/json") && !essence.contains(';');
            prop_assert_eq!(is_json(Some(&header)), expected, "{:?}", header);
        }
    }
}
