//! The operator's view: with `PORTAL_METRICS_LISTEN` set, a whole story (install, an invitation by
//! email, the password set from its link, a login, a repeated and a refused webhook) shows in the
//! Prometheus exposition with exactly the figures that happened, and only on the metrics listener.
//!
//! The `metrics` crate has one recorder per process and these tests share one process, so the
//! service runs here as a child process of its own (the real binary): its counts are this story's
//! alone, whatever other tests run meanwhile.

use std::{collections::BTreeMap, process::Stdio, time::Duration};

use portal_invites::signature::WebhookSecret;
use sea_orm::ConnectionTrait;

use crate::{helpers::*, web::*};

#[tokio::test]
async fn the_metrics_count_a_whole_story_on_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_metrics_count_a_whole_story_on_postgres() {
    story(Backend::Postgres).await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The service as a child process, and a [`TestApp`] that talks to it.
async fn start(backend: Backend) -> Option<(TestApp, tokio::process::Child, String)> {
    let database = TestDatabase::create(backend).await?;
    // The service installs this when it starts in the test process; here it starts in another.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (port, metrics_port) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{port}");
    let secret = WebhookSecret::generate();
    let outbox = tempfile::tempdir().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal-invites"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PORTAL_")) {
        command.env_remove(key);
    }
    let child = command
        .arg("serve")
        .env("PORTAL_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTAL_PUBLIC_URL", &url)
        .env("PORTAL_DATABASE_URL", &database.url)
        .env("PORTAL_WEBHOOK_SECRETS", &secret)
        .env("PORTAL_OUTBOX_DIR", outbox.path())
        .env("PORTAL_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
        .stdout(log.reopen().unwrap())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let ready = poll(300, Duration::from_millis(100), || {
        let request = client.get(format!("{url}/readyz")).send();
        async move { request.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
    })
    .await;
    assert!(ready.is_some(), "the service did not start:\n{}", std::fs::read_to_string(log.path()).unwrap());
    let app = TestApp::attach(database, url, secret, outbox).await;
    Some((app, child, format!("http://127.0.0.1:{metrics_port}/metrics")))
}

async fn story(backend: Backend) {
    let Some((app, _child, metrics_url)) = start(backend).await else { return };

    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    set_up(&app, &link).await;
    let mut web = Web::new(&app);
    let login = web.submit("/p/shop_1/login", &[("email", EMAIL), ("password", PASSWORD)]).await;
    assert_eq!(login.status, 303, "{}", login.body);
    // A new version, the same message again, and an older version.
    assert_eq!(app.send("msg_update", &customer_updated("shop_1", "cus_1", 2, EMAIL)).await, 204);
    assert_eq!(app.send("msg_update", &customer_updated("shop_1", "cus_1", 2, EMAIL)).await, 204);
    assert_eq!(app.send("msg_older", &customer_updated("shop_1", "cus_1", 1, EMAIL)).await, 204);
    let body = serde_json::to_vec(&customer_updated("shop_1", "cus_1", 3, EMAIL)).unwrap();
    let mut forged = app.sign("msg_forged", &body);
    let stranger = WebhookSecret::parse(&WebhookSecret::generate()).unwrap();
    forged[2].1 = stranger.sign("msg_forged", app.clock.now().timestamp(), &body);
    forged.push(("content-type", "application/json".to_owned()));
    let refused = app.post_raw("/webhooks", &forged, body).await.status().as_u16();
    assert_eq!(refused, 401);
    // A message waiting since 90 s ago, not due for a day: the outbox's gauges must show it.
    let now_ms = app.clock.now().timestamp_millis();
    app.db
        .conn()
        .execute_unprepared(&format!(
            "INSERT INTO outbox (id, shop_id, kind, channel, status, attempts, next_attempt_at, created_at) \
             VALUES ('msg_waiting', 'shop_1', 'password_reset', 'email', 'pending', 0, {}, {})",
            now_ms + 86_400_000,
            now_ms - 90_000
        ))
        .await
        .unwrap();

    assert_eq!(app.get("/metrics").await.status(), 404, "never on the public port");
    let text = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
    let scrape = Exposition::parse(&text);
    let count = |name: &str, labels: &[(&str, &str)]| scrape.value(name, labels);

    let webhook = |kind: &str, outcome: &str, reason: &str| {
        count("portal_webhooks_total", &[("type", kind), ("outcome", outcome), ("reason", reason)])
    };
    assert_eq!(webhook("plugin.installed", "applied", ""), 1.0, "{text}");
    assert_eq!(webhook("customer.updated", "applied", ""), 1.0, "{text}");
    assert_eq!(webhook("customer.updated", "duplicate", ""), 1.0, "{text}");
    assert_eq!(webhook("customer.updated", "stale", ""), 1.0, "{text}");
    assert_eq!(webhook("unverified", "rejected", "signature"), 1.0, "{text}");
    assert_eq!(count("portal_webhooks_total", &[]), 5.0, "nothing else counted: {text}");

    for (step, expected) in [("invited", 1.0), ("delivered", 1.0), ("activated", 1.0), ("failed", 0.0)] {
        assert_eq!(count("portal_invitation_funnel_total", &[("step", step)]), expected, "{step}: {text}");
    }
    let sent = [("channel", "email"), ("kind", "invitation"), ("outcome", "sent")];
    assert_eq!(count("portal_sends_total", &sent), 1.0, "{text}");
    assert_eq!(count("portal_sends_total", &[]), 1.0, "{text}");

    // One hash (the set-up), one check (the login); nobody refused, nobody still waiting.
    assert_eq!(count("portal_password_hashing_admissions_total", &[]), 2.0, "{text}");
    assert_eq!(count("portal_password_hashing_busy_total", &[]), 0.0, "{text}");
    assert_eq!(count("portal_password_hashing_admitted", &[]), 0.0, "{text}");
    assert_eq!(count("portal_password_hashing_wait_seconds_count", &[]), 2.0, "{text}");

    let requests = |route: &str, method: &str, status: &str| {
        count(
            "portal_http_request_duration_seconds_count",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(requests("/webhooks", "POST", "204"), 4.0, "{text}");
    assert_eq!(requests("/webhooks", "POST", "401"), 1.0, "{text}");
    assert_eq!(requests("/actions/send-portal-invitation", "POST", "200"), 1.0, "{text}");
    assert_eq!(requests("/p/:shop/setup/:token", "POST", "303"), 1.0, "{text}");
    assert_eq!(requests("/p/:shop/login", "POST", "303"), 1.0, "{text}");
    assert_eq!(requests("(unmatched)", "GET", "404"), 1.0, "the public /metrics: {text}");
    assert!(scrape.families.get("portal_http_request_duration_seconds").is_some_and(|t| t == "histogram"));
    assert!(
        scrape.samples.iter().all(|s| !s.labels.get("route").is_some_and(|r| r.contains("shop_1"))),
        "route patterns, never paths: {text}"
    );

    assert_eq!(count("portal_outbox_pending", &[]), 1.0, "{text}");
    let age = count("portal_outbox_oldest_pending_age_seconds", &[]);
    assert!((90.0..150.0).contains(&age), "{age}: {text}");

    if backend == Backend::Sqlite {
        let batches = count("portal_sqlite_write_batch_size_count", &[]);
        let commits = count("portal_sqlite_commit_seconds_count", &[]);
        assert!(batches >= 8.0 && commits >= 8.0 && commits <= batches, "{batches} {commits}: {text}");
        assert!(count("portal_sqlite_write_batch_size_sum", &[]) >= batches, "{text}");
    } else {
        assert!(!scrape.families.contains_key("portal_sqlite_commit_seconds"), "no SQLite writer: {text}");
    }

    let token = link.rsplit('/').next().unwrap();
    for secret in [EMAIL, "cus_1", "shop_1", token] {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }
}

/// One sample of the text exposition format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape: the samples and each family's declared type.
#[derive(Debug)]
struct Exposition {
    samples: Vec<Sample>,
    families: BTreeMap<String, String>,
}

impl Exposition {
    /// Parses the Prometheus text format (0.0.4), failing the test on any line it cannot read.
    fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        let mut families = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line: {line}"));
                families.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            samples.push(parse_sample(line));
        }
        for sample in &samples {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| sample.name.strip_suffix(suffix).filter(|f| families.contains_key(*f)))
                .unwrap_or(&sample.name);
            assert!(families.contains_key(family), "{} has no TYPE line", sample.name);
        }
        Self { samples, families }
    }

    /// The sum of the samples named `name` whose labels include `labels` (0 when there are none).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str).unwrap_or("") == *v))
            .map(|s| s.value)
            .sum()
    }
}

