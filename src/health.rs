//! Probes for orchestrators and load balancers.

use poem_openapi::{ApiResponse, OpenApi, payload::PlainText};

use crate::{app::AppState, host::webhooks::Tags};

/// The readiness answer.
#[derive(Debug, ApiResponse)]
pub enum Readiness {
    /// The database answers.
    #[oai(status = 200)]
    Ready(PlainText<&'static str>),
    /// The database does not answer; do not send traffic here.
    #[oai(status = 503)]
    NotReady(PlainText<&'static str>),
}

/// `GET /healthz` and `GET /readyz`.
pub struct HealthApi {
    /// Shared service state.
    pub state: AppState,
}

#[OpenApi]
impl HealthApi {
    /// Liveness: the process is up and serving.
    #[oai(path = "/healthz", method = "get", tag = "Tags::Health", operation_id = "healthz")]
    async fn healthz(&self) -> PlainText<&'static str> {
        PlainText("ok")
    }

    /// Readiness: the database is reachable.
    #[oai(path = "/readyz", method = "get", tag = "Tags::Health", operation_id = "readyz")]
    async fn readyz(&self) -> Readiness {
        if self.state.db.ping().await {
            Readiness::Ready(PlainText("ready"))
        } else {
            Readiness::NotReady(PlainText("database unreachable"))
        }
    }
}
