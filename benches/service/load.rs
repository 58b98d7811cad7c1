//! The load generator: a fixed number of workers, each with its own keep-alive HTTP/1.1 connection,
//! running an operation in a loop for a warm-up and then a measured period. Latencies go into an HDR
//! histogram (microseconds); nothing is averaged.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::{Request, client::conn::http1::SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A connection to the server under test.
pub type Conn = SendRequest<Full<Bytes>>;

/// A response, fully read.
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: hyper::HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Opens a keep-alive connection.
pub async fn connect(addr: SocketAddr) -> Result<Conn, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one request on a connection and reads the whole answer.
pub async fn send(conn: &mut Conn, request: Request<Full<Bytes>>) -> Result<Reply, String> {
    conn.ready().await.map_err(|e| e.to_string())?;
    let (head, body) = conn.send_request(request).await.map_err(|e| e.to_string())?.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply { status: head.status.as_u16(), headers: head.headers, body })
}

/// What one operation came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The expected answer.
    Ok,
    /// Turned away on purpose (503 under overload).
    Shed,
    /// Anything else: an error.
    Failed,
    /// The connection broke: the worker reconnects.
    Broken,
}

/// A worker's own state: its connection and whatever the scenario keeps per worker.
pub struct Worker {
    /// The connection.
    pub conn: Conn,
    /// Where it goes.
    pub addr: SocketAddr,
    /// A connection to a second instance, for scenarios that use two.
    pub other: Option<Conn>,
    /// Scenario state (a cookie and CSRF token, for instance).
    pub cookie: String,
    /// Scenario state.
    pub token: String,
}

/// One operation: takes the worker and the operation's sequence number, gives the worker back.
pub type Operation = Arc<dyn Fn(Worker, u64) -> BoxFuture<'static, (Worker, Outcome)> + Send + Sync>;
/// Prepares a fresh worker (before the clock starts).
pub type Setup = Arc<dyn Fn(Worker) -> BoxFuture<'static, Worker> + Send + Sync>;

/// The numbers of one run.
pub struct Stats {
    /// Operations with the expected answer, in the measured period.
    pub ok: u64,
    /// Operations turned away on purpose.
    pub shed: u64,
    /// Operations that failed.
    pub failed: u64,
    /// The measured period.
    pub elapsed: Duration,
    /// Latency of every measured operation, in microseconds.
    pub latency: Histogram<u64>,
    /// CPU seconds (user + system) the watched processes used in the measured period.
    pub cpu: Option<Cpu>,
}

/// CPU time used in the measured period, read from `/proc` at its start and its end.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// The service's processes.
    pub service: f64,
    /// The PostgreSQL server's processes (zero on SQLite).
    pub database: f64,
}

/// Processes whose CPU time a run reports.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    /// The service's process ids.
    pub service: Vec<u32>,
    /// Whether to add up every `postgres` process on the machine too.
    pub postgres: bool,
}

impl Watched {
    fn read(&self) -> Cpu {
        Cpu {
            service: self.service.iter().map(|&pid| cpu_seconds(pid)).sum(),
            database: if self.postgres { postgres_seconds() } else { 0.0 },
        }
    }
}

/// User + system CPU seconds of a process (fields 14 and 15 of `/proc/PID/stat`, in clock ticks of
/// 1/100 s on Linux), including its threads.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // The command name may contain spaces: the fields start after its closing parenthesis.
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return 0.0 };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // After the name, field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The CPU seconds of every process named `postgres` (the server and its backends).
fn postgres_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres")
        })
        .map(cpu_seconds)
        .sum()
}

impl Stats {
    /// Successful operations per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `operation` on `concurrency` workers: `warmup` unmeasured, then `duration` measured. Worker
/// `i` talks to `addrs[i % addrs.len()]`.
pub async fn run(
    addrs: &[SocketAddr],
    watched: &Watched,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    setup: Option<Setup>,
    operation: Operation,
) -> Stats {
    let sequence = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let addr = addrs[i % addrs.len()];
        let conn = connect(addr).await.expect("the server accepts connections");
        let mut worker = Worker { conn, addr, other: None, cookie: String::new(), token: String::new() };
        if let Some(setup) = &setup {
            worker = setup(worker).await;
        }
        workers.push(worker);
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let cpu = {
        let watched = watched.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let first = watched.read();
            tokio::time::sleep_until(end.into()).await;
            let last = watched.read();
            Cpu { service: last.service - first.service, database: last.database - first.database }
        })
    };
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            let operation = operation.clone();
            let sequence = sequence.clone();
            let setup = setup.clone();
            tokio::spawn(async move {
                let mut latency = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap();
                let (mut ok, mut shed, mut failed) = (0u64, 0u64, 0u64);
                while Instant::now() < end {
                    let n = sequence.fetch_add(1, Ordering::Relaxed);
                    let began = Instant::now();
                    let (back, outcome) = operation(worker, n).await;
                    worker = back;
                    if began >= measure_from && Instant::now() <= end + Duration::from_secs(5) {
                        let _ = latency.record(began.elapsed().as_micros().max(1) as u64);
                        match outcome {
                            Outcome::Ok => ok += 1,
                            Outcome::Shed => shed += 1,
                            Outcome::Failed | Outcome::Broken => failed += 1,
                        }
                    }
                    if outcome == Outcome::Broken {
                        let Ok(conn) = connect(worker.addr).await else { break };
                        worker.conn = conn;
                        if let Some(setup) = &setup {
                            worker = setup(worker).await;
                        }
                    }
                }
                (latency, ok, shed, failed)
            })
        })
        .collect();
    let mut total = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap();
    let (mut ok, mut shed, mut failed) = (0, 0, 0);
    for task in tasks {
        let (latency, o, s, f) = task.await.expect("a worker finished");
        total.add(latency).unwrap();
        ok += o;
        shed += s;
        failed += f;
    }
    let cpu = cpu.await.ok().filter(|_| !watched.service.is_empty());
    Stats { ok, shed, failed, elapsed: duration, latency: total, cpu }
}
