//! The test harness: each test starts the real service on port 0 with its own fresh database
//! (a SQLite file in a temporary folder, or a PostgreSQL database created for it), a manual clock,
//! and a log capture, and talks to it over HTTP like the host would.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use poem::listener::{Acceptor, Listener, TcpListener};
pub use portal_invites::cli::host_messages::{self, Customer, Shop, Staff, StarMenu};
use portal_invites::{app::App, clock::Clock, config::Settings, db::Database, signature::WebhookSecret};
use sea_orm::ConnectionTrait;
use serde_json::Value;

/// The instant every test's clock starts at.
pub fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().to_utc()
}

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file of its own.
    Sqlite,
    /// A PostgreSQL database of its own, on `PORTAL_TEST_POSTGRES_URL`.
    Postgres,
}

/// The PostgreSQL server for tests, if configured. With `PORTAL_TEST_REQUIRE_POSTGRES=1` (as in CI)
/// a missing one fails the test instead of skipping its PostgreSQL variant: a run that silently
/// tested one database must not pass for one that tested both.
pub fn postgres_admin_url() -> Option<String> {
    let url = std::env::var("PORTAL_TEST_POSTGRES_URL").ok().filter(|u| !u.trim().is_empty());
    if url.is_none() && std::env::var("PORTAL_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("PORTAL_TEST_REQUIRE_POSTGRES=1 but PORTAL_TEST_POSTGRES_URL is not set");
    }
    url
}

/// A fresh database: where it is and how to throw it away.
pub struct TestDatabase {
    /// The URL the service connects to.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres_name: Option<String>,
}

impl TestDatabase {
    /// Makes a fresh, empty database, or `None` for PostgreSQL when no server is configured.
    pub async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/portal.db?mode=rwc", dir.path().display());
                Some(Self { url, _dir: Some(dir), postgres_name: None })
            }
            Backend::Postgres => {
                let admin = postgres_admin_url()?;
                let name = format!("portal_test_{}", hex(&rand_bytes()));
                let conn =
                    sea_orm::Database::connect(&admin).await.expect("PORTAL_TEST_POSTGRES_URL is reachable");
                conn.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
                conn.close().await.unwrap();
                let url = replace_database(&admin, &name);
                Some(Self { url, _dir: None, postgres_name: Some(name) })
            }
        }
    }
}

impl TestDatabase {
    /// The same database for a second service instance (the first keeps ownership).
    pub fn share(&self) -> Self {
        Self { url: self.url.clone(), _dir: None, postgres_name: None }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let (Some(name), Some(admin)) = (self.postgres_name.take(), postgres_admin_url()) {
            // Dropping runs outside the test's runtime, which may be shutting down.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    if let Ok(conn) = sea_orm::Database::connect(&admin).await {
                        let _ = conn
                            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                        let _ = conn.close().await;
                    }
                });
            })
            .join();
        }
    }
}

