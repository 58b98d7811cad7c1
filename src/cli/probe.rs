//! `portal-invites probe`: a health check for supervisors and container runtimes (systemd's
//! `ExecStartPost`, Docker's `HEALTHCHECK`, a load balancer's script): exit 0 when `/readyz` answers
//! `200`, 1 otherwise, with one line saying why.

use std::{process::ExitCode, time::Duration};

use clap::Args;

/// Options of `probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The instance's base URL (default: http:// and PORTAL_LISTEN, with a wildcard address
    /// replaced by the loopback one).
    #[arg(long)]
    pub url: Option<String>,
    /// The address the instance listens on, when --url is not given.
    #[arg(long, env = "PORTAL_LISTEN", default_value = "127.0.0.1:8080", hide = true)]
    pub listen: String,
    /// Give up after this many seconds (1 to 60).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub timeout: u64,
}

/// Asks `/readyz` once.
pub async fn run(args: ProbeArgs) -> ExitCode {
    let base = args.url.unwrap_or_else(|| format!("http://{}", loopback_for(&args.listen)));
    let url = format!("{}/readyz", base.trim_end_matches('/'));
    // reqwest is built without a default TLS provider (an https:// URL needs one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(args.timeout)).build() {
        Ok(client) => client,
        Err(e) => {
            eprintln!("probe: cannot build an HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client.get(&url).send().await {
        Ok(response) if response.status().as_u16() == 200 => {
            println!("ready: {url} answered 200");
            ExitCode::SUCCESS
        }
        Ok(response) => {
            let status = response.status();
            let why = if status.as_u16() == 503 {
                " (starting, shutting down, or the database is down)"
            } else {
                ""
            };
            eprintln!("not ready: {url} answered {status}{why}");
            ExitCode::FAILURE
        }
        Err(e) if e.is_timeout() => {
            eprintln!("not ready: {url} did not answer within {} s", args.timeout);
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("not ready: cannot connect to {url}");
            ExitCode::FAILURE
        }
    }
}

/// Where to reach a listener bound to `listen` from this machine: a wildcard address (`0.0.0.0`,
/// `[::]`) is reached on the loopback address of its family.
fn loopback_for(listen: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() && addr.is_ipv4() => format!("127.0.0.1:{}", addr.port()),
        Ok(addr) if addr.ip().is_unspecified() => format!("[::1]:{}", addr.port()),
        _ => listen.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::loopback_for;

    #[test]
    fn a_wildcard_listener_is_probed_on_the_loopback_address() {
        assert_eq!(loopback_for("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(loopback_for("[::]:9000"), "[::1]:9000");
        assert_eq!(loopback_for("10.0.0.5:8080"), "10.0.0.5:8080");
        assert_eq!(loopback_for("localhost:8080"), "localhost:8080");
    }
}