/// `name{label="value",…} value [timestamp]`, with `\\`, `\"` and `\n` escaped in label values.
fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}"));
    let name = line[..name_end].to_owned();
    assert!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name: {line}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let end = loop {
            while chars.next_if(|(_, c)| *c == ',' || *c == ' ').is_some() {}
            let Some(&(start, c)) = chars.peek() else { panic!("unclosed labels: {line}") };
            if c == '}' {
                break start + 1;
            }
            let mut key = String::new();
            while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=') {
                key.push(c);
            }
            assert!(chars.next().is_some_and(|(_, c)| c == '='), "no = in labels: {line}");
            assert!(chars.next().is_some_and(|(_, c)| c == '"'), "unquoted label value: {line}");
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        other => panic!("bad escape {other:?}: {line}"),
                    },
                    Some((_, c)) => value.push(c),
                    None => panic!("unclosed label value: {line}"),
                }
            }
            assert!(labels.insert(key.trim().to_owned(), value).is_none(), "a label twice: {line}");
        };
        rest = &inner[end..];
    }
    let mut fields = rest.split_whitespace();
    let value = match fields.next() {
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some(text) => text.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        None => panic!("no value: {line}"),
    };
    if let Some(timestamp) = fields.next() {
        timestamp.parse::<i64>().unwrap_or_else(|_| panic!("bad timestamp: {line}"));
    }
    assert!(fields.next().is_none(), "trailing text: {line}");
    Sample { name, labels, value }
}

#[test]
fn the_parser_reads_labels_escapes_and_histograms() {
    let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\\\\\n\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2 1700000000\n";
    let parsed = Exposition::parse(text);
    assert_eq!(parsed.value("a_total", &[("x", "1")]), 3.0);
    assert_eq!(parsed.samples[0].labels["y"], "q\"\\\n");
    assert_eq!(parsed.value("h_count", &[]), 2.0);
    assert_eq!(parsed.value("a_total", &[("x", "2")]), 0.0);
    assert!(std::panic::catch_unwind(|| Exposition::parse("b 1\n")).is_err(), "a sample without TYPE");
}
