//! Errors at the host-facing edge and how they are answered: RFC 9457 `application/problem+json` with
//! the statuses of contract §7. [`HostProblem::from`] is the one place a [`HostError`] becomes an HTTP
//! status; its test pins every mapping.

use poem::{IntoResponse, Response, http::StatusCode};
use poem_openapi::{
    ApiResponse, Object,
    payload::Payload,
    registry::{MetaSchemaRef, Registry},
    types::Type,
};

use crate::domain::ShopId;
use crate::signature::SignatureError;

/// Seconds a client is asked to wait after `429` or `503`.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// Why the host's request was not handled.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The body is over 64 KiB.
    #[error("the body is larger than 64 KiB")]
    BodyTooLarge,
    /// The signature, its headers or the timestamp are not acceptable.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The body is not declared as JSON.
    #[error("the Content-Type must be application/json")]
    NotJson,
    /// The body is not JSON of the envelope's shape.
    #[error("the body is not a valid envelope: {0}")]
    Malformed(String),
    /// The envelope's `type` is not one this endpoint knows.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// Well-formed, but breaks a rule of the contract (a field's format, a mismatch).
    #[error("{0}")]
    Rule(String),
    /// The shop never installed the plugin (the host retries: it may have raced ahead of the install).
    #[error("the shop {0} has not installed the plugin")]
    UnknownShop(ShopId),
    /// Too much work at once; the host should retry.
    #[error("the service is busy")]
    Busy,
    /// A fault of ours. The cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl HostError {
    /// Why a call was refused, as one of a few fixed words (a metric's label): never the detail.
    pub fn reason_class(&self) -> &'static str {
        match self {
            Self::BodyTooLarge => "too_large",
            Self::Signature(_) => "signature",
            Self::NotJson => "not_json",
            Self::Malformed(_) => "malformed",
            Self::UnknownType(_) => "unknown_type",
            Self::Rule(_) => "rule",
            Self::UnknownShop(_) => "unknown_shop",
            Self::Busy => "busy",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<sea_orm::DbErr> for HostError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::Internal(err.to_string())
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Object, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// A URI naming the kind of problem (stable; `code` is its short form).
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short, human-readable summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request and what to do about it.
    pub detail: String,
    /// The stable machine-readable code.
    pub code: String,
}

/// A [`Problem`] sent as `application/problem+json`.
#[derive(Debug, Clone)]
pub struct ProblemJson(pub Problem);

impl Payload for ProblemJson {
    const CONTENT_TYPE: &'static str = "application/problem+json";

    fn schema_ref() -> MetaSchemaRef {
        Problem::schema_ref()
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}

impl IntoResponse for ProblemJson {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.0).unwrap_or_default();
        Response::builder()
            .status(StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .content_type(Self::CONTENT_TYPE)
            .body(body)
    }
}