fn replace_database(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

fn rand_bytes() -> [u8; 8] {
    let mut b = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    b
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Log lines captured from the service while a test runs.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.text().lines().filter(|l| l.contains(needle)).count()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Options for starting a test service.
pub struct Options {
    /// Extra or overriding settings (`PORTAL_…` names).
    pub env: Vec<(String, String)>,
    /// Secrets to configure; the first is the one [`TestApp::sign`] uses.
    pub secrets: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self { env: Vec::new(), secrets: vec![WebhookSecret::generate()] }
    }
}

/// A running service with its own database.
pub struct TestApp {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The service's clock (manual).
    pub clock: Clock,
    /// The service's database.
    pub db: Database,
    /// What the service logged.
    pub logs: CapturedLogs,
    /// The HTTP client.
    pub client: reqwest::Client,
    /// The secret messages are signed with.
    pub secret: WebhookSecret,
    /// The same secret, as configured (`whsec_…`).
    pub secret_text: String,
    /// Where email and SMS go when no server or gateway is configured.
    pub outbox_dir: std::path::PathBuf,
    app: Option<App>,
    _outbox: tempfile::TempDir,
    database: Option<TestDatabase>,
    _log_guard: tracing::subscriber::DefaultGuard,
}

impl TestApp {
    /// Starts a service on `backend` with default options; `None` when PostgreSQL is not configured.
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, Options::default()).await
    }

    /// Starts a service with options.
    pub async fn spawn_with(backend: Backend, options: Options) -> Option<Self> {
        let database = TestDatabase::create(backend).await?;
        Some(Self::start(database, options, Clock::manual(start_time())).await)
    }

    /// Starts a service on an existing test database (to share it between instances).
    pub async fn start(database: TestDatabase, options: Options, clock: Clock) -> Self {
        let logs = CapturedLogs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("debug,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,hyper=warn,poem=info")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let log_guard = tracing::subscriber::set_default(subscriber);

        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let outbox = tempfile::tempdir().unwrap();
        let mut env = vec![
            ("PORTAL_OUTBOX_DIR".to_owned(), outbox.path().display().to_string()),
            ("PORTAL_DATABASE_URL".to_owned(), database.url.clone()),
            ("PORTAL_PUBLIC_URL".to_owned(), url.clone()),
            ("PORTAL_WEBHOOK_SECRETS".to_owned(), options.secrets.join(" ")),
        ];
        env.extend(options.env);
        let settings = Settings::load(None, env).expect("test settings are valid");
        let app = App::start_on(acceptor, settings, clock.clone()).await.expect("the service starts");
        let secret_text = options.secrets[0].clone();
        let secret = WebhookSecret::parse(&secret_text).unwrap();
        Self {
            url,
            clock,
            db: app.db().clone(),
            logs,
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
            secret,
            secret_text,
            outbox_dir: outbox.path().to_owned(),
            app: Some(app),
            _outbox: outbox,
            database: Some(database),
            _log_guard: log_guard,
        }
    }

    /// Talks to a service run elsewhere (a child process on the wall clock), on `database`, whose
    /// messages go to `outbox`; the helpers work as for one started here, except [`TestApp::stop`]
    /// and [`TestApp::jobs`].
    pub async fn attach(
        database: TestDatabase,
        url: String,
        secret_text: String,
        outbox: tempfile::TempDir,
    ) -> Self {
        let database_url = portal_invites::config::DatabaseUrl::parse(&database.url).unwrap();
        let db = Database::connect(&database_url).await.expect("the service's database opens");
        let secret = WebhookSecret::parse(&secret_text).unwrap();
        Self {
            url,
            clock: Clock::system(),
            db,
            logs: CapturedLogs::default(),
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
            secret,
            secret_text,
            outbox_dir: outbox.path().to_owned(),
            app: None,
            _outbox: outbox,
            database: Some(database),
            _log_guard: tracing::subscriber::set_default(tracing_subscriber::registry()),
        }
    }

    /// The running service's housekeeping, to run a round at a chosen moment.
    pub fn jobs(&self) -> &portal_invites::maintenance::Jobs {
        self.app.as_ref().expect("the service is running").jobs()
    }

    /// The first step of a shutdown: `/readyz` answers `503` from now on.
    pub fn announce_shutdown(&self) {
        self.app.as_ref().expect("the service is running").announce_shutdown();
    }

    /// The URL of the test's database.
    pub fn database_url(&self) -> String {
        self.database.as_ref().expect("the database is still attached").url.clone()
    }

    /// Stops the service and hands back its database, to start another instance on it.
    pub async fn stop(mut self) -> TestDatabase {
        self.app.take().unwrap().stop().await.unwrap();
        self.database.take().unwrap()
    }

    /// The signature headers for `body` under id `id`, signed with the first secret now.
    pub fn sign(&self, id: &str, body: &[u8]) -> Vec<(&'static str, String)> {
        let ts = self.clock.now().timestamp();
        vec![
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", self.secret.sign(id, ts, body)),
        ]
    }

    /// POSTs raw bytes with the given headers.
    pub async fn post_raw(&self, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> reqwest::Response {
        let mut request = self.client.post(format!("{}{path}", self.url)).body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().await.unwrap()
    }

    /// POSTs a correctly signed JSON message to `path`.
    pub async fn post_signed(&self, path: &str, id: &str, message: &Value) -> reqwest::Response {
        let body = serde_json::to_vec(message).unwrap();
        let mut headers = self.sign(id, &body);
        headers.push(("content-type", "application/json".to_owned()));
        self.post_raw(path, &headers, body).await
    }

    /// POSTs a correctly signed event to `/webhooks` and returns the status.
    pub async fn send(&self, id: &str, message: &Value) -> u16 {
        self.post_signed("/webhooks", id, message).await.status().as_u16()
    }

    /// Sends an event that must be accepted.
    pub async fn deliver(&self, message: &Value) {
        let id = format!("msg_{}", hex(&rand_bytes()));
        let status = self.send(&id, message).await;
        assert_eq!(status, 204, "{message}");
    }

    /// Sends a signed star-menu message; it must be answered `200`. Returns the UI instruction.
    pub async fn act(&self, message: &Value) -> Value {
        let id = format!("msg_{}", hex(&rand_bytes()));
        self.act_as(&id, message).await
    }

    /// Like [`TestApp::act`], with a given `webhook-id`.
    pub async fn act_as(&self, id: &str, message: &Value) -> Value {
        self.act_at("/actions/send-portal-invitation", id, message).await
    }

    /// Sends a signed message of the "Customer Portal access" action; it must be answered `200`.
    pub async fn access(&self, message: &Value) -> Value {
        let id = format!("msg_{}", hex(&rand_bytes()));
        self.act_at("/actions/portal-access", &id, message).await
    }

    /// Sends a signed star-menu message to `path`; it must be answered `200`.
    pub async fn act_at(&self, path: &str, id: &str, message: &Value) -> Value {
        let response = self.post_signed(path, id, message).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The star menu click for `customer` of `shop_id`.
    pub async fn invoke(&self, shop_id: &str, customer: &Value) -> Value {
        self.act(&action_invoked(shop_id, customer, "int_click")).await
    }

    /// The dialog's submission with `channel`.
    pub async fn submit(&self, shop_id: &str, customer: &Value, interaction: &str, channel: &str) -> Value {
        self.act(&dialog_submitted(shop_id, customer, interaction, Some(channel))).await
    }

    /// GETs a path.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.url)).send().await.unwrap()
    }

    /// Runs a query (written to work on both databases) and returns its rows.
    pub async fn rows(&self, sql: &str) -> Vec<sea_orm::QueryResult> {
        self.db.conn().query_all_raw(sea_orm::Statement::from_string(self.db.backend(), sql)).await.unwrap()
    }

    /// One integer from a query such as `SELECT COUNT(*) …`.
    pub async fn count(&self, sql: &str) -> i64 {
        let rows = self.rows(sql).await;
        let row = rows.first().expect("one row");
        row.try_get_by_index::<i64>(0).unwrap()
    }

    /// Every message file written to the outbox folder (`<shop>/<customer>/<message>.eml|.sms`),
    /// sorted by path.
    pub fn outbox_files(&self) -> Vec<std::path::PathBuf> {
        fn walk(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path.extension().is_some_and(|e| e == "eml" || e == "sms") {
                    found.push(path);
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.outbox_dir, &mut found);
        found.sort();
        found
    }

    /// Moves the service's clock.
    pub fn advance(&self, by: TimeDelta) {
        self.clock.advance(by);
    }

    /// Waits (up to 10 s) until `check` holds.
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let done = poll(200, Duration::from_millis(50), || {
            let checked = check();
            async move { checked.await.then_some(()) }
        });
        done.await.unwrap_or_else(|| panic!("timed out waiting until {what}"));
    }
}

