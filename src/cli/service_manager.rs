//! Telling a service manager how the service is doing (systemd's `Type=notify`): READY once the
//! listener serves and the migrations are applied, STOPPING the moment a shutdown begins. Without
//! `NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use std::net::SocketAddr;

use sd_notify::NotifyState;

/// The service is serving on `addr`.
pub fn ready(addr: SocketAddr) {
    let status = format!("serving on {addr}");
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// A shutdown began: requests are still served while in-flight sends finish.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping: finishing sends in flight")]);
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "could not notify the service manager");
    }
}