/// Every problem answer of the host-facing endpoints, as documented in the OpenAPI document.
#[derive(Debug, ApiResponse)]
pub enum HostProblem {
    /// The body is not JSON of the envelope's shape, or its `type` is unknown.
    #[oai(status = 400)]
    BadRequest(ProblemJson),
    /// A signature header is missing or malformed, the timestamp is outside ±300 s, or no signature
    /// matches.
    #[oai(status = 401)]
    Unauthorized(ProblemJson),
    /// The shop never installed the plugin.
    #[oai(status = 404)]
    UnknownShop(ProblemJson),
    /// The body is over 64 KiB.
    #[oai(status = 413)]
    TooLarge(ProblemJson),
    /// The body is not `application/json`.
    #[oai(status = 415)]
    NotJson(ProblemJson),
    /// A well-formed body that breaks a rule of the contract.
    #[oai(status = 422)]
    Unprocessable(ProblemJson),
    /// Busy: retry after the given number of seconds.
    #[oai(status = 503)]
    Unavailable(ProblemJson, #[oai(header = "Retry-After")] u64),
    /// A fault of the plugin.
    #[oai(status = 500)]
    Internal(ProblemJson),
}

fn problem(status: u16, code: &str, title: &str, detail: String) -> ProblemJson {
    ProblemJson(Problem {
        problem_type: format!("/problems/{code}"),
        title: title.to_owned(),
        status,
        detail,
        code: code.to_owned(),
    })
}

impl From<HostError> for HostProblem {
    fn from(error: HostError) -> Self {
        let detail = error.to_string();
        match error {
            HostError::BodyTooLarge => {
                Self::TooLarge(problem(413, "body-too-large", "Body too large", detail))
            }
            HostError::Signature(_) => {
                Self::Unauthorized(problem(401, "invalid-signature", "Signature not accepted", detail))
            }
            HostError::NotJson => Self::NotJson(problem(415, "not-json", "Unsupported media type", detail)),
            HostError::Malformed(_) => {
                Self::BadRequest(problem(400, "malformed-body", "Malformed body", detail))
            }
            HostError::UnknownType(_) => {
                Self::BadRequest(problem(400, "unknown-event-type", "Unknown event type", detail))
            }
            HostError::Rule(_) => {
                Self::Unprocessable(problem(422, "contract-violation", "Contract rule broken", detail))
            }
            HostError::UnknownShop(_) => Self::UnknownShop(problem(
                404,
                "unknown-shop",
                "Unknown shop",
                format!("{detail}; send plugin.installed first"),
            )),
            HostError::Busy => Self::Unavailable(
                problem(503, "busy", "Busy", "too many requests at once; retry shortly".to_owned()),
                RETRY_AFTER_SECONDS,
            ),
            HostError::Internal(cause) => {
                tracing::error!(%cause, "internal error answering the host");
                Self::Internal(problem(
                    500,
                    "internal",
                    "Internal error",
                    "the plugin could not process this message; it is safe to retry".to_owned(),
                ))
            }
        }
    }
}

/// The page behind a problem's `type` URI: what it means and what the integrator should do.
pub fn describe(code: &str) -> Option<&'static str> {
    Some(match code {
        "body-too-large" => {
            "413 body-too-large: the body is over 64 KiB. The host never sends more; check what is being sent."
        }
        "invalid-signature" => {
            "401 invalid-signature: a webhook-id, webhook-timestamp or webhook-signature header is missing or \
             malformed, the timestamp is more than 300 seconds from our clock, or no v1 signature matches a \
             configured secret. Check PORTAL_WEBHOOK_SECRETS against the secret the host shows, and the clocks."
        }
        "not-json" => "415 not-json: send Content-Type: application/json.",
        "malformed-body" => {
            "400 malformed-body: the body is not JSON of the envelope's shape (type, timestamp, shop_id, data)."
        }
        "unknown-event-type" => {
            "400 unknown-event-type: the envelope's type is not one this endpoint handles."
        }
        "contract-violation" => {
            "422 contract-violation: a field breaks a rule of the host contract; the detail names it."
        }
        "unknown-shop" => {
            "404 unknown-shop: the shop never installed the plugin. Send plugin.installed first; retries are fine."
        }
        "busy" => "503 busy: too much at once. Retry after the Retry-After seconds.",
        "internal" => "500 internal: a fault of the plugin, logged on our side. Retrying is safe.",
        _ => return None,
    })
}

impl From<HostError> for poem::Error {
    fn from(error: HostError) -> Self {
        HostProblem::from(error).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(error: HostError) -> (u16, Problem, Option<String>) {
        let response = HostProblem::from(error).into_response();
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(response.content_type(), Some("application/problem+json"));
        let body = futures_util::FutureExt::now_or_never(response.into_body().into_vec()).unwrap().unwrap();
        (status, serde_json::from_slice(&body).unwrap(), retry_after)
    }

    #[test]
    fn every_error_maps_to_the_status_of_the_contract() {
        let shop = ShopId::parse("shop_1").unwrap();
        let cases = [
            (HostError::Malformed("x".into()), 400, "malformed-body"),
            (HostError::UnknownType("x.y".into()), 400, "unknown-event-type"),
            (HostError::Signature(SignatureError::NoMatch), 401, "invalid-signature"),
            (HostError::Signature(SignatureError::TooOld), 401, "invalid-signature"),
            (HostError::UnknownShop(shop), 404, "unknown-shop"),
            (HostError::BodyTooLarge, 413, "body-too-large"),
            (HostError::NotJson, 415, "not-json"),
            (HostError::Rule("x".into()), 422, "contract-violation"),
            (HostError::Busy, 503, "busy"),
            (HostError::Internal("disk on fire".into()), 500, "internal"),
        ];
        for (error, status, code) in cases {
            let (got, problem, retry_after) = answer(error);
            assert_eq!(got, status);
            assert_eq!(problem.status, status);
            assert_eq!(problem.code, code);
            assert_eq!(problem.problem_type, format!("/problems/{code}"));
            assert_eq!(retry_after.is_some(), status == 503, "Retry-After on {status}");
            assert_ne!(status, 410, "410 disables the endpoint for every shop");
        }
    }

    #[test]
    fn an_internal_cause_is_not_sent_to_the_host() {
        let (_, problem, _) = answer(HostError::Internal("password=hunter2 at db:5432".into()));
        assert!(!problem.detail.contains("hunter2"));
    }
}
