//! The signal that starts a graceful stop.

/// SIGTERM or Ctrl-C (SIGINT), listened for from the moment it is made: the handlers are installed
/// at once, not when first awaited, so a signal in between is not the default action (death).
pub(super) struct ShutdownSignal {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignal {
    pub(super) fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                terminate: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    #[cfg(unix)]
    pub(super) async fn wait(mut self) {
        async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.terminate) => {}
            _ = next(&mut self.interrupt) => {}
        }
    }

    #[cfg(not(unix))]
    pub(super) async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
