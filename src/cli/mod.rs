//! The command line: `serve`, `demo`, `simulate`, `migrate`, `keys`, `audit`, `secret`,
//! `check-manifest`.
//!
//! Exit codes: 0 success, 1 a failure while running (database unreachable, port taken), 2 a missing
//! or malformed setting or argument (one line says which and what to do).

mod audit;
mod demo;
pub mod host_client;
pub mod host_messages;
mod probe;
mod service_manager;
mod simulate;
pub mod standin_portal;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{
    app::{App, StartError},
    clock::Clock,
    config::{SETTINGS, Settings},
    db::Database,
    manifest::{self, Manifest},
    signature::WebhookSecret,
    telemetry,
};

/// Customer Portal invitations for a workshop management platform.
///
/// Receives the host platform's signed webhooks, keeps each shop's customers in step, and (from the
/// star menu of a customer profile) invites customers to set up their portal login.
///
/// Settings come from PORTAL_* environment variables and, optionally, a TOML file given with
/// --config; the environment wins. `portal-invites serve --help` lists them all.
#[derive(Debug, Parser)]
#[command(name = "portal-invites", version, about, long_about)]
pub struct Cli {
    /// A TOML file of settings (keys are the setting names without PORTAL_, in lower case).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (applies pending database migrations first).
    #[command(after_long_help = settings_help())]
    Serve,
    /// Try the whole story with no setup: start the service on SQLite with email and SMS written to
    /// files, install a demo shop, invite a demo customer by email, and print the set-up link.
    Demo,
    /// Act as the host against a running instance: send one signed message and print the answer.
    Simulate(Box<simulate::SimulateArgs>),
    /// Apply pending database migrations, then list every migration and whether it is applied.
    Migrate {
        /// Only list the migrations; apply nothing.
        #[arg(long)]
        status: bool,
    },
    /// Print a shop's audit trail as JSON lines, oldest first.
    ///
    /// One line per event: `at` (RFC 3339, UTC), `shop_id`, `customer_id`, `event`; for a staff
    /// member's act `by` (`id`, `name`); `channel` and `reason` where the event has them. Events:
    /// invited, delivered, delivery_failed, password_set, logged_in, login_slowed, reset_requested,
    /// reset_completed, sessions_ended, invitation_cancelled, email_changed, customer_erased. No event
    /// holds an email address, a phone number, a token or a password. Reads the database named by
    /// PORTAL_DATABASE_URL (or --config) and changes nothing.
    #[command(after_long_help = AUDIT_EXAMPLES)]
    Audit(Box<audit::AuditArgs>),
    /// Print a fresh webhook signing secret (whsec_ + base64 of 32 random bytes).
    ///
    /// Use it for tests and local runs; in production the host creates the secret at registration.
    Secret,
    /// Manage the RSA keys ID tokens are signed with (generated on first start, kept in the database).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check that a running instance is ready: exit 0 when its /readyz answers 200, 1 otherwise.
    ///
    /// For health checks: systemd, a container's HEALTHCHECK, a load balancer's script. Reads
    /// PORTAL_LISTEN (or --url) to find the instance.
    Probe(probe::ProbeArgs),
    /// Check a plugin manifest against the host contract (default: the one built into this binary).
    CheckManifest {
        /// The manifest file to check instead of the built-in one.
        path: Option<PathBuf>,
    },
}

/// `portal-invites keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new signing key. Relying parties see it in the JWKS at once; it signs ID tokens from
    /// 5 minutes later (once their cached JWKS lists it); the key it replaces stays published until
    /// nothing it signed can still be valid. Running instances pick the change up by themselves.
    Rotate,
}

const AUDIT_EXAMPLES: &str = "Examples:
  portal-invites audit --shop shop_123
  portal-invites audit --shop shop_123 --customer cus_456 --since 2026-12-01
  portal-invites audit --shop shop_123 --since 2026-12-01T09:30:00+10:00 | jq -r .event

