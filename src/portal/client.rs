//! Who is asking: the client's address, believed from `X-Forwarded-For` only when the connection
//! comes from a configured trusted proxy (otherwise anyone could claim any address and dodge the
//! per-address login limit).

use std::net::IpAddr;

use ipnet::IpNet;

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let chain: Vec<IpAddr> =
        forwarded_for.unwrap_or_default().split(',').filter_map(|part| part.trim().parse().ok()).collect();
    Some(chain.into_iter().rev().find(|ip| !is_trusted(ip)).unwrap_or(peer))
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
        let header = Some("203.0.113.9, 10.1.1.1");
        assert_eq!(client_ip(Some(ip("198.51.100.7")), header, &trusted), Some(ip("198.51.100.7")));
        assert_eq!(client_ip(Some(ip("10.0.0.2")), header, &trusted), Some(ip("203.0.113.9")));
        // A client cannot prepend a fake address: the right-most untrusted one is taken.
        assert_eq!(
            client_ip(Some(ip("10.0.0.2")), Some("1.2.3.4, 203.0.113.9"), &trusted),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(client_ip(Some(ip("10.0.0.2")), None, &trusted), Some(ip("10.0.0.2")));
        assert_eq!(client_ip(Some(ip("10.0.0.2")), Some("garbage"), &[]), Some(ip("10.0.0.2")));
    }
}
