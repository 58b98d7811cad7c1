//! Time as an input. Everything with a deadline (signature windows, erasure after uninstall, token
//! expiry, sessions) asks a [`Clock`] for `now`, so tests move time instead of sleeping.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

/// The service's source of the current time.
#[derive(Clone)]
pub struct Clock(Kind);

#[derive(Clone)]
enum Kind {
    System,
    Manual(Arc<watch::Sender<DateTime<Utc>>>),
}

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Self(Kind::System)
    }

    /// A clock that stands still at `start` until moved with [`Clock::advance`] or [`Clock::set`].
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self(Kind::Manual(Arc::new(watch::Sender::new(start))))
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            Kind::System => Utc::now(),
            Kind::Manual(time) => *time.borrow(),
        }
    }

    /// Moves a manual clock forward and wakes the background tasks. A no-op on the wall clock.
    pub fn advance(&self, by: TimeDelta) {
        if let Kind::Manual(time) = &self.0 {
            time.send_modify(|t| *t += by);
        }
    }

    /// Sets a manual clock and wakes the background tasks. A no-op on the wall clock.
    pub fn set(&self, to: DateTime<Utc>) {
        if let Kind::Manual(time) = &self.0 {
            time.send_replace(to);
        }
    }

    /// A watcher that resolves each time a manual clock is moved, including moves made while its
    /// owner was busy; on the wall clock it never resolves (tasks then run on their own interval).
    pub fn watch(&self) -> ClockWatch {
        ClockWatch(match &self.0 {
            Kind::System => None,
            Kind::Manual(time) => Some(time.subscribe()),
        })
    }
}

/// See [`Clock::watch`].
pub struct ClockWatch(Option<watch::Receiver<DateTime<Utc>>>);

impl ClockWatch {
    /// Resolves once the manual clock has moved since the last call.
    pub async fn moved(&mut self) {
        match &mut self.0 {
            // The sender lives as long as the clock; if it is gone, nothing will ever move it again.
            Some(rx) => {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Kind::System => f.write_str("Clock::System"),
            Kind::Manual(_) => write!(f, "Clock::Manual({})", self.now()),
        }
    }
}

/// Milliseconds since the Unix epoch, the form timestamps take in the database (portable between
/// SQLite and PostgreSQL and compared as plain integers).
pub fn to_millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

/// The inverse of [`to_millis`].
pub fn from_millis(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_moves_only_when_told_and_wakes_waiters() {
        let start = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().to_utc();
        let clock = Clock::manual(start);
        assert_eq!(clock.now(), start);
        let mut watch = clock.watch();
        let mut moved = Box::pin(watch.moved());
        assert!(futures_util::FutureExt::now_or_never(&mut moved).is_none());
        clock.advance(TimeDelta::hours(48));
        moved.await;
        assert_eq!(clock.now(), start + TimeDelta::hours(48));
        assert_eq!(from_millis(to_millis(clock.now())), clock.now());
    }
}