A line:
  {\"at\":\"2026-12-02T00:15:00.000Z\",\"shop_id\":\"shop_123\",\"customer_id\":\"cus_456\",\"event\":\"invited\",\"by\":{\"id\":\"usr_9\",\"name\":\"Sam\"},\"channel\":\"sms\"}";

fn settings_help() -> String {
    let mut text = String::from(
        "Settings (environment variables; the --config file takes the same names without PORTAL_, in lower case):\n",
    );
    for s in SETTINGS {
        let default = s.default.map(|d| format!(" [default: {d}]")).unwrap_or_default();
        text.push_str(&format!("  {:<28} {}{}\n", s.env, s.help, default));
    }
    text
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Secret => {
            println!("{}", WebhookSecret::generate());
            ExitCode::SUCCESS
        }
        Command::CheckManifest { path } => check_manifest(path),
        Command::Serve => with_runtime(serve(cli.config)),
        Command::Demo => match load_settings(cli.config) {
            Ok(settings) => with_runtime(demo::run(settings)),
            Err(code) => code,
        },
        Command::Simulate(args) => with_runtime(simulate::run(*args)),
        Command::Probe(args) => with_runtime(probe::run(args)),
        Command::Migrate { status } => with_runtime(migrate(cli.config, status)),
        Command::Keys(KeysCommand::Rotate) => with_runtime(rotate_keys(cli.config)),
        Command::Audit(args) => match load_settings(cli.config) {
            Ok(settings) => with_runtime(audit::run(settings, *args)),
            Err(code) => code,
        },
    }
}

fn with_runtime(work: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(work),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_settings(config: Option<PathBuf>) -> Result<Settings, ExitCode> {
    Settings::load(config.as_deref(), std::env::vars()).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

async fn serve(config: Option<PathBuf>) -> ExitCode {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let _log = telemetry::init(&settings.log_filter, settings.log_format);
    match App::start(settings, Clock::system()).await {
        Ok(app) => {
            let addr = app.local_addr();
            match app.run_until_signal_then(|| service_manager::ready(addr), service_manager::stopping).await
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: the server stopped: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e @ (StartError::Setting(_) | StartError::Delivery(_))) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: Option<PathBuf>, status_only: bool) -> ExitCode {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let url = settings.database_url;
    let db = match Database::connect(&url).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("error: cannot open the database at {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !status_only && let Err(e) = db.migrate().await {
        eprintln!("error: migrating {url} failed: {e}");
        return ExitCode::FAILURE;
    }
    match db.migration_status().await {
        Ok(list) => {
            println!("database: {url}");
            for (name, applied) in list {
                println!("  {}  {name}", if applied { "applied" } else { "pending" });
            }
            let _ = db.close().await;
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: reading the migration status of {url} failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn rotate_keys(config: Option<PathBuf>) -> ExitCode {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let url = settings.database_url;
    let db = match Database::connect(&url).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("error: cannot open the database at {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = db.migrate().await {
        eprintln!("error: migrating {url} failed: {e}");
        return ExitCode::FAILURE;
    }
    let clock = crate::clock::Clock::system();
    let rotated = async {
        let ring = crate::identity::KeyRing::open(db.clone(), clock.now()).await?;
        ring.rotate(clock.now()).await
    };
    let code = match rotated.await {
        Ok((kid, signs_from)) => {
            println!(
                "added signing key {kid}; it is published now and signs ID tokens from {}",
                signs_from.to_rfc3339()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: rotating the signing key failed: {e}");
            ExitCode::FAILURE
        }
    };
    let _ = db.close().await;
    code
}

fn check_manifest(path: Option<PathBuf>) -> ExitCode {
    let (name, text) = match &path {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => (path.display().to_string(), text),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => ("the built-in manifest".to_owned(), manifest::EMBEDDED.to_owned()),
    };
    match Manifest::parse(&text) {
        Ok(m) => {
            let signs_in = m.identity().map_or_else(
                || "signs no one in".to_owned(),
                |identity| {
                    format!("signs customers in with {} issuers at {}", identity.protocol, identity.issuer)
                },
            );
            println!(
                "{name} is valid: {} {} with {} event(s) and {} action(s); {signs_in}",
                m.plugin.key,
                m.plugin.version,
                m.webhooks.events.len(),
                m.actions().len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {name} would be rejected by the host: {e}");
            ExitCode::FAILURE
        }
    }
}
