//! Builds the service from typed settings: opens and migrates the database, loads the service keys,
//! assembles the routes, binds its own listener (so tests can use port 0 and read the real port) and
//! starts the background tasks.

mod signal;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use poem::{
    EndpointExt, Route, Server,
    endpoint::make_sync,
    get, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpAcceptor, TcpListener},
    post,
    web::Path,
};
use poem_openapi::OpenApiService;
use signal::ShutdownSignal;
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    access::PortalAccess,
    accounts::Accounts,
    clock::Clock,
    config::{SettingError, Settings},
    db::{Database, keys},
    delivery::{Delivery, Senders, receipts, worker},
    health::HealthApi,
    host::{
        HostContext, actions::ActionsApi, intake::IntakeKeys, lifecycle_writer::LifecycleWriter,
        webhooks::WebhooksApi,
    },
    identity::{Client, Identity, KeyRing},
    inbox::RecentlyAnswered,
    links,
    maintenance::{self, Jobs},
    manifest::{self, Manifest},
    metrics::MetricsServer,
    oidc,
    portal::{
        self, PortalContext, PortalParts,
        headers::{HostPortalForms, SecurityHeaders},
    },
    recover::{ErrorPage, RecoverPanics},
    sealing::Sealer,
    telemetry::{AccessLog, RequestSpan},
};

/// Requests still being answered when the listener closes get at least this long to finish.
const LEAST_REQUEST_GRACE: Duration = Duration::from_secs(1);
/// Lifecycle messages whose answers are kept in memory, to answer the host's retries at once: about
/// half a minute of intake at full speed, about 25 MiB when full (see `inbox/recent.rs`).
const RECENT_ANSWERS: usize = 500_000;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is missing or malformed (exit code 2).
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// The database could not be opened or migrated.
    #[error("the database at {url} is not usable: {cause}")]
    Database {
        /// The redacted URL.
        url: String,
        cause: String,
    },
    /// The templates or the delivery settings are not usable (exit code 2).
    #[error("{0}")]
    Delivery(String),
    /// The listening address could not be bound.
    #[error(
        "cannot listen on {addr}: {cause}; is another process using it? Set PORTAL_LISTEN to a free address"
    )]
    Listen { addr: SocketAddr, cause: std::io::Error },
    /// The metrics listener could not be started.
    #[error("{0}")]
    Metrics(String),
}

/// A running service.
pub struct App {
    local_addr: SocketAddr,
    db: Database,
    delivery: Arc<Delivery>,
    jobs: Jobs,
    shutting_down: Arc<AtomicBool>,
    shutdown_grace: Duration,
    /// Stops the background tasks (the outbox worker claims nothing more).
    stop_background: watch::Sender<bool>,
    /// Closes the listener.
    stop_server: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
    /// `PORTAL_METRICS_LISTEN`'s listener, when set; closed with the public one.
    metrics: Option<MetricsServer>,
}

impl App {
    /// Opens the database, applies migrations, binds `PORTAL_LISTEN` and starts serving.
    pub async fn start(settings: Settings, clock: Clock) -> Result<Self, StartError> {
        let addr = settings.listen;
        let acceptor = TcpListener::bind(addr)
            .into_acceptor()
            .await
            .map_err(|cause| StartError::Listen { addr, cause })?;
        Self::start_on(acceptor, settings, clock).await
    }

