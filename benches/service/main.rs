//! `cargo bench --bench service [-- --database postgres://…]`: measures the service against the ceiling
//! of the same machine in the same run, and writes `BENCHMARKS.md`.
//!
//! It starts everything it needs on 127.0.0.1 (the release `portal-invites serve`, a bare poem server
//! for the ceiling, an SMTP server), runs each scenario for a fixed time at a fixed concurrency after
//! a warm-up, stops by itself, and sends traffic nowhere else.

mod load;
mod process;
mod report;
mod rows;
mod scenarios;
#[path = "../../tests/integration/smtp.rs"]
#[allow(dead_code)]
mod smtp;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use argon2::{Algorithm, Argon2, Params, Version};
use hdrhistogram::Histogram;
use portal_invites::{accounts::hasher, signature::WebhookSecret};
use process::{RssPeak, Server, free_addr};
use report::{Report, Row};
use scenarios::Target;

struct Options {
    database: Option<String>,
    warmup: Duration,
    duration: Duration,
    concurrency: usize,
    output: PathBuf,
    /// Only these scenarios (for profiling one); `None` runs them all.
    only: Option<Vec<String>>,
    /// Whether `--output` was given (a partial run with `--only` writes only where told).
    output_set: bool,
}

impl Options {
    fn runs(&self, scenario: &str) -> bool {
        self.only.as_ref().is_none_or(|only| only.iter().any(|o| o == scenario))
    }
}

fn options() -> Options {
    let mut options = Options {
        database: None,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(8),
        concurrency: 64,
        output: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md"),
        only: None,
        output_set: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--database" => options.database = Some(value()),
            "--warmup" => options.warmup = Duration::from_secs(value().parse().expect("seconds")),
            "--duration" => options.duration = Duration::from_secs(value().parse().expect("seconds")),
            "--concurrency" => options.concurrency = value().parse().expect("a number"),
            "--output" => {
                options.output = PathBuf::from(value());
                options.output_set = true;
            }
            "--only" => options.only = Some(value().split(',').map(str::to_owned).collect()),
            // Cargo passes --bench to harness-less benchmarks.
            "--bench" => {}
            other => panic!(
                "unknown option {other}; use --database postgres://…, --warmup S, --duration S, --concurrency N, --output FILE, \
                 --only SCENARIO,… (webhook-intake, webhook-intake-sequential, webhook-replay, two-instances, \
                 invite-e2e, login, login-overload, pages, sign-in)"
            ),
        }
    }
    options
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("ceiling-server") {
        process::serve_ceiling(&args[2]);
    }
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run(options));
}

fn say(text: &str) {
    eprintln!("[bench] {text}");
}

struct Under<'a> {
    addrs: &'a [std::net::SocketAddr],
    watched: &'a load::Watched,
}

async fn measure(
    name: &str,
    under: Under<'_>,
    concurrency: usize,
    options: &Options,
    setup: Option<load::Setup>,
    operation: load::Operation,
) -> (load::Stats, u64) {
    say(&format!(
        "{name}: {concurrency} workers, {} s warm-up, {} s measured",
        options.warmup.as_secs(),
        options.duration.as_secs()
    ));
    let peak = RssPeak::start(under.watched.service[0]);
    let stats = load::run(
        under.addrs,
        under.watched,
        concurrency,
        options.warmup,
        options.duration,
        setup,
        operation,
    )
    .await;
    let rss = peak.stop();
    let cpu = stats.cpu.map_or(String::new(), |cpu| {
        format!(
            ", CPU per 1,000: service {:.3} s, database {:.3} s",
            cpu.service / stats.ok.max(1) as f64 * 1000.0,
            cpu.database / stats.ok.max(1) as f64 * 1000.0
        )
    });
    say(&format!(
        "{name}: {:.0}/s, p99 {:.2} ms, {} errors, {} shed, peak RSS {:.0} MiB{cpu}",
        stats.throughput(),
        stats.latency.value_at_quantile(0.99) as f64 / 1000.0,
        stats.failed,
        stats.shed,
        rss as f64 / 1024.0
    ));
    (stats, rss)
}

