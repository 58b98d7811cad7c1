//! Traces: the real binary, with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a collector of our own,
//! continues a host's trace and names its spans by route pattern, with no token in any of them.
//! A process of its own because the tracing subscriber is global to a process.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value as AnyValueKind},
    trace::v1::{Span, span::SpanKind},
};
use poem::{
    EndpointExt, Route, Server, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    post,
    web::Data,
};
use prost::Message;

use crate::helpers::poll;

/// Every export request body received, raw, in order.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Vec<u8>>>>);

impl Collector {
    fn spans(&self) -> Vec<Span> {
        let bodies = self.0.lock().unwrap().clone();
        bodies
            .iter()
            .flat_map(|body| {
                ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf").resource_spans
            })
            .flat_map(|resource| resource.scope_spans)
            .flat_map(|scope| scope.spans)
            .collect()
    }

    fn service_names(&self) -> Vec<String> {
        let bodies = self.0.lock().unwrap().clone();
        bodies
            .iter()
            .flat_map(|body| ExportTraceServiceRequest::decode(body.as_slice()).unwrap().resource_spans)
            .filter_map(|resource| resource.resource)
            .filter_map(|resource| text(&resource.attributes, "service.name"))
            .collect()
    }

    fn raw(&self) -> Vec<u8> {
        self.0.lock().unwrap().concat()
    }
}

#[handler]
fn export(body: Vec<u8>, collector: Data<&Collector>) -> (StatusCode, Vec<u8>) {
    collector.0.0.lock().unwrap().push(body);
    // An empty ExportTraceServiceResponse: zero bytes in protobuf.
    (StatusCode::OK, Vec::new())
}

async fn start_collector() -> (Collector, String) {
    let collector = Collector::default();
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
    let app = Route::new().at("/v1/traces", post(export)).data(collector.clone());
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    (collector, format!("http://127.0.0.1:{port}"))
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValueKind> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key)? {
        AnyValueKind::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_hosts_trace_continues_through_a_request_whose_span_names_the_route_and_never_the_token() {
    let (collector, endpoint) = start_collector().await;
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal-invites"))
        .arg("serve")
        .env_clear()
        .env("PORTAL_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTAL_PUBLIC_URL", &base)
        .env("PORTAL_DATABASE_URL", format!("sqlite://{}/portal.db?mode=rwc", dir.path().display()))
        .env("PORTAL_WEBHOOK_SECRETS", portal_invites::signature::WebhookSecret::generate())
        // A quiet log does not quiet the traces.
        .env("PORTAL_LOG", "warn")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "1000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let ready = poll(200, Duration::from_millis(50), || async {
        client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200).then_some(())
    });
    assert!(ready.await.is_some(), "the service started");

    let token = portal_invites::random::id("tok");
    let email = "jana.novak@example.com";
    let open_setup_link = |trace_id: &'static str, parent_span_id: &'static str| {
        let request = client
            .get(format!("{base}/p/shop_1/setup/{token}?email={email}"))
            .header("traceparent", format!("00-{trace_id}-{parent_span_id}-01"));
        async move { request.send().await.unwrap().status().as_u16() }
    };

    // Batches leave while the service runs (every second here)...
    let (first_trace, first_parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let first_status = open_setup_link(first_trace, first_parent).await;
    let sent = poll(200, Duration::from_millis(50), || async {
        collector.spans().iter().any(|s| hex(&s.trace_id) == first_trace).then_some(())
    });
    assert!(sent.await.is_some(), "the span was exported while the service runs");
    // ...and the spans still queued when it stops are sent before it exits. (Only now is SIGTERM
    // sure to find the service's handler: it is installed just after `/readyz` first answers.)
    let (last_trace, last_parent) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let last_status = open_setup_link(last_trace, last_parent).await;
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exited = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output()).await;
    let output = exited.expect("the process exits after SIGTERM").unwrap();
    assert!(output.status.success(), "{:?}: {}", output.status, String::from_utf8_lossy(&output.stderr));

    let spans = collector.spans();
    for (trace_id, parent_span_id, status) in
        [(first_trace, first_parent, first_status), (last_trace, last_parent, last_status)]
    {
        let continued: Vec<&Span> = spans.iter().filter(|s| hex(&s.trace_id) == trace_id).collect();
        assert_eq!(continued.len(), 1, "one span continues the host's trace: {spans:#?}");
        let span = continued[0];
        assert_eq!(hex(&span.parent_span_id), parent_span_id, "its parent is the host's span");
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(span.name, "GET /p/:shop/setup/:token", "named by method and route pattern");
        assert_eq!(text(&span.attributes, "http.route").as_deref(), Some("/p/:shop/setup/:token"));
        assert_eq!(text(&span.attributes, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(
            attribute(&span.attributes, "http.response.status_code"),
            Some(&AnyValueKind::IntValue(i64::from(status))),
        );
    }
    // Requests without a `traceparent` (readiness) start traces of their own.
    assert!(spans.iter().any(|s| s.name == "GET /readyz" && s.parent_span_id.is_empty()), "{spans:#?}");
    assert_eq!(collector.service_names().first().map(String::as_str), Some("portal-invites"));

    // Nothing of the URL beyond its pattern reaches the collector, in any span or attribute.
    let raw = String::from_utf8_lossy(&collector.raw()).into_owned();
    for secret in [token.as_str(), email, "jana", "shop_1"] {
        assert!(!raw.contains(secret), "{secret:?} was exported: {spans:#?}");
    }
}
