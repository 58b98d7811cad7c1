//! Builds the service from typed settings: opens and migrates the database, loads the service keys,
//! assembles the routes, binds its own listener (so tests can use port 0 and read the real port) and
//! starts the background tasks.

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
    web::Path,
};
use poem_openapi::OpenApiService;
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
};

use crate::{
    accounts::Accounts,
    clock::Clock,
    config::{SettingError, Settings},
    db::{Database, keys},
    delivery::{Delivery, worker},
    health::HealthApi,
    host::{actions::ActionsApi, intake::IntakeKeys, webhooks::WebhooksApi},
    maintenance,
    manifest::{self, Manifest},
    portal::{self, PortalContext, PortalParts, headers::SecurityHeaders},
    recover::RecoverPanics,
    sealing::Sealer,
    telemetry::AccessLog,
};

/// Requests still being answered when the listener closes get at least this long to finish.
const LEAST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Everything a handler or background task needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub db: Database,
    /// The source of `now`.
    pub clock: Clock,
    /// The settings the service started with.
    pub settings: Arc<Settings>,
    /// Keys the service made for itself.
    pub keys: Arc<ServiceKeys>,
    /// Email, SMS and templates.
    pub delivery: Arc<Delivery>,
    /// Shop rows the customer pages read on every request.
    pub shops: Arc<crate::shops::cache::ShopCache>,
    /// Commits lifecycle events (in batches on SQLite).
    pub lifecycle: Arc<crate::host::lifecycle_writer::LifecycleWriter>,
    /// Lifecycle messages answered lately, to answer the host's retries from memory.
    pub recent_answers: Arc<crate::host::dedupe::RecentlyAnswered>,
    /// Set when shutdown starts: `/readyz` answers `503` from then on.
    pub shutting_down: Arc<AtomicBool>,
}

/// The service's own keys, shared through the database by every instance.
#[derive(Debug)]
pub struct ServiceKeys {
    /// Signs cookies and form tokens of the customer pages.
    pub cookies: keys::ServiceKey,
    /// Seals the links of unfinished outbox messages.
    pub outbox: Sealer,
}

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
        /// What failed.
        cause: String,
    },
    /// The templates or the delivery settings are not usable (exit code 2).
    #[error("{0}")]
    Delivery(String),
    /// The listening address could not be bound.
    #[error(
        "cannot listen on {addr}: {cause}; is another process using it? Set PORTAL_LISTEN to a free address"
    )]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        cause: std::io::Error,
    },
}

/// A running service.
pub struct App {
    local_addr: SocketAddr,
    state: AppState,
    /// Stops the background tasks (the outbox worker claims nothing more).
    stop_background: watch::Sender<bool>,
    /// Closes the listener.
    stop_server: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
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
        let delivery = Arc::new(Delivery::new(&settings).map_err(StartError::Delivery)?);
        let db_error = |cause: sea_orm::DbErr| StartError::Database {
            url: settings.database_url.to_string(),
            cause: cause.to_string(),
        };
        let db = Database::connect(&settings.database_url).await.map_err(db_error)?;
        db.migrate().await.map_err(db_error)?;
        let cookies = keys::load_or_create(&db, "cookies", clock.now()).await.map_err(db_error)?;
        let outbox = keys::load_or_create(&db, "outbox", clock.now()).await.map_err(db_error)?;
        let outbox = Sealer::new(outbox.bytes())
            .map_err(|cause| StartError::Database { url: settings.database_url.to_string(), cause })?;

        let local_addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .unwrap_or(settings.listen);
        let state = AppState {
            db: db.clone(),
            clock: clock.clone(),
            settings: Arc::new(settings),
            keys: Arc::new(ServiceKeys { cookies, outbox }),
            delivery,
            shops: Arc::default(),
            lifecycle: Arc::new(crate::host::lifecycle_writer::LifecycleWriter::start(db.clone())),
            recent_answers: Arc::new(crate::host::dedupe::RecentlyAnswered::new(100_000)),
            shutting_down: Arc::default(),
        };
        let wake_sender = Arc::new(Notify::new());
        let portal = portal_context(&state, wake_sender.clone())?;
        let routes = routes(&state, IntakeKeys { secrets, clock }, portal);

