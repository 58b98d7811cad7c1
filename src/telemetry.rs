//! Logging: the subscriber (text or JSON) and the access log.
//!
//! The access log records the route *pattern* (`/setup/:token`), never the raw path or query, so no
//! token that travels in a URL reaches a log line.

use std::time::Instant;

use poem::{Endpoint, IntoResponse, Middleware, PathPattern, Request, Response, Result};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Installs the global subscriber. Call once, at start-up of the binary (tests install their own).
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).try_init(),
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true)).try_init(),
    };
    if installed.is_err() {
        tracing::debug!("a log subscriber was already installed");
    }
}

/// One line per request: method, route pattern, status, milliseconds.
pub struct AccessLog;

impl<E: Endpoint> Middleware<E> for AccessLog {
    type Output = AccessLogEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        AccessLogEndpoint(ep)
    }
}

/// See [`AccessLog`].
pub struct AccessLogEndpoint<E>(E);

impl<E: Endpoint> Endpoint for AccessLogEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let method = req.method().clone();
        let started = Instant::now();
        let result = self.0.call(req).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (status, route) = match &result {
            Ok(_) => (None, None),
            Err(err) => (Some(err.status()), err.data::<PathPattern>().map(|p| p.0.to_string())),
        };
        let response = result.map(IntoResponse::into_response);
        let (status, route) = match &response {
            Ok(resp) => (resp.status(), resp.data::<PathPattern>().map(|p| p.0.to_string())),
            Err(_) => (status.unwrap_or_default(), route),
        };
        let route = route.filter(|r| !r.is_empty()).unwrap_or_else(|| "(unmatched)".to_owned());
        tracing::info!(
            target: "portal_invites::access",
            %method,
            route = %route,
            status = status.as_u16(),
            elapsed_ms = format_args!("{elapsed_ms:.1}"),
            "request"
        );
        response
    }
}
