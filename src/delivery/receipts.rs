//! `POST /sms/status`: the SMS gateway's status reports on the messages we sent (contract §10).
//!
//! Checked in this order, before anything is stored: a gateway must be configured (without its auth
//! token no report can be genuine); the body is capped and must be a form; `X-Twilio-Signature`
//! must match the URL the gateway called (rebuilt from `PORTAL_PUBLIC_URL` and the request's path
//! and query) and the parameters. A verified report is then kept and applied in one short
//! transaction (`invitations::state::record_sms_report`). One about a message we do not know is
//! acknowledged and ignored, so the gateway does not retry it. Every refusal is RFC 9457 problem
//! JSON, mapped in one place ([`ReportRefused::answer`]), and never names the expected signature.

use std::sync::Arc;

use poem::{
    Body, Request, Response, handler,
    http::{StatusCode, header},
    web::Data,
};

use super::Delivery;
use crate::{
    invitations::state::{self, Reported},
    links,
    twilio::{self, UnreadableReport},
};

/// The largest report read: the gateway's are well under 2 KiB.
pub const MAX_REPORT_BYTES: usize = 16 * 1024;

/// Why a status report was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ReportRefused {
    /// SMS are written to files here: there is no gateway whose reports could be checked.
    #[error(
        "no SMS gateway is configured here (PORTAL_TWILIO_ACCOUNT_SID, PORTAL_TWILIO_AUTH_TOKEN and \
         PORTAL_TWILIO_FROM are unset: SMS are written to files), so no status report is accepted"
    )]
    NoGateway,
    /// The body is over [`MAX_REPORT_BYTES`].
    #[error("the body is larger than 16 KiB")]
    TooLarge,
    /// Not a form.
    #[error("the Content-Type must be application/x-www-form-urlencoded")]
    NotForm,
    /// `X-Twilio-Signature` is missing or does not match.
    #[error(
        "the X-Twilio-Signature header is missing or does not match this URL and these parameters \
         under the configured auth token (PORTAL_TWILIO_AUTH_TOKEN; the URL is checked as \
         PORTAL_PUBLIC_URL followed by the path and query the request arrived with)"
    )]
    Signature,
    /// Signed, but without a message sid or a status.
    #[error("the report cannot be read: {0}")]
    Unreadable(#[from] UnreadableReport),
    /// A fault of ours. The cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ReportRefused {
    /// `(status, code, title)` of each refusal: the one place they are decided.
    fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::NoGateway => (StatusCode::NOT_FOUND, "sms-gateway-not-configured", "No SMS gateway"),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "report-too-large", "Report too large"),
            Self::NotForm => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "report-not-a-form", "Not a form"),
            Self::Signature => (StatusCode::FORBIDDEN, "invalid-gateway-signature", "Signature not accepted"),
            Self::Unreadable(_) => (StatusCode::BAD_REQUEST, "malformed-report", "Malformed report"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    /// The answer to the gateway: RFC 9457 problem JSON.
    pub fn answer(self) -> Response {
        let (status, code, title) = self.kind();
        let detail = match &self {
            Self::Internal(cause) => {
                tracing::error!(%cause, "internal error answering an SMS status report");
                "the plugin could not process this report; it is safe to retry".to_owned()
            }
            other => other.to_string(),
        };
        let problem = serde_json::json!({
            "type": format!("/problems/{code}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
            "code": code,
        });
        Response::builder()
            .status(status)
            .content_type("application/problem+json")
            .body(serde_json::to_vec(&problem).unwrap_or_default())
    }
}

/// The page behind a report problem's `type` URI.
pub fn describe(code: &str) -> Option<&'static str> {
    Some(match code {
        "sms-gateway-not-configured" => {
            "404 sms-gateway-not-configured: this instance writes SMS to files, so it sends no SMS and accepts \
             no status reports. Set PORTAL_TWILIO_ACCOUNT_SID, PORTAL_TWILIO_AUTH_TOKEN and PORTAL_TWILIO_FROM."
        }
        "report-too-large" => "413 report-too-large: a status report is at most 16 KiB.",
        "report-not-a-form" => "415 report-not-a-form: send Content-Type: application/x-www-form-urlencoded.",
        "invalid-gateway-signature" => {
            "403 invalid-gateway-signature: X-Twilio-Signature is missing or does not match. It is checked with \
             PORTAL_TWILIO_AUTH_TOKEN over PORTAL_PUBLIC_URL followed by the path and query the request \
             arrived with, and the form parameters sorted by name; check both settings. Nothing was changed."
        }
        "malformed-report" => "400 malformed-report: a signed report without MessageSid or MessageStatus.",
        _ => return None,
    })
}