    /// Like [`App::start`], on a listener the caller already bound (tests bind port 0 first so the
    /// public URL can name the real port).
    pub async fn start_on(
        acceptor: TcpAcceptor,
        settings: Settings,
        clock: Clock,
    ) -> Result<Self, StartError> {
        let secrets: Arc<[_]> = settings.require_webhook_secrets()?.to_vec().into();
        // reqwest is built without a default TLS provider; ring is the one used everywhere here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The senders and every template are checked before anything else starts: the message
        // templates by delivery, the page templates (from the same folder) here, for the portal.
        let senders = Senders::new(&settings)
            .and_then(|senders| {
                portal::pages::check_templates(senders.templates())
                    .map(|()| senders)
                    .map_err(|e| format!("PORTAL_TEMPLATES_DIR: {e}"))
            })
            .map_err(StartError::Delivery)?;
        let db_error = |cause: sea_orm::DbErr| StartError::Database {
            url: settings.database_url.to_string(),
            cause: cause.to_string(),
        };
        let db = Database::connect(&settings.database_url).await.map_err(db_error)?;
        db.migrate().await.map_err(db_error)?;
        let cookies = keys::load_or_create(&db, "cookies", clock.now()).await.map_err(db_error)?;
        let outbox = keys::load_or_create(&db, "outbox", clock.now()).await.map_err(db_error)?;
        let sealer = Arc::new(
            Sealer::new(outbox.bytes())
                .map_err(|cause| StartError::Database { url: settings.database_url.to_string(), cause })?,
        );

        let templates = senders.templates().clone();
        let delivery = Arc::new(Delivery::new(senders, &settings, db.clone(), clock.clone(), sealer.clone()));
        let shops = Arc::default();
        let host = HostContext {
            db: db.clone(),
            clock: clock.clone(),
            public_url: settings.public_url.clone(),
            invitation_ttl: settings.invitation_ttl,
            shops: Arc::clone(&shops),
            lifecycle: Arc::new(LifecycleWriter::start(db.clone())),
            recent_answers: Arc::new(RecentlyAnswered::new(RECENT_ANSWERS)),
            first_attempt: delivery.first_attempt(),
            courier: delivery.clone(),
            access: Arc::new(PortalAccess::new(cookies.bytes(), &settings.portal, sealer.clone())),
            wake_sender: delivery.wake.clone(),
            sealer,
        };
        let portal = PortalContext::new(PortalParts {
            db: db.clone(),
            clock: clock.clone(),
            accounts: Arc::new(Accounts::new(
                db.clone(),
                clock.clone(),
                settings.portal.clone(),
                cookies.bytes(),
            )),
            cookie_key: cookies,
            templates,
            shops: Arc::clone(&shops),
            public_url: settings.public_url.clone(),
            secure_cookies: !settings.is_local_http(),
            settings: settings.portal.clone(),
            wake_sender: delivery.wake.clone(),
        });
        let client_id = Manifest::parse(manifest::EMBEDDED)
            .map(|m| m.plugin.key)
            .map_err(|e| StartError::Delivery(format!("the embedded manifest is invalid: {e}")))?;
        let identity = Arc::new(Identity {
            db: db.clone(),
            clock: clock.clone(),
            keys: KeyRing::open(db.clone(), clock.now()).await.map_err(|e| StartError::Database {
                url: settings.database_url.to_string(),
                cause: e.to_string(),
            })?,
            client: Client::new(client_id, secrets.to_vec()),
            public_url: settings.public_url.clone(),
        });
        let shutting_down = Arc::new(AtomicBool::new(false));
        let health = HealthApi { db: db.clone(), shutting_down: shutting_down.clone() };
        let jobs = Jobs {
            db: db.clone(),
            clock: clock.clone(),
            shops,
            session_idle: settings.portal.session_idle,
            message_files: delivery.writes_files().then(|| settings.outbox_dir.clone()),
            delivery: delivery.clone(),
            audit_retention: settings.audit_retention,
        };

        let local_addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .unwrap_or(settings.listen);
        let routes = routes(
            &settings.public_url,
            host,
            IntakeKeys { secrets, clock },
            health,
            portal,
            identity,
            delivery.clone(),
        );
        let (stop_background, stopped) = watch::channel(false);
        let (stop_server, mut server_stopped) = watch::channel(false);
        let metrics = match settings.metrics_listen {
            Some(addr) => Some(
                MetricsServer::start(addr, db.clone(), jobs.clock.clone(), server_stopped.clone())
                    .await
                    .map_err(StartError::Metrics)?,
            ),
            None => None,
        };
        let server = tokio::spawn(async move {
            Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    routes,
                    async move {
                        let _ = server_stopped.changed().await;
                    },
                    None,
                )
                .await
        });
        let background = vec![
            tokio::spawn(maintenance::run(jobs.clone(), stopped.clone())),
            tokio::spawn(worker::run(delivery.clone(), stopped)),
        ];
        tracing::info!(%local_addr, public_url = %settings.public_url, database = %settings.database_url, "portal-invites is serving");
        tracing::info!("{}", delivery.mailer.describe());
        tracing::info!("{}", delivery.sms.describe());
        Ok(Self {
            local_addr,
            db,
            delivery,
            jobs,
            shutting_down,
            shutdown_grace: settings.shutdown_grace,
            stop_background,
            stop_server,
            server,
            background,
            metrics,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The metrics listener's address, when `PORTAL_METRICS_LISTEN` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::local_addr)
    }

    /// The database (tests read it).
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The housekeeping (tests run a round at a chosen moment).
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// Serves until Ctrl-C or SIGTERM, then stops gracefully.
    pub async fn run_until_signal(self) -> std::io::Result<()> {
        self.run_until_signal_then(|| {}, || {}).await
    }

    /// Like [`App::run_until_signal`], for a service manager: `ready` is called once the signal
    /// handlers are in place (a SIGTERM right after READY must stop gracefully, not kill), and
    /// `stopping` the moment the signal arrives, before the grace period runs.
    pub async fn run_until_signal_then(
        self,
        ready: impl FnOnce(),
        stopping: impl FnOnce(),
    ) -> std::io::Result<()> {
        let signal = ShutdownSignal::listen();
        ready();
        signal.wait().await;
        stopping();
        tracing::info!(
            grace_seconds = self.shutdown_grace.as_secs(),
            "stopping: /readyz answers 503, no new sends start, sends in flight may finish"
        );
        self.stop().await
    }

    /// Stops within `PORTAL_SHUTDOWN_GRACE` (and a second for the last answers): from the first
    /// moment `/readyz` answers `503`, so a load balancer stops sending here while requests are still
    /// served; the outbox worker claims nothing more; sends in flight may finish until the grace
    /// period ends, and are then abandoned, their leases given back so the next instance sends them
    /// (with the same links) at once; then the listener closes and requests in flight finish.
    pub async fn stop(self) -> std::io::Result<()> {
        let deadline = tokio::time::Instant::now() + self.shutdown_grace;
        self.shutting_down.store(true, Ordering::SeqCst);
        let _ = self.stop_background.send(true);
        for mut task in self.background {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
        let in_flight = &self.delivery.in_flight;
        in_flight.close();
        if tokio::time::timeout_at(deadline, in_flight.wait()).await.is_err() {
            tracing::warn!(
                abandoned = in_flight.len(),
                "the shutdown grace period is over: sends in flight are abandoned; their messages will be sent \
                 again, with the same links"
            );
        }
        let _ = self.stop_server.send(true);
        let grace = deadline.saturating_duration_since(tokio::time::Instant::now()).max(LEAST_REQUEST_GRACE);
        let mut server = self.server;
        let served = match tokio::time::timeout(grace, &mut server).await {
            Ok(joined) => joined.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            Err(_) => {
                server.abort();
                tracing::warn!(
                    "requests still in flight at the end of the shutdown grace period were cut off"
                );
                Ok(())
            }
        };
        if let Some(metrics) = self.metrics {
            metrics.stopped().await;
        }
        // Every lease still held is given back (an abandoned send's, or a first attempt a request
        // began in the last moments), so the next instance sends those messages at once. Bounded: an
        // unreachable database must not hold the exit.
        let owner = self.delivery.instance.clone();
        let release = self
            .db
            .write(move |txn| Box::pin(async move { crate::outbox::release_leases(txn, &owner).await }));
        match tokio::time::timeout(LEAST_REQUEST_GRACE, release).await {
            Ok(Ok(0)) => {}
            Ok(Ok(released)) => tracing::info!(released, "leases of unfinished sends given back"),
            Ok(Err(error)) => tracing::warn!(%error, "could not give back the leases of unfinished sends"),
            Err(_) => tracing::warn!(
                "the database did not answer in time to give back the leases of unfinished sends"
            ),
        }
        // Closing lets SQLite checkpoint and remove its WAL file.
        let _ = tokio::time::timeout(LEAST_REQUEST_GRACE, self.db.close()).await;
        served
    }

    /// Starts the shutdown's first step only: `/readyz` answers `503` from now on.
    pub fn announce_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
}

/// Every route of the service, each area with its own context.
fn routes(
    public_url: &url::Url,
    host: HostContext,
    intake: IntakeKeys,
    health: HealthApi,
    portal: PortalContext,
    identity: Arc<Identity>,
    delivery: Arc<Delivery>,
) -> impl poem::Endpoint + 'static {
    let api = OpenApiService::new(
        (WebhooksApi { ctx: host.clone() }, ActionsApi { ctx: host }, health),
        "portal-invites",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Customer Portal invitations for a workshop management platform. Every host call is signed \
         with Standard Webhooks v1; problems are RFC 9457 application/problem+json.",
    )
    .server(public_url.as_str().trim_end_matches('/'));
    let spec = api.spec();
    let docs = api.swagger_ui();
    let deployment_manifest = Manifest::parse(manifest::EMBEDDED)
        .and_then(|m| m.for_deployment(public_url))
        .unwrap_or_else(|e| format!("# the embedded manifest is invalid: {e}\n"));

    let routes = Route::new()
        .at(
            "/openapi.json",
            make_sync(move |_| poem::Response::builder().content_type("application/json").body(spec.clone())),
        )
        .nest("/docs", docs)
        .at(
            "/manifest.toml",
            make_sync(move |_| {
                poem::Response::builder()
                    .content_type("application/toml; charset=utf-8")
                    .body(deployment_manifest.clone())
            }),
        )
        .at("/problems/:code", get(problem_page))
        .at(links::SMS_STATUS_PATH, post(receipts::receive_status_report).data(delivery))
        .nest("/p", oidc::add_routes(portal::routes(), identity).with(HostPortalForms).data(portal.clone()))
        .at("/static/portal.css", get(portal::stylesheet))
        .nest("/", api)
        .data(intake)
        .catch_error({
            let portal = portal.clone();
            move |_: poem::error::NotFoundError| {
                let portal = portal.clone();
                async move { portal::not_found(&portal) }
            }
        })
        .boxed();
    guarded(routes, Arc::new(move || portal::panic_page(&portal)), public_url.scheme() == "https")
}

/// The layers every answer passes through, innermost first: a panic becomes a 500 (the customer's
/// error page under `/p/`), which then gets the security headers like any answer, and is logged,
/// all within the request's span (a trace's server span when traces are on).
fn guarded(
    routes: impl poem::Endpoint + 'static,
    customer_page: ErrorPage,
    hsts: bool,
) -> impl poem::Endpoint {
    routes
        .with(RecoverPanics { customer_page })
        .with(SecurityHeaders { hsts })
        .with(AccessLog)
        .with(RequestSpan)
}

/// Explains a problem `type` URI to the integrator who follows it.
#[handler]
fn problem_page(Path(code): Path<String>) -> poem::Response {
    match crate::host::problem::describe(&code).or_else(|| receipts::describe(&code)) {
        Some(text) => poem::Response::builder().content_type("text/plain; charset=utf-8").body(text),
        None => poem::Response::builder().status(StatusCode::NOT_FOUND).body("unknown problem type"),
    }
}

#[cfg(test)]
mod tests {
    use poem::{Endpoint, Request, Response, http::StatusCode};

    use super::*;

    #[handler]
    fn boom() -> String {
        let nothing: Vec<String> = Vec::new();
        nothing[nothing.len()].clone()
    }

    #[tokio::test]
    async fn the_answer_to_a_panic_carries_the_security_headers() {
        let page: ErrorPage =
            Arc::new(|| Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR).body("the page"));
        let service = guarded(Route::new().at("/p/shop/login", boom), page, true);
        let answer = service.get_response(Request::builder().uri_str("/p/shop/login").finish()).await;
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
        for header in
            ["content-security-policy", "x-frame-options", "cache-control", "strict-transport-security"]
        {
            assert!(answer.headers().contains_key(header), "{header} is missing");
        }
    }
}
