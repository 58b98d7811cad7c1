//! A real SMTP server for the tests (and the benchmark), on TCP: the `mailin` SMTP library does the
//! protocol, this file only moves bytes and keeps what arrived. Tests can make it refuse recipients
//! (5xx or 4xx), answer slowly, or stop listening altogether and come back on the same port; and
//! inject the faults a real mail server shows: accept connections and never say a word, greet and
//! answer EHLO and then fall silent (on every connection or only the next few), or take longer than
//! any deadline to accept a message's data (and then accept it anyway, so the sender cannot know it
//! arrived).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use mailin::{Action, Handler, Response, SessionBuilder};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
    task::JoinHandle,
};

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The message as sent (headers and body).
    pub data: Vec<u8>,
    /// When the server accepted it (the end of DATA); the benchmark times invitations with it.
    #[allow(dead_code)]
    pub at: std::time::Instant,
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    /// Recipient → SMTP code to refuse it with.
    refuse: HashMap<String, u16>,
    /// Refuse every recipient with this code.
    refuse_all: Option<u16>,
    /// Wait this long before accepting the data.
    delay: Duration,
    /// Wait this long before accepting the data of the next `.0` messages (then `delay` again).
    delay_next: (usize, Duration),
    /// Never greet, and hold the connection open: every connection.
    silent: bool,
    /// Greet and answer EHLO, then never answer again: every connection.
    stall: bool,
    /// The same for the next this many connections.
    stall_next: usize,
    /// Connections accepted so far.
    connections: usize,
    /// Open sessions, closed when the server stops.
    sessions: Vec<JoinHandle<()>>,
}

/// The running server.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl SmtpSink {
    /// Starts on a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let task = tokio::spawn(serve(listener, shared.clone()));
        Self { addr, shared, task: Mutex::new(Some(task)) }
    }

    /// The URL for `PORTAL_SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Goes down: open connections are dropped and new ones refused until [`SmtpSink::resume`].
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
        for session in self.shared.lock().unwrap().sessions.drain(..) {
            session.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        *self.task.lock().unwrap() = Some(tokio::spawn(serve(listener, self.shared.clone())));
    }

    /// Refuses `address` with `code` (550: permanent, 450: temporary).
    pub fn refuse(&self, address: &str, code: u16) {
        self.shared.lock().unwrap().refuse.insert(address.to_lowercase(), code);
    }

    /// Refuses every recipient with `code`, or none with `None`.
    pub fn refuse_all(&self, code: Option<u16>) {
        self.shared.lock().unwrap().refuse_all = code;
    }

    /// Answers the end of each message only after `delay`.
    pub fn delay(&self, delay: Duration) {
        self.shared.lock().unwrap().delay = delay;
    }

    /// Answers the end of the next `count` messages only after `delay` (and accepts them then).
    pub fn delay_next(&self, count: usize, delay: Duration) {
        self.shared.lock().unwrap().delay_next = (count, delay);
    }

    /// Accepts every connection and never says a word (no greeting), holding it open.
    pub fn go_silent(&self, silent: bool) {
        self.shared.lock().unwrap().silent = silent;
    }

    /// Greets and answers EHLO on every connection, then never says another word.
    pub fn stall(&self, stall: bool) {
        self.shared.lock().unwrap().stall = stall;
    }

    /// Greets and answers EHLO on the next `count` connections, then never says another word on
    /// them; later ones are served.
    pub fn stall_next(&self, count: usize) {
        self.shared.lock().unwrap().stall_next = count;
    }

    /// How many connections the server accepted.
    pub fn connections(&self) -> usize {
        self.shared.lock().unwrap().connections
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }

    /// Waits (up to 15 s) until `count` messages arrived, and returns them.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        for _ in 0..300 {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {count} messages, got {}", self.received().len());
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Mutex<Shared>>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        let handle = tokio::spawn(session(stream, peer.ip(), shared.clone()));
        let mut state = shared.lock().unwrap();
        state.sessions.retain(|s| !s.is_finished());
        state.sessions.push(handle);
    }
}

struct Collector {
    shared: Arc<Mutex<Shared>>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Collector {
    fn rcpt(&mut self, to: &str) -> Response {
        let shared = self.shared.lock().unwrap();
        let code = shared.refuse_all.or_else(|| shared.refuse.get(&to.to_lowercase()).copied());
        match code {
            Some(code) => Response::custom(code, format!("refused by the test server: {to}")),
            None => {
                self.to.push(to.to_owned());
                mailin::response::OK
            }
        }
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mut shared = self.shared.lock().unwrap();
        shared.received.push(Received {
            to: std::mem::take(&mut self.to),
            data: std::mem::take(&mut self.data),
            at: std::time::Instant::now(),
        });
        mailin::response::OK
    }
}

async fn session(stream: tokio::net::TcpStream, peer: IpAddr, shared: Arc<Mutex<Shared>>) {
    let (silent, stall) = {
        let mut state = shared.lock().unwrap();
        state.connections += 1;
        let silent = state.silent;
        let stall = !silent && (state.stall || state.stall_next > 0);
        if !silent {
            state.stall_next = state.stall_next.saturating_sub(1);
        }
        (silent, stall)
    };
    if silent {
        hold(stream).await;
        return;
    }
    let _ = converse(stream, peer, shared, stall).await;
}

/// Holds a connection open, reading and ignoring whatever comes, saying nothing.
async fn hold<R: tokio::io::AsyncRead + Unpin>(mut stream: R) {
    let mut sink = [0u8; 1024];
    while let Ok(n) = tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await {
        if n == 0 {
            return;
        }
    }
}

async fn converse(
    stream: tokio::net::TcpStream,
    peer: IpAddr,
    shared: Arc<Mutex<Shared>>,
    stall_after_hello: bool,
) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut session = SessionBuilder::new("smtp.test")
        .build(peer, Collector { shared: shared.clone(), to: Vec::new(), data: Vec::new() });
    writer.write_all(&session.greeting().buffer()?).await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        if line == b".\r\n" {
            let delay = {
                let mut state = shared.lock().unwrap();
                if state.delay_next.0 > 0 {
                    state.delay_next.0 -= 1;
                    state.delay_next.1
                } else {
                    state.delay
                }
            };
            tokio::time::sleep(delay).await;
        }
        let hello = line.len() >= 4
            && (line[..4].eq_ignore_ascii_case(b"EHLO") || line[..4].eq_ignore_ascii_case(b"HELO"));
        let response = session.process(&line);
        if stall_after_hello && hello {
            writer.write_all(&response.buffer()?).await?;
            hold(reader).await;
            return Ok(());
        }
        match response.action {
            Action::Reply => writer.write_all(&response.buffer()?).await?,
            Action::Close => {
                writer.write_all(&response.buffer()?).await?;
                return Ok(());
            }
            Action::NoReply | Action::UpgradeTls => {}
        }
    }
}
