//! Who is asking: the client's address, believed from `X-Forwarded-For` only when the connection
//! comes from a configured trusted proxy (otherwise anyone could claim any address and dodge the
//! per-address limits). Which network a limit counts the address in is `accounts::throttle`'s rule.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
///
/// `forwarded_for` holds every `X-Forwarded-For` line of the request, in the order received: a
/// proxy may append its own line instead of extending the last one, and HTTP says several lines of
/// a list header mean the same as one line joined with commas. Reading only the first line would
/// take the client's own (forgeable) claim instead of what the proxy appended.
pub fn client_ip<'a>(
    peer: Option<IpAddr>,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let chain: Vec<IpAddr> =
        forwarded_for.into_iter().flat_map(|line| line.split(',')).filter_map(parse_hop).collect();
    Some(chain.into_iter().rev().find(|ip| !is_trusted(ip)).unwrap_or(peer))
}

/// One entry of `X-Forwarded-For`: an address, or an address with a port as some proxies write it
/// (`203.0.113.9:4711`, `[2001:db8::1]:4711`).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry.parse().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// The client's address of a request, from its peer and every `X-Forwarded-For` line.
pub fn of_request(request: &poem::Request, trusted: &[IpNet]) -> Option<IpAddr> {
    let lines = request.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    client_ip(peer(request), lines, trusted)
}

/// The peer address of a request.
pub fn peer(request: &poem::Request) -> Option<IpAddr> {
    request.remote_addr().as_socket_addr().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_header_is_believed_only_from_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let header = ["203.0.113.9, 10.1.1.1"];
        assert_eq!(client_ip(Some(ip("198.51.100.7")), header, &trusted), Some(ip("198.51.100.7")));
        assert_eq!(client_ip(Some(ip("10.0.0.2")), header, &trusted), Some(ip("203.0.113.9")));
        // A client cannot prepend a fake address: the right-most untrusted one is taken.
        assert_eq!(
            client_ip(Some(ip("10.0.0.2")), ["1.2.3.4, 203.0.113.9"], &trusted),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(client_ip(Some(ip("10.0.0.2")), [], &trusted), Some(ip("10.0.0.2")));
        assert_eq!(client_ip(Some(ip("10.0.0.2")), ["garbage"], &[]), Some(ip("10.0.0.2")));
    }

    #[test]
    fn every_forwarded_line_is_read_in_order_from_the_proxies_end() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy = Some(ip("10.0.0.2"));
        // The client sent a line of its own; the proxy added another rather than extending it.
        assert_eq!(client_ip(proxy, ["1.2.3.4", "203.0.113.9"], &trusted), Some(ip("203.0.113.9")));
        assert_eq!(
            client_ip(proxy, ["1.2.3.4, 5.6.7.8", "203.0.113.9, 10.9.9.9", "10.1.1.1"], &trusted),
            Some(ip("203.0.113.9"))
        );
        // Every hop is a trusted proxy: the peer counts, as before.
        assert_eq!(client_ip(proxy, ["10.3.3.3", "10.1.1.1"], &trusted), proxy);
        // Ports, as some proxies write them, do not hide the address.
        assert_eq!(client_ip(proxy, ["[2001:db8::7]:4711"], &trusted), Some(ip("2001:db8::7")));
        assert_eq!(client_ip(proxy, ["203.0.113.9:4711"], &trusted), Some(ip("203.0.113.9")));
    }
}
