//! Log lines to stdout in batches, written by a thread of our own.
//!
//! `tracing-appender`'s non-blocking writer hands every line to its thread through a channel, and
//! that thread spins, yields and flushes for nearly every line: under load it was a `sched_yield`
//! and a `write` per one or two requests, about an eighth of the service's CPU on a replayed
//! webhook (BENCHMARKS.md, issue 14). Here a line is appended to a shared buffer under a lock; the
//! thread is woken only when the buffer turns non-empty, lets a burst gather for [`LINGER`], then
//! writes everything in one system call. A line reaches stdout within a few milliseconds.
//!
//! Nothing is dropped: past [`MAX_BUFFERED`] (a stalled reader of stdout) logging threads wait for
//! the writer, because an access log with gaps is worse than a slower one. The guard writes what is
//! left when it is dropped.

use std::{
    io::Write,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer waits after the first line of a batch, so a burst becomes one write.
const LINGER: Duration = Duration::from_millis(5);
/// Beyond this many bytes waiting, logging threads wait for the writer.
const MAX_BUFFERED: usize = 4 * 1024 * 1024;
/// How long the guard waits for the last lines to be written: a stalled stdout must not keep the
/// process from exiting.
const LAST_WRITE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    /// The writer is waiting for a first line (and must be woken for it).
    writer_idle: bool,
    /// Logging threads waiting for room.
    blocked: usize,
    closed: bool,
    /// The writer thread has written its last batch and ended.
    finished: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// The writer waits here for a first line, or for the end.
    ready: Condvar,
    /// Logging threads wait here for room, and the guard for the end of the writer.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only bytes behind: keep logging.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The [`MakeWriter`] for the fmt layer.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Writes what is left and stops the thread when dropped.
pub struct BatchedGuard {
    shared: Arc<Shared>,
    started: bool,
}

/// Starts the writer thread over `out`.
pub fn batched(out: impl Write + Send + 'static) -> (BatchedWriter, BatchedGuard) {
    let shared = Arc::new(Shared::default());
    let started = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn({
            let shared = Arc::clone(&shared);
            move || {
                write_batches(&shared, out);
                shared.lock().finished = true;
                shared.room.notify_all();
            }
        })
        .map_err(|e| eprintln!("warning: cannot start the log writer thread ({e}); logging directly"))
        .is_ok();
    if !started {
        // Without the thread nobody drains the buffer: every line is written at once instead.
        shared.lock().closed = true;
    }
    (BatchedWriter { shared: Arc::clone(&shared) }, BatchedGuard { shared, started })
}

fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        let mut state = shared.lock();
        while state.lines.is_empty() && !state.closed {
            state.writer_idle = true;
            state = shared.ready.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
            state.writer_idle = false;
        }
        if state.lines.is_empty() {
            return;
        }
        if !state.closed {
            drop(state);
            std::thread::sleep(LINGER);
            state = shared.lock();
        }
        std::mem::swap(&mut state.lines, &mut batch);
        if state.blocked > 0 {
            shared.room.notify_all();
        }
        drop(state);
        // A closed or broken stdout loses these lines; nothing better can be done with them.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = &'a Self;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Write for &BatchedWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = self.shared.lock();
        loop {
            if state.closed {
                // Stopped (or never started): the caller's own thread writes.
                drop(state);
                return std::io::stdout().lock().write(line);
            }
            if state.lines.len() < MAX_BUFFERED {
                break;
            }
            state.blocked += 1;
            state = self.shared.room.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
            state.blocked -= 1;
        }
        state.lines.extend_from_slice(line);
        if state.writer_idle {
            state.writer_idle = false;
            self.shared.ready.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for BatchedGuard {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        self.shared.ready.notify_one();
        self.shared.room.notify_all();
        if !self.started {
            return;
        }
        let deadline = Instant::now() + LAST_WRITE;
        while !state.finished {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // The lines still waiting are lost with the process; better than never exiting.
                return;
            }
            state = self
                .shared
                .room
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;

    /// Collects what the writer thread writes, and how many writes it took.
    #[derive(Clone, Default)]
    struct Sink(Arc<StdMutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut sink = self.0.lock().unwrap();
            sink.0.extend_from_slice(bytes);
            sink.1 += 1;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_from_every_thread_is_written_whole_and_a_burst_in_few_writes() {
        let sink = Sink::default();
        let (writer, guard) = batched(sink.clone());
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let writer = writer.clone();
                scope.spawn(move || {
                    for n in 0..5_000 {
                        let line = format!("thread {thread} line {n}\n");
                        (&writer).write_all(line.as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(guard);
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 20_000);
        lines.sort_unstable();
        lines.dedup();
        assert_eq!(lines.len(), 20_000, "a line was lost, split or doubled");
        assert!(writes < 2_000, "{writes} writes for 20,000 lines: not batched");
    }

    #[test]
    fn a_line_written_alone_reaches_the_output_without_waiting_for_more() {
        let sink = Sink::default();
        let (writer, _guard) = batched(sink.clone());
        (&writer).write_all(b"alone\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sink.0.lock().unwrap().0.is_empty() {
            assert!(std::time::Instant::now() < deadline, "the line was never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(sink.0.lock().unwrap().0, b"alone\n");
    }

    /// An output that accepts nothing until it is opened: a stalled reader of stdout.
    #[derive(Clone)]
    struct Stalled(Arc<(StdMutex<bool>, Condvar)>, Sink);

    impl Write for Stalled {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let (open, opened) = &*self.0;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
            self.1.write(bytes)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_makes_loggers_wait_and_loses_nothing() {
        let gate = Arc::new((StdMutex::new(false), Condvar::new()));
        let sink = Sink::default();
        let (writer, guard) = batched(Stalled(gate.clone(), sink.clone()));
        let line = vec![b'x'; 1023].into_iter().chain([b'\n']).collect::<Vec<u8>>();
        let lines = 3 * MAX_BUFFERED / line.len();
        let logger = std::thread::spawn({
            let writer = writer.clone();
            let line = line.clone();
            move || {
                for _ in 0..lines {
                    (&writer).write_all(&line).unwrap();
                }
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(!logger.is_finished(), "the logger ran on past the limit while nothing was written");
        let (open, opened) = &*gate;
        *open.lock().unwrap() = true;
        opened.notify_all();
        logger.join().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while sink.0.lock().unwrap().0.len() < lines * line.len() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(guard);
        assert_eq!(sink.0.lock().unwrap().0.len(), lines * line.len());
    }

    #[test]
    fn a_stalled_output_does_not_keep_the_process_from_exiting() {
        let gate = Arc::new((StdMutex::new(false), Condvar::new()));
        let (writer, guard) = batched(Stalled(gate, Sink::default()));
        (&writer).write_all(b"never written\n").unwrap();
        let (done, dropped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(guard);
            let _ = done.send(());
        });
        // A hang detector, not a speed claim: the guard gives up after a second.
        assert!(dropped.recv_timeout(Duration::from_secs(60)).is_ok(), "dropping the guard never returned");
    }
}