        let (stop_background, stopped) = watch::channel(false);
        let (stop_server, mut server_stopped) = watch::channel(false);
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
            tokio::spawn(maintenance::run(state.clone(), stopped.clone())),
            tokio::spawn(forward_wakes(wake_sender, state.delivery.clone(), stopped.clone())),
            tokio::spawn(worker::run(state.clone(), stopped)),
        ];
        tracing::info!(%local_addr, public_url = %state.settings.public_url, database = %state.settings.database_url, "portal-invites is serving");
        tracing::info!("{}", state.delivery.mailer.describe());
        tracing::info!("{}", state.delivery.sms.describe());
        Ok(Self { local_addr, state, stop_background, stop_server, server, background })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shared state (tests read the database and move the clock through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until Ctrl-C or SIGTERM, then stops gracefully.
    pub async fn run_until_signal(self) -> std::io::Result<()> {
        shutdown_signal().await;
        tracing::info!(
            grace_seconds = self.state.settings.shutdown_grace.as_secs(),
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
        let deadline = tokio::time::Instant::now() + self.state.settings.shutdown_grace;
        self.state.shutting_down.store(true, Ordering::SeqCst);
        let _ = self.stop_background.send(true);
        for mut task in self.background {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
        let in_flight = &self.state.delivery.in_flight;
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
        // Every lease still held is given back (an abandoned send's, or a first attempt a request
        // began in the last moments), so the next instance sends those messages at once. Bounded: an
        // unreachable database must not hold the exit.
        let owner = self.state.delivery.instance.clone();
        let release = self.state.db.write(move |txn| {
            Box::pin(async move { crate::delivery::outbox::release_leases(txn, &owner).await })
        });
        match tokio::time::timeout(LEAST_REQUEST_GRACE, release).await {
            Ok(Ok(0)) => {}
            Ok(Ok(released)) => tracing::info!(released, "leases of unfinished sends given back"),
            Ok(Err(error)) => tracing::warn!(%error, "could not give back the leases of unfinished sends"),
            Err(_) => tracing::warn!(
                "the database did not answer in time to give back the leases of unfinished sends"
            ),
        }
        // Closing lets SQLite checkpoint and remove its WAL file.
        let _ = tokio::time::timeout(LEAST_REQUEST_GRACE, self.state.db.close()).await;
        served
    }

    /// Starts the shutdown's first step only: `/readyz` answers `503` from now on.
    pub fn announce_shutdown(&self) {
        self.state.shutting_down.store(true, Ordering::SeqCst);
    }
}

/// What the customer pages need, from the settings and the shared state.
fn portal_context(state: &AppState, wake_sender: Arc<Notify>) -> Result<PortalContext, StartError> {
    let settings = &state.settings;
    let templates = crate::templates::Templates::load(settings.templates_dir.as_deref())
        .and_then(|t| portal::pages::check_templates(&t).map(|()| t))
        .map_err(|e| StartError::Delivery(format!("PORTAL_TEMPLATES_DIR: {e}")))?;
    let cookie_key = state.keys.cookies.clone();
    let accounts =
        Accounts::new(state.db.clone(), state.clock.clone(), settings.portal.clone(), cookie_key.bytes());
    Ok(PortalContext::new(PortalParts {
        db: state.db.clone(),
        clock: state.clock.clone(),
        accounts: Arc::new(accounts),
        cookie_key,
        templates: Arc::new(templates),
        shops: state.shops.clone(),
        public_url: settings.public_url.clone(),
        secure_cookies: !settings.is_local_http(),
        settings: settings.portal.clone(),
        wake_sender,
    }))
}

/// Passes the customer pages' wake-ups on to the outbox worker, whose `Notify` lives inside
/// `Delivery` (the portal must not know the sender). Once the worker takes a shared
/// `Arc<Notify>`, give that one to the portal and drop this task.
async fn forward_wakes(from: Arc<Notify>, delivery: Arc<Delivery>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = from.notified() => delivery.wake.notify_one(),
            _ = stop.changed() => return,
        }
    }
}

/// Every route of the service.
fn routes(state: &AppState, intake: IntakeKeys, portal: PortalContext) -> impl poem::Endpoint + 'static {
    let public_url = state.settings.public_url.as_str().trim_end_matches('/').to_owned();
    let api = OpenApiService::new(
        (
            WebhooksApi { state: state.clone() },
            ActionsApi { state: state.clone() },
            HealthApi { db: state.db.clone(), shutting_down: state.shutting_down.clone() },
        ),
        "portal-invites",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Customer Portal invitations for a workshop management platform. Every host call is signed \
         with Standard Webhooks v1; problems are RFC 9457 application/problem+json.",
    )
    .server(public_url);
    let spec = api.spec();
    let docs = api.swagger_ui();
    let deployment_manifest = Manifest::parse(manifest::EMBEDDED)
        .and_then(|m| m.for_deployment(&state.settings.public_url))
        .unwrap_or_else(|e| format!("# the embedded manifest is invalid: {e}\n"));

    Route::new()
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
        .nest("/p", portal::routes().data(portal.clone()))
        .at("/static/portal.css", get(portal::stylesheet))
        .nest("/", api)
        .data(intake)
        .data(state.clone())
        .catch_error({
            let portal = portal.clone();
            move |_: poem::error::NotFoundError| {
                let portal = portal.clone();
                async move { portal::not_found(&portal) }
            }
        })
        .with(RecoverPanics { customer_page: Arc::new(move || portal::panic_page(&portal)) })
        .with(SecurityHeaders { hsts: state.settings.public_url.scheme() == "https" })
        .with(AccessLog)
}

/// Explains a problem `type` URI to the integrator who follows it.
#[handler]
fn problem_page(Path(code): Path<String>) -> poem::Response {
    match crate::host::problem::describe(&code) {
        Some(text) => poem::Response::builder().content_type("text/plain; charset=utf-8").body(text),
        None => poem::Response::builder().status(StatusCode::NOT_FOUND).body("unknown problem type"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