/// Calls `check` up to `attempts` times, `every` apart, until it gives a value; `None` if it never
/// does (the caller says what it was waiting for).
pub async fn poll<T, F, Fut>(attempts: u32, every: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..attempts {
        if let Some(value) = check().await {
            return Some(value);
        }
        tokio::time::sleep(every).await;
    }
    None
}

/// The `Set-Cookie` value starting with `prefix`; it must carry each of `attributes`.
pub fn cookie_with(set_cookies: Vec<String>, prefix: &str, attributes: &[&str]) -> String {
    let cookie = set_cookies
        .into_iter()
        .find(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} cookie"));
    for attribute in attributes {
        assert!(cookie.contains(attribute), "{attribute} missing from {cookie}");
    }
    cookie
}

/// The person who installs and removes the plugin in most tests.
pub const OWNER: Staff<'static> = Staff { id: "usr_1", name: "Owner" };
/// Anyone at the host, where who it is does not matter.
pub const SOMEONE: Staff<'static> = Staff { id: "u", name: "n" };
/// The staff member who clicks in the star menu.
pub const FRONT_DESK: Staff<'static> = Staff { id: "usr_9", name: "Sam (front desk)" };

/// The service's start time plus `seconds`: when a test's host sends a message.
pub fn at(seconds: i64) -> DateTime<Utc> {
    start_time() + TimeDelta::seconds(seconds)
}

/// The contract's example shop snapshot (gold, portal active), with a version.
pub fn shop(id: &str, version: i64) -> Value {
    Shop::example(id).snapshot(version)
}

/// An envelope of `type` for shop `shop_id` at the service's start time plus `seconds`.
pub fn envelope(event_type: &str, shop_id: &str, seconds: i64, data: Value) -> Value {
    host_messages::envelope(event_type, shop_id, at(seconds), data)
}

/// `plugin.installed` for the example shop, by [`OWNER`].
pub fn installed(shop_id: &str, version: i64) -> Value {
    host_messages::plugin_installed(&Shop::example(shop_id), version, OWNER, at(0))
}

/// `plugin.uninstalled` by `by`, `seconds` after the start.
pub fn uninstalled(shop_id: &str, by: Staff<'_>, seconds: i64) -> Value {
    host_messages::plugin_uninstalled(shop_id, by, at(seconds))
}

/// `shop.updated` with `snapshot`.
pub fn shop_updated(shop_id: &str, snapshot: Value) -> Value {
    host_messages::shop_updated(shop_id, snapshot, at(0))
}

/// `customer.updated` with the contract's example customer.
pub fn customer_updated(shop_id: &str, customer_id: &str, version: i64, email: &str) -> Value {
    let snapshot = Customer::example(customer_id, Some(email), Some("+61412345678")).snapshot(version);
    host_messages::customer_updated(shop_id, snapshot, at(0))
}

