//! Running the service as operators do: the `probe` health check, systemd's `Type=notify`
//! (READY, then STOPPING at SIGTERM), and the shipped unit file checked by systemd's own analyser.

use std::{os::unix::net::UnixDatagram, process::Output, time::Duration};

use crate::helpers::*;

crate::on_both_databases!(probe_exits_0_when_ready_and_1_with_the_reason_otherwise);

fn binary() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_portal-invites"))
}

/// Runs `probe` without blocking the test's runtime (the service under test may run on it).
async fn probe(url: &str) -> Output {
    let mut command = tokio::process::Command::from(binary());
    command
        .args(["probe", "--url", url, "--timeout", "2"])
        .env_remove("PORTAL_LISTEN")
        .output()
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn probe_exits_0_when_ready_and_1_with_the_reason_otherwise(app: TestApp) {
    let ready = probe(&app.url).await;
    assert!(ready.status.success(), "{}", text(&ready.stderr));
    assert!(text(&ready.stdout).contains("answered 200"));

    // Shutting down: /readyz answers 503 while requests are still served.
    app.announce_shutdown();
    let stopping = probe(&app.url).await;
    assert_eq!(stopping.status.code(), Some(1));
    assert!(text(&stopping.stderr).contains("503"), "{}", text(&stopping.stderr));

    // Nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nobody = probe(&format!("http://127.0.0.1:{port}")).await;
    assert_eq!(nobody.status.code(), Some(1));
    assert!(text(&nobody.stderr).contains("cannot connect"), "{}", text(&nobody.stderr));
}

/// Waits for the next notification on `socket`.
async fn next_notification(socket: &UnixDatagram) -> String {
    for _ in 0..300 {
        let mut buffer = [0u8; 4096];
        match socket.recv(&mut buffer) {
            Ok(n) => return text(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("reading the notify socket: {e}"),
        }
    }
    panic!("no notification within 15 s")
}

#[tokio::test]
async fn under_systemd_the_service_says_ready_once_serving_and_stopping_at_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal-invites"))
        .arg("serve")
        .env_clear()
        .env("NOTIFY_SOCKET", &socket_path)
        .env("PORTAL_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTAL_PUBLIC_URL", &base)
        .env("PORTAL_DATABASE_URL", format!("sqlite://{}/portal.db?mode=rwc", dir.path().display()))
        .env("PORTAL_OUTBOX_DIR", dir.path().join("outbox"))
        .env("PORTAL_WEBHOOK_SECRETS", portal_invites::signature::WebhookSecret::generate())
        .env("PORTAL_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let ready = next_notification(&socket).await;
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.contains(&format!("STATUS=serving on 127.0.0.1:{port}")), "{ready}");
    // READY means serving: the probe agrees at once.
    assert!(probe(&base).await.status.success());

    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let stopping = next_notification(&socket).await;
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    let exited = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(exited.success(), "{exited}");
}

/// `systemd-analyze`, or why it is missing (CI requires it: `PORTAL_TEST_REQUIRE_SYSTEMD=1`).
fn systemd_analyze() -> Option<std::process::Command> {
    let found = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var("PORTAL_TEST_REQUIRE_SYSTEMD").is_ok_and(|v| v == "1") {
        panic!("PORTAL_TEST_REQUIRE_SYSTEMD=1 but systemd-analyze is not installed (apt install systemd)");
    }
    found.then(|| std::process::Command::new("systemd-analyze"))
}

#[test]
fn the_shipped_unit_passes_systemd_analyze_and_is_hardened() {
    let Some(_) = systemd_analyze() else {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/portal-invites.service"))
        .unwrap();
    // The unit names the installed binary; the analyser checks that it exists, so point it here.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal-invites.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/portal-invites", env!("CARGO_BIN_EXE_portal-invites")),
    )
    .unwrap();
    for directive in [
        "Type=notify",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=portal-invites",
        "EnvironmentFile=",
    ] {
        assert!(unit.contains(directive), "{directive} missing");
    }

    let verified = systemd_analyze().unwrap().arg("verify").arg(&path).output().unwrap();
    // The analyser exits 0 on a value it cannot parse and only says so: any word from it is a fault.
    assert!(
        verified.status.success() && verified.stderr.is_empty() && verified.stdout.is_empty(),
        "{}{}",
        text(&verified.stdout),
        text(&verified.stderr)
    );

    // Its exposure score (0 best, 10 worst) stays under 2.
    let security = systemd_analyze()
        .unwrap()
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(security.status.success(), "{}", text(&security.stdout));
}
