//! Probes for orchestrators and load balancers.

use poem_openapi::{ApiResponse, OpenApi, payload::PlainText};

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use crate::{db::Database, host::webhooks::Tags};

/// The readiness answer.
#[derive(Debug, ApiResponse)]
pub enum Readiness {
    /// The database answers.
    #[oai(status = 200)]
    Ready(PlainText<&'static str>),
    /// Shutting down, or the database does not answer: do not send traffic here.
    #[oai(status = 503)]
    NotReady(PlainText<&'static str>),
}

/// `GET /healthz` and `GET /readyz`.
pub struct HealthApi {
    pub db: Database,
    /// Set when shutdown starts: `/readyz` answers `503` from then on.
    pub shutting_down: Arc<AtomicBool>,
}

#[OpenApi]
impl HealthApi {
    /// Liveness: the process is up and serving.
    #[oai(path = "/healthz", method = "get", tag = "Tags::Health", operation_id = "healthz")]
    async fn healthz(&self) -> PlainText<&'static str> {
        PlainText("ok")
    }

    /// Readiness: not shutting down, and the database is reachable. From the moment a shutdown
    /// starts this answers `503`, while requests are still served, so a load balancer stops sending
    /// here before the listener closes.
    #[oai(path = "/readyz", method = "get", tag = "Tags::Health", operation_id = "readyz")]
    async fn readyz(&self) -> Readiness {
        if self.shutting_down.load(Ordering::SeqCst) {
            Readiness::NotReady(PlainText("shutting down"))
        } else if self.db.ping().await {
            Readiness::Ready(PlainText("ready"))
        } else {
            Readiness::NotReady(PlainText("database unreachable"))
        }
    }
}