/// `customer.deleted` as of `version`.
pub fn customer_deleted(shop_id: &str, customer_id: &str, version: i64) -> Value {
    host_messages::customer_deleted(shop_id, customer_id, version, at(0))
}

/// The example customer's email (the portal username).
pub const EMAIL: &str = "jana@example.com";
pub const MOBILE: &str = "+61412345678";

/// The contract's example customer, with an email and a mobile.
pub fn jana() -> Value {
    customer("cus_456", Some(EMAIL), Some(MOBILE), 3)
}

/// The code of a star-menu answer: the message's, or the channel field error's.
pub fn code(answer: &Value) -> &str {
    answer["message"]["code"].as_str().or_else(|| answer["errors"]["channel"]["code"].as_str()).unwrap_or("")
}

/// The contract's example customer's snapshot, reachable as given.
pub fn customer(id: &str, email: Option<&str>, mobile: Option<&str>, version: i64) -> Value {
    Customer::example(id, email, mobile).snapshot(version)
}

fn star_menu<'a>(shop: &'a Shop, customer: &'a Value, interaction: &'a str) -> StarMenu<'a> {
    StarMenu { shop, shop_version: 1, customer, user: FRONT_DESK, interaction }
}

/// The star-menu click on `customer` of the example shop `shop_id`, by [`FRONT_DESK`].
pub fn action_invoked(shop_id: &str, customer: &Value, interaction: &str) -> Value {
    star_menu(&Shop::example(shop_id), customer, interaction).invoked(at(0))
}

/// The "Customer Portal access" click on `customer` of the example shop `shop_id`, by [`FRONT_DESK`].
pub fn access_invoked(shop_id: &str, customer: &Value, interaction: &str) -> Value {
    star_menu(&Shop::example(shop_id), customer, interaction).access_invoked(at(0))
}

/// The "Customer Portal access" submission choosing `choice`, by [`FRONT_DESK`].
pub fn access_submitted(shop_id: &str, customer: &Value, interaction: &str, choice: Option<&str>) -> Value {
    star_menu(&Shop::example(shop_id), customer, interaction).access_submitted(choice, at(0))
}

/// The dialog's submission for `customer` of the example shop `shop_id`, by [`FRONT_DESK`].
pub fn dialog_submitted(shop_id: &str, customer: &Value, interaction: &str, channel: Option<&str>) -> Value {
    star_menu(&Shop::example(shop_id), customer, interaction).submitted(channel, at(0))
}

/// Declares each scenario twice: once on SQLite, once on PostgreSQL (skipped, with a note, when
/// `PORTAL_TEST_POSTGRES_URL` is not set).
#[macro_export]
macro_rules! on_both_databases {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let app = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Sqlite).await.unwrap();
                    super::$scenario(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    match $crate::helpers::TestApp::spawn($crate::helpers::Backend::Postgres).await {
                        Some(app) => super::$scenario(app).await,
                        None => eprintln!("skipped: set PORTAL_TEST_POSTGRES_URL to run this on PostgreSQL"),
                    }
                }
            )*
        }
    };
}

/// Like [`on_both_databases!`], for scenarios that build their own service from a [`Backend`] (to give
/// it an SMTP server or an SMS gateway). A scenario returns early when its backend is unavailable.
#[macro_export]
macro_rules! with_each_backend {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario($crate::helpers::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    if $crate::helpers::postgres_admin_url().is_none() {
                        eprintln!("skipped: set PORTAL_TEST_POSTGRES_URL to run this on PostgreSQL");
                        return;
                    }
                    super::$scenario($crate::helpers::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// The service with a real SMTP server and the fake SMS gateway.
pub struct Stack {
    /// The service.
    pub app: TestApp,
    /// The SMTP server it sends through.
    pub smtp: crate::smtp::SmtpSink,
    /// The SMS gateway it sends through.
    pub sms: crate::sms_gateway::FakeGateway,
}

impl Stack {
    /// Starts all three, with a gold shop `shop_1` installed.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, Vec::new()).await
    }

    /// Like [`Stack::start`], with extra settings (`PORTAL_…` names).
    pub async fn start_with(backend: Backend, settings: Vec<(&str, &str)>) -> Self {
        let smtp = crate::smtp::SmtpSink::start().await;
        let sms = crate::sms_gateway::FakeGateway::start().await;
        let mut env = sms.settings();
        env.push(("PORTAL_SMTP_URL".into(), smtp.url()));
        env.extend(settings.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
        let app = TestApp::spawn_with(backend, Options { env, ..Options::default() })
            .await
            .expect("backend available");
        app.deliver(&installed("shop_1", 1)).await;
        Self { app, smtp, sms }
    }
}