/// Seconds one argon2id hash takes on one core here: the median of nine, after a warm-up, into a
/// reused memory buffer, which is how the service hashes (so page faults of a fresh 19 MiB
/// allocation do not make the ceiling look lower than it is).
fn one_hash() -> f64 {
    let params = Params::new(hasher::MEMORY_KIB, hasher::PASSES, hasher::LANES, None).unwrap();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut memory = vec![argon2::Block::default(); params.block_count()];
    let mut out = [0u8; 32];
    let mut hash = || {
        let began = Instant::now();
        argon2
            .hash_password_into_with_memory(
                b"correct horse battery staple",
                b"bench-salt-16byt",
                &mut out,
                &mut memory,
            )
            .unwrap();
        began.elapsed().as_secs_f64()
    };
    hash();
    let mut times: Vec<f64> = (0..9).map(|_| hash()).collect();
    times.sort_by(f64::total_cmp);
    times[4]
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// A scenario's row, judged once the whole run is in (the ceiling is measured at both ends).
struct Judged {
    row: Row,
    target: String,
    met: Box<dyn FnOnce(f64) -> bool>,
}

impl Judged {
    fn new(row: Row, target: impl Into<String>, met: impl FnOnce(f64) -> bool + 'static) -> Self {
        Self { row, target: target.into(), met: Box::new(met) }
    }
}

/// The ceiling: the same load generator against a bare poem route in a process of its own.
async fn ceiling(label: &str, concurrency: usize, options: &Options) -> (load::Stats, u64) {
    let addr = free_addr();
    let me = std::env::current_exe().unwrap();
    let server =
        Server::start(me.to_str().unwrap(), &["ceiling-server", &addr.to_string()], &[], addr, "/").await;
    let watched = load::Watched { service: vec![server.pid()], postgres: false };
    let under = Under { addrs: &[addr], watched: &watched };
    let measured = measure(label, under, concurrency, options, None, scenarios::bare()).await;
    server.stop().await;
    measured
}

async fn run(options: Options) {
    let began = Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let concurrency = options.concurrency;
    let (ceiling_first, ceiling_first_rss) = ceiling("ceiling", concurrency, &options).await;

    // The service, with its own database and a real SMTP server.
    let smtp = smtp::SmtpSink::start().await;
    let work = tempfile::tempdir().unwrap();
    let (database_url, database_label, postgres) = match &options.database {
        None => (format!("sqlite://{}/bench.db?mode=rwc", work.path().display()), "SQLite".to_owned(), None),
        Some(admin) => {
            let name = format!("portal_bench_{}", std::process::id());
            let conn = sea_orm::Database::connect(admin).await.expect("the PostgreSQL server answers");
            sea_orm::ConnectionTrait::execute_unprepared(&conn, &format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let mut url = url::Url::parse(admin).unwrap();
            url.set_path(&format!("/{name}"));
            (url.to_string(), "PostgreSQL".to_owned(), Some((conn, name)))
        }
    };
    let secret = WebhookSecret::generate();
    let addr = free_addr();
    let env = vec![
        ("PORTAL_LISTEN".to_owned(), addr.to_string()),
        ("PORTAL_PUBLIC_URL".to_owned(), format!("http://{addr}")),
        ("PORTAL_DATABASE_URL".to_owned(), database_url.clone()),
        ("PORTAL_WEBHOOK_SECRETS".to_owned(), secret.clone()),
        ("PORTAL_SMTP_URL".to_owned(), smtp.url()),
        ("PORTAL_OUTBOX_DIR".to_owned(), work.path().join("outbox").display().to_string()),
    ];
    let service =
        Server::start(env!("CARGO_BIN_EXE_portal-invites"), &["serve"], &env, addr, "/healthz").await;
    let target = Target {
        addr,
        secret: Arc::new(WebhookSecret::parse(&secret).unwrap()),
        run: format!("r{}", std::process::id()),
    };
    scenarios::install(&target).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = service.rss_kib();
    say(&format!("service idle: {:.0} MiB", idle_rss as f64 / 1024.0));
    let watched = load::Watched { service: vec![service.pid()], postgres: postgres.is_some() };
    let one = || Under { addrs: std::slice::from_ref(&addr), watched: &watched };
    let checker =
        sea_orm::Database::connect(database_url.as_str()).await.expect("the bench reads the database");

    let mut judged = Vec::new();
    let mut notes = Vec::new();
    let mut everything: Vec<scenarios::SentMessage> = Vec::new();

    let sent: scenarios::Sent = Arc::default();
    if options.runs("webhook-intake") {
        let intake = scenarios::webhook_intake(&target, sent.clone(), scenarios::Ids::Random, 0);
        let (stats, rss) = measure("webhook-intake", one(), concurrency, &options, None, intake).await;
        let count = counted(&checker, &sent, &mut everything, &mut notes, "webhook-intake").await;
        let (rate, p99, failed) = (stats.throughput(), p99_ms(&stats), stats.failed);
        judged.push(Judged::new(
            Row::new("webhook-intake (random ids, as a host sends)", concurrency, "req/s", &stats, rss),
            "≥ 25 % of ceiling, p99 < 20 ms, rows exact",
            move |ceiling| rate / ceiling >= 0.25 && p99 < 20.0 && failed == 0 && count,
        ));
    }
    if options.runs("webhook-intake-sequential") {
        let later: scenarios::Sent = Arc::default();
        let intake = scenarios::webhook_intake(&target, later.clone(), scenarios::Ids::Sequential, 1 << 32);
        let (stats, rss) =
            measure("webhook-intake-sequential", one(), concurrency, &options, None, intake).await;
        let count = counted(&checker, &later, &mut everything, &mut notes, "webhook-intake-sequential").await;
        let failed = stats.failed;
        judged.push(Judged::new(
            Row::new(
                "webhook-intake (sequential ids: flatters the index)",
                concurrency,
                "req/s",
                &stats,
                rss,
            ),
            "for comparison only; rows exact",
            move |_| failed == 0 && count,
        ));
    }

    if options.runs("webhook-replay") && !sent.lock().unwrap().is_empty() {
        let replay = scenarios::webhook_replay(&target, sent.clone());
        let (stats, rss) = measure("webhook-replay", one(), concurrency, &options, None, replay).await;
        let (rate, failed) = (stats.throughput(), stats.failed);
        judged.push(Judged::new(
            Row::new("webhook-replay", concurrency, "req/s", &stats, rss),
            "≥ 50 % of ceiling",
            move |ceiling| rate / ceiling >= 0.5 && failed == 0,
        ));
    }

    if options.runs("two-instances")
        && let Some(single) = judged.first().map(|j| j.row.throughput)
        && postgres.is_some()
    {
        let (row, note) = two_instances(&env, &target, &checker, &mut everything, single, &options).await;
        judged.push(row);
        notes.push(note);
    }

    let submitted: scenarios::Submitted = Arc::new(Mutex::new(HashMap::new()));
    let before = smtp.received().len();
    let invite_workers = concurrency.min(32);
    let invite = scenarios::invite(&target, submitted.clone());
    if options.runs("invite-e2e") {
        let (stats, rss) = measure("invite-e2e", one(), invite_workers, &options, None, invite).await;
        let (rate, failed) = (stats.throughput(), stats.failed);
        judged.push(Judged::new(
            Row::new("invite-e2e (click + submit)", invite_workers, "inv/s", &stats, rss),
            "≥ 300 inv/s",
            move |_| rate >= 300.0 && failed == 0,
        ));
        tokio::time::sleep(Duration::from_secs(2)).await;
        notes.push(acceptance_note(&smtp, before, &submitted));
    }

    // Logins need an account with a password: invite one customer and set it up from the email.
    let login_email = "login@bench.example";
    let password = "blue tractor seven";
    scenarios::invite_one(&target, login_email).await;
    let setup_path = setup_link(&smtp, login_email).await;
    scenarios::set_password(addr, &setup_path, password).await;
    let hashing_limit = cores;
    let at_bound = hashing_limit * 2;
    let hash_before = one_hash();
    let login = scenarios::login(login_email, password);
    let setup = Some(scenarios::login_setup());
    let mut argon2_ceiling = cores as f64 / hash_before;
    if options.runs("login") {
        let (stats, rss) = measure("login", one(), at_bound, &options, setup, login).await;
        // The faster of two measurements either side of the run: the higher ceiling, never a flattering one.
        let hash_seconds = hash_before.min(one_hash());
        argon2_ceiling = cores as f64 / hash_seconds;
        let ratio = stats.throughput() / argon2_ceiling * 100.0;
        let (p99, failed) = (p99_ms(&stats), stats.failed);
        judged.push(Judged::new(
            Row::new("login (at the hashing bound)", at_bound, "logins/s", &stats, rss),
            format!("≥ 85 % of argon2 ceiling ({argon2_ceiling:.0}/s), p99 < 1 s"),
            move |_| ratio >= 85.0 && p99 < 1000.0 && failed == 0,
        ));
        notes.push(format!(
        "login: one argon2id hash (m=19456 KiB, t=2, p=1) takes {:.1} ms on one core here (the faster of a \
         measurement just before and just after the run), so the ceiling is {cores} cores ÷ {:.1} ms = \
         {argon2_ceiling:.0} logins/s; at the bound the service reached {:.0}/s = {ratio:.0} % of it.",
        hash_seconds * 1000.0,
        hash_seconds * 1000.0,
        stats.throughput()
    ));
    }
    if options.runs("login-overload") {
        let rss_before_flood = service.rss_kib();
        let flood = hashing_limit * 10;
        let login = scenarios::login(login_email, password);
        let setup = Some(scenarios::login_setup());
        let (stats, rss) = measure("login-overload", one(), flood, &options, setup, login).await;
        let max_ms = stats.latency.max() as f64 / 1000.0;
        let failed = stats.failed;
        judged.push(Judged::new(
            Row::new("login (10× the bound: overload)", flood, "logins/s", &stats, rss),
            "no wait > 2 s, fast 503s, flat memory",
            move |_| max_ms <= 2000.0 && failed == 0,
        ));
        notes.push(format!(
        "login overload: {flood} concurrent logins against a bound of {hashing_limit}: {:.0} succeeded per second \
         ({:.0} % of the argon2 ceiling), {} were turned away with 503 + Retry-After, the longest request took \
         {max_ms:.0} ms; RSS {:.0} MiB before, peak {:.0} MiB during.",
        stats.throughput(),
        stats.throughput() / argon2_ceiling * 100.0,
        stats.shed,
        rss_before_flood as f64 / 1024.0,
        rss as f64 / 1024.0
    ));
    }

    if options.runs("pages") {
        let (stats, rss) = measure("pages", one(), concurrency, &options, None, scenarios::page()).await;
        let (rate, failed) = (stats.throughput(), stats.failed);
        judged.push(Judged::new(
            Row::new("pages (GET login page)", concurrency, "req/s", &stats, rss),
            "≥ 50 % of ceiling",
            move |ceiling| rate / ceiling >= 0.5 && failed == 0,
        ));
    }

    // Signing in to the host's portal (contract §8) with a live session: authorize, then the token
    // exchange. Two requests per sign-in, one RS256 signature, three writes (code, redemption).
    scenarios::register_portal(&target).await;
    let client_id =
        portal_invites::manifest::Manifest::parse(portal_invites::manifest::EMBEDDED).unwrap().plugin.key;
    let setup = Some(scenarios::sign_in_setup(login_email, password));
    let sign_in = scenarios::sign_in(&client_id, &secret);
    if options.runs("sign-in") {
        let (stats, rss) = measure("sign-in", one(), concurrency, &options, setup, sign_in).await;
        let failed = stats.failed;
        judged.push(Judged::new(
            Row::new("sign-in (authorize + token, live session)", concurrency, "sign-ins/s", &stats, rss),
            "no errors (2 requests per sign-in; no target set yet)",
            move |_| failed == 0,
        ));
        notes.push(format!(
        "sign-in: {:.0} sign-ins/s ({:.0} requests/s), p99 {:.1} ms. Each is an authorization request answered with a code (a session read, an insert) and a token exchange (client check, one conditional UPDATE, an RS256 signature with a 2048-bit key).",
        stats.throughput(),
        stats.throughput() * 2.0,
        p99_ms(&stats)
    ));
    }
    service.stop().await;
    let _ = checker.close().await;
    if let Some((conn, name)) = postgres {
        let _ = sea_orm::ConnectionTrait::execute_unprepared(
            &conn,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await;
    }

    // The machine's speed drifts (shared cloud cores): the ceiling is measured again at the end, and
    // every ratio is taken against the higher of the two.
    let (ceiling_last, ceiling_last_rss) = ceiling("ceiling-again", concurrency, &options).await;
    let ceiling_rate = ceiling_first.throughput().max(ceiling_last.throughput());
    let mut rows = vec![
        Row::new("ceiling (bare poem route), first", concurrency, "req/s", &ceiling_first, ceiling_first_rss),
        Row::new("ceiling (bare poem route), last", concurrency, "req/s", &ceiling_last, ceiling_last_rss),
    ];
    let worst = judged.iter().map(|j| j.row.rss_mib).fold(0.0, f64::max);
    rows.extend(judged.into_iter().map(|j| j.row.target(j.target, (j.met)(ceiling_rate))));
    notes.insert(
        0,
        format!(
            "Ratios are to the higher ceiling ({ceiling_rate:.0} req/s); the two measurements differ by {:.0} %, the \
             drift of this machine over the run.",
            (ceiling_first.throughput() - ceiling_last.throughput()).abs() / ceiling_rate * 100.0
        ),
    );
    notes.insert(
        1,
        format!(
            "Service RSS: {:.0} MiB idle (target < 60 MiB: {}), at most {worst:.0} MiB in any scenario (target < 250 MiB: {}).",
            idle_rss as f64 / 1024.0,
            if (idle_rss as f64) / 1024.0 < 60.0 { "met" } else { "**not met**" },
            if worst < 250.0 { "met" } else { "**not met**" }
        ),
    );
    notes.push(format!("The whole run took {:.0} s.", began.elapsed().as_secs_f64()));

    let report = Report {
        database: database_label,
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        cores,
        cpu: cpu_model(),
        warmup: options.warmup.as_secs(),
        duration: options.duration.as_secs(),
        ceiling: ceiling_rate,
        rows,
        notes,
    };
    println!("{}", report.section());
    if options.only.is_none() || options.output_set {
        report.write(&options.output).expect("BENCHMARKS.md is writable");
        say(&format!("written to {}", options.output.display()));
    }
}

/// Counts the rows a scenario left (see `rows.rs`), notes what it found, and says whether it is exact.
async fn counted(
    checker: &sea_orm::DatabaseConnection,
    sent: &scenarios::Sent,
    everything: &mut Vec<scenarios::SentMessage>,
    notes: &mut Vec<String>,
    scenario: &str,
) -> bool {
    let mine = sent.lock().unwrap().clone();
    everything.extend(mine.iter().cloned());
    let count = rows::count(checker, &mine, everything).await;
    say(&format!("{scenario}: {}", count.describe()));
    notes.push(format!("{scenario}: {}.", count.describe()));
    count.exact()
}

/// Two instances on one PostgreSQL database, the workers split between them, and every
/// [`scenarios::TWIN_EVERY`]th message sent to both at the same moment. Afterwards the rows are
/// counted, and both instances' own counts (their metrics) must add up to each message applied once.
async fn two_instances(
    env: &[(String, String)],
    target: &Target,
    checker: &sea_orm::DatabaseConnection,
    everything: &mut Vec<scenarios::SentMessage>,
    single: f64,
    options: &Options,
) -> (Judged, String) {
    let mut servers = Vec::new();
    for _ in 0..2 {
        let (addr, metrics) = (free_addr(), free_addr());
        let mut env: Vec<(String, String)> =
            env.iter().filter(|(k, _)| k != "PORTAL_LISTEN" && k != "PORTAL_PUBLIC_URL").cloned().collect();
        env.push(("PORTAL_LISTEN".into(), addr.to_string()));
        env.push(("PORTAL_PUBLIC_URL".into(), format!("http://{addr}")));
        env.push(("PORTAL_METRICS_LISTEN".into(), metrics.to_string()));
        let server =
            Server::start(env!("CARGO_BIN_EXE_portal-invites"), &["serve"], &env, addr, "/healthz").await;
        servers.push((server, addr, metrics));
    }
    let addrs = [servers[0].1, servers[1].1];
    let watched =
        load::Watched { service: servers.iter().map(|(s, _, _)| s.pid()).collect(), postgres: true };
    let sent: scenarios::Sent = Arc::default();
    let intake = scenarios::webhook_intake(target, sent.clone(), scenarios::Ids::Random, 2 << 32);
    let under = Under { addrs: &addrs, watched: &watched };
    let setup = Some(scenarios::twin_setup(addrs));
    let concurrency = options.concurrency;
    let (stats, rss) = measure("two-instances", under, concurrency, options, setup, intake).await;
    let mine = sent.lock().unwrap().clone();
    everything.extend(mine.iter().cloned());
    let count = rows::count(checker, &mine, everything).await;
    let mut outcomes: HashMap<String, u64> = HashMap::new();
    for (_, _, metrics) in &servers {
        for (outcome, n) in rows::webhook_outcomes(*metrics).await {
            *outcomes.entry(outcome).or_default() += n;
        }
    }
    for (server, _, _) in servers {
        server.stop().await;
    }
    let applied =
        ["applied", "stale", "ignored"].iter().map(|o| outcomes.get(*o).copied().unwrap_or(0)).sum::<u64>();
    let repeats = outcomes.get("duplicate").copied().unwrap_or(0);
    let twins = mine.iter().filter(|m| m.twinned).count() as u64;
    let once = applied == count.answered as u64 && repeats == twins;
    let note = format!(
        "two-instances: {}; the two instances applied {applied} messages between them ({} stale) and answered {repeats} as repeats, for {} distinct messages of which {twins} were sent to both at once: {}.",
        count.describe(),
        outcomes.get("stale").copied().unwrap_or(0),
        count.answered,
        if once { "each applied exactly once" } else { "**not exactly once**" }
    );
    say(&note);
    let (rate, p99, failed, exact) = (stats.throughput(), p99_ms(&stats), stats.failed, count.exact());
    let row = Row::new("webhook-intake, two instances on one PostgreSQL", concurrency, "req/s", &stats, rss);
    let judged = Judged::new(
        row,
        format!("more than one instance ({single:.0}/s), p99 < 20 ms, each message applied once"),
        move |_| rate > single && p99 < 20.0 && failed == 0 && exact && once,
    );
    (judged, note)
}

fn p99_ms(stats: &load::Stats) -> f64 {
    stats.latency.value_at_quantile(0.99) as f64 / 1000.0
}

/// How long each invitation took from the dialog's submission to the SMTP server's acceptance.
fn acceptance_note(smtp: &smtp::SmtpSink, before: usize, submitted: &scenarios::Submitted) -> String {
    let starts = submitted.lock().unwrap().clone();
    let mut acceptance = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap();
    for message in smtp.received().iter().skip(before) {
        if let Some(start) = message.to.first().and_then(|to| starts.get(to)) {
            let _ = acceptance.record(message.at.saturating_duration_since(*start).as_micros().max(1) as u64);
        }
    }
    format!(
        "invite-e2e: {} invitations accepted by the SMTP server; submission → acceptance p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms.",
        acceptance.len(),
        acceptance.value_at_quantile(0.5) as f64 / 1000.0,
        acceptance.value_at_quantile(0.99) as f64 / 1000.0,
        acceptance.max() as f64 / 1000.0
    )
}

/// The set-up link in the invitation email to `email`.
async fn setup_link(smtp: &smtp::SmtpSink, email: &str) -> String {
    for _ in 0..100 {
        for message in smtp.received().iter().rev() {
            if message.to.iter().any(|t| t == email) {
                let parsed = mail_parser::MessageParser::default().parse(&message.data).unwrap();
                let text = parsed.body_text(0).unwrap().into_owned();
                let marker = format!("/p/{}/setup/", scenarios::SHOP);
                let start = text.find(&marker).expect("a set-up link");
                return text[start..].split_whitespace().next().unwrap().to_owned();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the login customer's invitation never arrived");
}
