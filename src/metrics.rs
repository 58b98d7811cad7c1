//! Prometheus metrics, on a listener of their own (`PORTAL_METRICS_LISTEN`), never on the public port.
//!
//! The figures are counted where they happen, with the `metrics` crate's macros; until a recorder is
//! installed (the setting is unset) those are no-ops. The recorder is the process's one global
//! recorder, installed by the first app that serves metrics; the exposition is rendered by
//! `metrics-exporter-prometheus`, served here with poem. Every label is one of a small fixed set
//! (a route pattern, a method, a status, an outcome): never an id, a token or personal data.
//!
//! The outbox's gauges are read from the database at each scrape, so nothing reads them while
//! nobody scrapes; with several instances on one database each reports the same shared outbox.

use std::{net::SocketAddr, sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use poem::{
    EndpointExt, Route, Server, get, handler,
    http::{Method, StatusCode},
    listener::{Acceptor, Listener, TcpListener},
    web::Data,
};
use tokio::{sync::watch, task::JoinHandle};

use crate::{clock::Clock, db::Database, outbox};

/// Latency buckets (seconds): a page or webhook answered in a few milliseconds up to a hash or a
/// slow database taking seconds.
const SECONDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// The SQLite writer's group sizes, up to its largest group (64).
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
/// Histogram samples are folded in this often, so memory stays flat between scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// The metrics listener, running.
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Installs the recorder (once per process) and serves `GET /metrics` on `acceptor` until `stop`
    /// changes.
    pub async fn start(
        addr: SocketAddr,
        db: Database,
        clock: Clock,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Self, String> {
        let handle = handle()?;
        let acceptor = TcpListener::bind(addr).into_acceptor().await.map_err(|e| {
            format!("cannot listen on {addr} for metrics: {e}; set PORTAL_METRICS_LISTEN to a free address")
        })?;
        let local_addr =
            acceptor.local_addr().first().and_then(|a| a.as_socket_addr().copied()).unwrap_or(addr);
        let routes =
            Route::new().at("/metrics", get(scrape)).data(Scrape { handle: handle.clone(), db, clock });
        let task = tokio::spawn(async move {
            let server = Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
                routes,
                async move {
                    let _ = stop.changed().await;
                },
                Some(Duration::from_secs(1)),
            );
            let upkeep = async {
                let mut every = tokio::time::interval(UPKEEP);
                loop {
                    every.tick().await;
                    handle.run_upkeep();
                }
            };
            tokio::select! {
                served = server => if let Err(error) = served {
                    tracing::error!(%error, "the metrics listener failed");
                },
                () = upkeep => {}
            }
        });
        tracing::info!(%local_addr, "serving Prometheus metrics at /metrics");
        Ok(Self { local_addr, task })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits (briefly) for the listener to close after the stop was sent.
    pub async fn stopped(self) {
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(2), &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// The process's recorder, once an app asked for it.
static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// The process's recorder, installed the first time it is asked for.
fn handle() -> Result<PrometheusHandle, String> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("portal_sqlite_write_batch_size".into()), BATCH)
                })
                .map_err(|e| e.to_string())?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .map_err(|_| "another metrics recorder is already installed in this process".to_owned())?;
            describe();
            Ok(handle)
        })
        .clone()
}

#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    db: Database,
    clock: Clock,
}

#[handler]
async fn scrape(Data(scrape): Data<&Scrape>) -> poem::Response {
    match outbox::backlog(&scrape.db, scrape.clock.now()).await {
        Ok(backlog) => {
            metrics::gauge!("portal_outbox_pending").set(backlog.pending as f64);
            let age = backlog.oldest_age.map_or(0.0, |age| age.num_milliseconds().max(0) as f64 / 1000.0);
            metrics::gauge!("portal_outbox_oldest_pending_age_seconds").set(age);
        }
        Err(error) => tracing::warn!(%error, "could not read the outbox for the metrics"),
    }
    poem::Response::builder()
        .status(StatusCode::OK)
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(scrape.handle.render())
}

/// The name of a standard method, as a label; `None` for a client's made-up one (which must not
/// become a label or a span name of its own).
pub fn standard_method(method: &Method) -> Option<&'static str> {
    Some(match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return None,
    })
}

/// One answered request, called by the access log with what it logs: the route pattern (never
/// the raw path), the method and the status.
pub fn count_request(method: &Method, route: &str, status: StatusCode, elapsed: Duration) {
    // The labels are built before a recorder is asked, so without one this stops before building them.
    if !HANDLE.get().is_some_and(Result::is_ok) {
        return;
    }
    let method = standard_method(method).unwrap_or("other");
    metrics::histogram!(
        "portal_http_request_duration_seconds",
        "route" => route.to_owned(),
        "method" => method,
        "status" => status.as_str().to_owned()
    )
    .record(elapsed.as_secs_f64());
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "portal_http_request_duration_seconds",
        Unit::Seconds,
        "Requests answered, by route pattern, method and status, and how long each took."
    );
    describe_counter!(
        "portal_webhooks_total",
        "Webhooks received on /webhooks, by type, outcome and reason."
    );
    describe_gauge!("portal_outbox_pending", "Messages waiting in the outbox (read at each scrape).");
    describe_gauge!(
        "portal_outbox_oldest_pending_age_seconds",
        Unit::Seconds,
        "How long the oldest waiting message has waited (0 when none)."
    );
    describe_counter!("portal_sends_total", "Attempts to send a message, by channel, kind and outcome.");
    describe_counter!(
        "portal_invitation_funnel_total",
        "Invitations by step: invited, delivered (accepted by the server or gateway), activated, failed."
    );
    describe_counter!("portal_password_hashing_admissions_total", "Requests admitted to hash a password.");
    describe_gauge!("portal_password_hashing_admitted", "Requests admitted and not yet done hashing.");
    describe_histogram!(
        "portal_password_hashing_wait_seconds",
        Unit::Seconds,
        "How long admitted requests waited for a hashing turn."
    );
    describe_counter!(
        "portal_password_hashing_busy_total",
        "Requests answered 503 because hashing was at capacity, by stage (admission or queue)."
    );
    describe_histogram!(
        "portal_sqlite_write_batch_size",
        "Write transactions committed together by SQLite's writer."
    );
    describe_histogram!(
        "portal_sqlite_commit_seconds",
        Unit::Seconds,
        "How long SQLite's group commits took."
    );
}