/// `POST /sms/status`.
#[handler]
pub async fn receive_status_report(
    request: &Request,
    body: Body,
    delivery: Data<&Arc<Delivery>>,
) -> Response {
    match receive(&delivery, request, body).await {
        Ok(()) => Response::builder().status(StatusCode::NO_CONTENT).finish(),
        Err(refused) => refused.answer(),
    }
}

async fn receive(delivery: &Delivery, request: &Request, body: Body) -> Result<(), ReportRefused> {
    let token = delivery.sms.auth_token().ok_or(ReportRefused::NoGateway)?;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_REPORT_BYTES as u64) {
        return Err(ReportRefused::TooLarge);
    }
    let raw = body.into_bytes_limit(MAX_REPORT_BYTES).await.map_err(|e| match e {
        poem::error::ReadBodyError::PayloadTooLarge => ReportRefused::TooLarge,
        other => ReportRefused::Internal(format!("reading a status report: {other}")),
    })?;
    if !is_form(request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())) {
        return Err(ReportRefused::NotForm);
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&raw).into_owned().collect();
    let uri = request.uri();
    let called = links::as_called(&delivery.public_url, uri.path(), uri.query());
    let signature = request.headers().get(twilio::SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if !twilio::verify(token.expose().as_bytes(), &called, &params, signature) {
        log_refused_signature(request, signature.is_some());
        return Err(ReportRefused::Signature);
    }
    let report = twilio::read_report(&params)?;
    let named = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(name, _)| name == "message")
            .map(|(_, v)| v.into_owned())
    });
    let (sid, status) = (report.sid.clone(), report.status.clone());
    let applied = state::apply_sms_report(&delivery.db, report, named, delivery.clock.now())
        .await
        .map_err(|e| ReportRefused::Internal(e.to_string()))?;
    match applied {
        Some(Reported { message_id, advanced }) => {
            tracing::info!(%message_id, %status, outcome = ?advanced, "SMS status report")
        }
        None => tracing::info!(%sid, "a status report about a message we do not know, ignored"),
    }
    Ok(())
}

/// One line for a refused report, and nothing the caller sent (not the signature, not the numbers).
fn log_refused_signature(request: &Request, present: bool) {
    let peer = request.remote_addr().as_socket_addr().map(|a| a.ip().to_string());
    tracing::warn!(
        target: "portal_invites::security",
        event = "bad_gateway_signature",
        reason = if present { "no_match" } else { "missing_header" },
        peer = peer.as_deref().unwrap_or("unknown"),
        "an SMS status report was refused: its signature does not check out"
    );
}

/// `application/x-www-form-urlencoded`, with or without parameters such as `charset=utf-8`.
fn is_form(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_status_a_problem_page_and_no_secret() {
        let cases = [
            (ReportRefused::NoGateway, 404),
            (ReportRefused::TooLarge, 413),
            (ReportRefused::NotForm, 415),
            (ReportRefused::Signature, 403),
            (ReportRefused::Unreadable(UnreadableReport::Sid), 400),
            (ReportRefused::Internal("token=hunter2".into()), 500),
        ];
        for (refused, status) in cases {
            let (expected, code, _) = refused.kind();
            assert_eq!(expected.as_u16(), status);
            assert!(
                code == "internal"
                    || describe(code).is_some_and(|page| page.starts_with(&status.to_string()))
            );
            let response = refused.answer();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.content_type(), Some("application/problem+json"));
            let body =
                futures_util::FutureExt::now_or_never(response.into_body().into_vec()).unwrap().unwrap();
            let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                (problem["status"].as_u64(), problem["code"].as_str()),
                (Some(status.into()), Some(code))
            );
            assert!(!String::from_utf8_lossy(&body).contains("hunter2"));
        }
    }

    #[test]
    fn form_content_types_are_recognised_by_their_essence() {
        assert!(is_form(Some("application/x-www-form-urlencoded")));
        assert!(is_form(Some("application/x-www-form-urlencoded; charset=utf-8")));
        assert!(!is_form(Some("application/json")));
        assert!(!is_form(None));
    }
}
