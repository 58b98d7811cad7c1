//! Logging and traces: the subscriber (text or JSON), the access log and the request span.
//!
//! The access log and the request span name the route *pattern* (`/setup/:token`), never the raw
//! path or query, so no token that travels in a URL reaches a log line or a trace.

mod access_line;
mod batched;
mod traces;

use std::{
    io::IsTerminal,
    sync::Arc,
    time::{Duration, Instant},
};

use poem::{Endpoint, IntoResponse, Middleware, PathPattern, Request, Response, Result, http::StatusCode};
use tracing::{Metadata, subscriber::Interest};
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    filter::FilterExt,
    fmt,
    layer::{Context, Filter},
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
    let installed = tracing_subscriber::registry()
        .with(layers(filter, format, ansi, writer, exporter.as_ref()))
        .try_init();
    if installed.is_err() {
        tracing::debug!("a log subscriber was already installed");
    }
    if let Some(exporter) = &exporter {
        tracing::info!("{}", exporter.describe());
    }
    LogGuard { traces: exporter, _writer: guard }
}

/// The log layer, and the trace layer when there is an exporter. Without one there is no trace
/// layer at all: an absent layer (`None`) still claims an interest in every span, and each request
/// would build a span in the registry (and read the trace headers) that nobody reads.
fn layers(
    filter: EnvFilter,
    format: LogFormat,
    ansi: bool,
    writer: batched::BatchedWriter,
    exporter: Option<&traces::Exporter>,
) -> Vec<Box<dyn Layer<Registry> + Send + Sync>> {
    // The log takes events only, so its lines read the same with traces on or off.
    let log_filter = filter.and(EventsOnly);
    let log = match format {
        LogFormat::Text => fmt::layer()
            .with_ansi(ansi)
            .event_format(access_line::FastAccess::text(fmt::format().with_target(false)))
            .with_writer(writer)
            .with_filter(log_filter)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .event_format(access_line::FastAccess::json(fmt::format().json().flatten_event(true)))
            .with_writer(writer)
            .with_filter(log_filter)
            .boxed(),
    };
    let mut layers = vec![log];
    layers.extend(exporter.map(|exporter| exporter.layer().boxed()));
    layers
}

/// Lets events through and never spans. Spans are refused once per call site, so that with traces
/// off a span is disabled where it is written (`Span::is_disabled`) instead of built. Events are
/// asked about each time (`sometimes`), never settled once (`always`): an event that does not ask
/// reads the per-layer filter's answer to whatever asked last on its thread, and after the log
/// bridge's bare check that sqlx makes for each statement on PostgreSQL (answered no) such events
/// were dropped, a login's lines among them (a unit test below).
struct EventsOnly;

impl<S> Filter<S> for EventsOnly {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        meta.is_event()
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_event() { Interest::sometimes() } else { Interest::never() }
    }
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
        let elapsed = started.elapsed();
        let (response, status, route) = outcome(result);
        let route = route.as_deref().unwrap_or("(unmatched)");
        crate::metrics::count_request(&method, route, status, elapsed);
        log_access(&method, route, status, elapsed);
        response
    }
}

/// The access line (see `access_line` for how the service writes it).
fn log_access(method: &poem::http::Method, route: &str, status: StatusCode, elapsed: Duration) {
    let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
    tracing::info!(
        target: access_line::TARGET,
        %method,
        route = %route,
        status = status.as_u16(),
        elapsed_ms = format_args!("{elapsed_ms:.1}"),
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the service's own log (text, `info`, no traces) writes while `emit` runs.
    fn logged(emit: impl FnOnce()) -> String {
        let lines = access_line::tests::Lines::default();
        let (writer, guard) = batched::batched(lines.clone());
        let layers = layers(EnvFilter::new("info"), LogFormat::Text, false, writer, None);
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layers), emit);
        drop(guard);
        lines.take()
    }

    #[test]
    fn an_event_is_logged_after_a_check_that_asked_and_did_not_log() {
        let logged = logged(|| {
            // What `log::log_enabled!` does through the log bridge (sqlx asks so before logging a
            // statement): the subscriber is asked, the log's filter says no, and no event follows.
            // The per-layer filter keeps that answer in a thread-local until the next event asks
            // again; an event that never asks (an `always` interest) read it and was dropped.
            let below = log::Metadata::builder().level(log::Level::Debug).target("sqlx::query").build();
            let _ = log::Log::enabled(&tracing_log::LogTracer::new(), &below);
            tracing::info!(shop_id = "shop_1", "logged in");
        });
        assert!(logged.contains("INFO logged in shop_id=\"shop_1\""), "{logged}");
    }

    #[test]
    fn with_traces_off_no_span_is_built_and_the_log_still_takes_events() {
        let logged = logged(|| {
            let span =
                tracing::info_span!(target: "portal_invites::http", "request", http.route = "/webhooks");
            assert!(span.is_disabled(), "a span nobody reads was built");
            let _entered = span.enter();
            log_access(&poem::http::Method::GET, "/healthz", StatusCode::OK, Duration::from_micros(300));
            tracing::debug!("below the filter");
        });
        assert!(
            logged.ends_with("  INFO request method=GET route=/healthz status=200 elapsed_ms=0.3\n"),
            "{logged}"
        );
        assert_eq!(logged.lines().count(), 1, "{logged}");
    }
}
