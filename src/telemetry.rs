//! Logging and traces: the subscriber (text or JSON), the access log and the request span.
//!
//! The access log and the request span name the route *pattern* (`/setup/:token`), never the raw
//! path or query, so no token that travels in a URL reaches a log line or a trace.

mod batched;
mod traces;

use std::{io::IsTerminal, sync::Arc, time::Instant};

use poem::{Endpoint, IntoResponse, Middleware, PathPattern, Request, Response, Result, http::StatusCode};
use tracing_subscriber::{
    EnvFilter,
    filter::{FilterExt, filter_fn},
    fmt,
    prelude::*,
};

pub use traces::{RequestSpan, RequestSpanEndpoint};

use crate::config::LogFormat;

/// Keeps the log writer thread alive, and the trace exporter when there is one; log lines still
/// queued are written and spans still queued are sent when it is dropped, so hold it until the
/// process is about to exit.
#[must_use = "dropping the guard stops the log writer and the trace exporter"]
pub struct LogGuard {
    // Dropped first (declaration order): the exporter's own complaints still reach the log.
    traces: Option<traces::Exporter>,
    _writer: batched::BatchedGuard,
}

/// Installs the global subscriber. Call once, at start-up of the binary (tests install their own).
///
/// Lines are formatted on the thread that logs and written to stdout in batches by a dedicated
/// thread (see `batched`), so a request never waits on the terminal or on whatever reads the pipe.
/// Nothing is dropped: past a limit (a stalled reader), logging threads wait rather than drop lines,
/// because an access log with gaps is worse than a slower one.
///
/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, an OpenTelemetry layer joins the same registry beside
/// the log, each with its own filter: the log filter (`PORTAL_LOG`) governs log events only, and the
/// trace layer takes this crate's spans at info and above, never log events (whose fields may
/// name a shop or a message), so quieting the log does not stop traces. Call it inside the tokio
/// runtime: the exporter's batches are sent from a task on it.
pub fn init(filter: &str, format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = batched::batched(std::io::stdout());
    // Colours only for a person at a terminal, never escape codes in a file or a log collector.
    let ansi = std::io::stdout().is_terminal();
    let exporter = traces::Exporter::from_env();
    let registry = tracing_subscriber::registry().with(exporter.as_ref().map(traces::Exporter::layer));
    // The log takes events only, so its lines read the same with traces on or off.
    let log_filter = filter.and(filter_fn(|meta| meta.is_event()));
    let installed = match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_target(false).with_ansi(ansi).with_writer(writer).with_filter(log_filter))
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true).with_writer(writer).with_filter(log_filter))
            .try_init(),
    };
    if installed.is_err() {
        tracing::debug!("a log subscriber was already installed");
    }
    if let Some(exporter) = &exporter {
        tracing::info!("{}", exporter.describe());
    }
    LogGuard { traces: exporter, _writer: guard }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(exporter) = self.traces.take() {
            exporter.shutdown();
        }
    }
}

/// The status and route pattern of a handled request, and the response itself.
fn outcome<T: IntoResponse>(result: Result<T>) -> (Result<Response>, StatusCode, Option<Arc<str>>) {
    let (status, route) = match &result {
        Ok(_) => (None, None),
        Err(err) => (Some(err.status()), err.data::<PathPattern>().map(|p| Arc::clone(&p.0))),
    };
    let response = result.map(IntoResponse::into_response);
    let (status, route) = match &response {
        Ok(resp) => (resp.status(), resp.data::<PathPattern>().map(|p| Arc::clone(&p.0))),
        Err(_) => (status.unwrap_or_default(), route),
    };
    (response, status, route.filter(|r| !r.is_empty()))
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
        let (response, status, route) = outcome(result);
        let route = route.as_deref().unwrap_or("(unmatched)");
        crate::metrics::count_request(&method, route, status, started.elapsed());
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
