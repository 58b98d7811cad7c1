//! The processes under test: the real `portal-invites serve` binary (release build) and the ceiling
//! server, each in a process of its own so its memory can be read from `/proc`.

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::process::{Child, Command};

/// A running server process.
pub struct Server {
    child: Child,
}

/// A free loopback port.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

impl Server {
    /// Starts `program args…` with `env`, and waits until `/healthz` (or `/`) answers.
    pub async fn start(
        program: &str,
        args: &[&str],
        env: &[(String, String)],
        addr: SocketAddr,
        probe: &str,
    ) -> Self {
        let mut command = Command::new(program);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PORTAL_")) {
            command.env_remove(key);
        }
        command
            .args(args)
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let server = Self { child };
        for _ in 0..300 {
            if let Ok(mut conn) = super::load::connect(addr).await {
                let request =
                    hyper::Request::get(probe).header("host", "127.0.0.1").body(Default::default()).unwrap();
                if super::load::send(&mut conn, request).await.is_ok() {
                    return server;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{program} did not start listening on {addr}");
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// Stops the process.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Samples a process's RSS every 20 ms and keeps the highest.
pub struct RssPeak {
    peak: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
}

impl RssPeak {
    /// Starts sampling.
    pub fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let running = Arc::new(AtomicBool::new(true));
        let (p, r) = (peak.clone(), running.clone());
        std::thread::spawn(move || {
            while r.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self { peak, running }
    }

    /// Stops sampling; the peak in KiB.
    pub fn stop(self) -> u64 {
        self.running.store(false, Ordering::Relaxed);
        self.peak.load(Ordering::Relaxed)
    }
}

/// The ceiling: a bare poem route answering `204`, on the same runtime settings as the service (a
/// multi-threaded tokio runtime with a worker per core). Runs in this process when the bench is
/// started as `service ceiling-server ADDR`.
pub fn serve_ceiling(addr: &str) -> ! {
    use poem::{Route, Server, get, handler, http::StatusCode, listener::TcpListener};
    #[handler]
    fn no_content() -> StatusCode {
        StatusCode::NO_CONTENT
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let result =
        runtime.block_on(Server::new(TcpListener::bind(addr)).run(Route::new().at("/", get(no_content))));
    eprintln!("the ceiling server stopped: {result:?}");
    std::process::exit(1)
}
