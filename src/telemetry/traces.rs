//! Traces over OTLP/HTTP, on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and the request span.
//!
//! A request span carries the method, the route pattern and the status: never the path, the query,
//! a header's value, an id or an address, because tokens travel in URLs and a trace collector is
//! read by more people than the database.

use std::time::Duration;

use opentelemetry::{
    propagation::{Extractor, TextMapPropagator},
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    runtime,
    trace::{SdkTracerProvider, span_processor_with_async_runtime::BatchSpanProcessor},
};
use poem::{Endpoint, Middleware, Request, Response, Result, http::HeaderMap};
use tracing::{Instrument, Level, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    Layer,
    filter::{FilterExt, Targets, filter_fn},
    registry::LookupSpan,
};

const SERVICE_NAME: &str = "portal-invites";

/// The tracer provider that batches spans and sends them to the collector.
pub(super) struct Exporter {
    provider: SdkTracerProvider,
    service_name: String,
}

impl Exporter {
    /// The exporter the standard OpenTelemetry variables ask for, or none without an endpoint.
    /// The OTLP crate itself reads the endpoint (appending `/v1/traces`), `OTEL_EXPORTER_OTLP_HEADERS`
    /// and `OTEL_EXPORTER_OTLP_TIMEOUT`, so they mean here what they mean to any other service.
    pub(super) fn from_env() -> Option<Self> {
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok()?;
        if endpoint.trim().is_empty() {
            return None;
        }
        let service_name = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| SERVICE_NAME.to_owned());
        match build(&service_name) {
            Ok(provider) => Some(Self { provider, service_name }),
            Err(error) => {
                // The log is not installed yet: a broken trace setting must not stop the service,
                // but it must be seen.
                eprintln!("warning: traces are off, OTEL_EXPORTER_OTLP_ENDPOINT cannot be used: {error}");
                None
            }
        }
    }

    /// The layer that turns this crate's spans into OpenTelemetry spans. Log events stay out: their
    /// fields may name a shop or a message, which a span must not carry.
    pub(super) fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        let ours = Targets::new().with_target("portal_invites", Level::INFO);
        let spans_only = ours.and(filter_fn(|meta| meta.is_span()));
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer(SERVICE_NAME)).with_filter(spans_only)
    }

    pub(super) fn describe(&self) -> String {
        format!("traces are sent over OTLP/HTTP as service {:?}", self.service_name)
    }

    /// Sends the spans still queued and stops the batch task.
    pub(super) fn shutdown(self) {
        let provider = self.provider;
        // The SDK waits for the batch task by blocking the calling thread; on a runtime worker that
        // thread is handed over first, so the task (on another worker) can finish the last batch.
        let stop = move || {
            if let Err(error) = provider.shutdown_with_timeout(Duration::from_secs(5)) {
                tracing::warn!(%error, "the last spans could not be sent");
            }
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::CurrentThread) => {
                // The batch task would need this very thread: waiting for it would never end.
                tracing::warn!("spans still queued are not sent: the runtime has one thread");
            }
            Ok(_) => tokio::task::block_in_place(stop),
            Err(_) => stop(),
        }
    }
}

fn build(service_name: &str) -> Result<SdkTracerProvider, String> {
    // reqwest is built without a default TLS provider; ring is the one used everywhere here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let exporter = SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .build()
        .map_err(|e| e.to_string())?;
    // Batches are sent from a task on our runtime, not from a thread of the SDK's own that would
    // have to block on the async client.
    let processor = BatchSpanProcessor::builder(exporter, runtime::Tokio).build();
    let resource = Resource::builder().with_service_name(service_name.to_owned()).build();
    Ok(SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build())
}

/// A server span around each request, continuing the trace of a W3C `traceparent` header.
pub struct RequestSpan;

impl<E: Endpoint> Middleware<E> for RequestSpan {
    type Output = RequestSpanEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        RequestSpanEndpoint(ep)
    }
}

/// See [`RequestSpan`].
pub struct RequestSpanEndpoint<E>(E);

impl<E: Endpoint> Endpoint for RequestSpanEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        // A method outside the standard ones is `_OTHER`, as OpenTelemetry's conventions say: a
        // client's made-up token names no span.
        let method = crate::metrics::standard_method(req.method()).unwrap_or("_OTHER");
        // Named by the method alone until the route is known (after routing), as OpenTelemetry's
        // conventions name a request that matched no route.
        let span = tracing::info_span!(
            target: "portal_invites::http",
            "request",
            otel.name = %method,
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = %method,
            http.route = Empty,
            http.response.status_code = Empty,
        );
        if span.is_disabled() {
            // Traces are off: nothing is read or recorded.
            let result = self.0.call(req).await;
            return super::outcome(result).0;
        }
        let parent = TraceContextPropagator::new().extract(&Headers(req.headers()));
        // Fails only when the span is filtered out, and then there is nothing to continue.
        let _ = span.set_parent(parent);
        let result = self.0.call(req).instrument(span.clone()).await;
        let (response, status, route) = super::outcome(result);
        if let Some(route) = &route {
            // `otel.name` is read only while the span is unstarted; by now it has been entered.
            span.context().span().update_name(format!("{method} {route}"));
            span.record("http.route", &**route);
        }
        // As a signed integer: the bridge exports unsigned ones as text.
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
        response
    }
}

/// Reads only the trace context headers the propagator asks for.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}
