//! The client's address: the connection's peer, or — when the peer is a proxy Sluice was told
//! to trust (`server.trusted_proxies`) — the rightmost `X-Forwarded-For` entry that is not
//! one of them (entries further left were written by the client and prove nothing).

use std::net::IpAddr;

use ipnet::IpNet;

/// `10.0.0.0/8` or a bare address (`192.0.2.7` is `/32`).
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The client's address, from the peer and its `X-Forwarded-For` values (in header order).
pub fn client_address<'a>(
    peer: Option<IpAddr>,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer.map(canonical)?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|v| v.split(',')).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // An unreadable entry: nothing left of it can be trusted either.
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}

/// One `X-Forwarded-For` entry: an address, `[v6]`, or either with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|h| h.split(']').next())
        .and_then(|h| h.parse::<IpAddr>().ok())
        .map(canonical)
}

/// What counts as one client for caps and limits: an IPv4 address, or an IPv6 client's /64
/// (one host may hold a whole /64).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(octets.into())
        }
        v4 => v4,
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().filter_map(|n| parse_net(n)).collect()
    }

    #[test]
    fn only_trusted_peers_are_believed() {
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        let lb = nets(&["10.0.0.0/8"]);
        let xff = ["203.0.113.9, 198.51.100.1", "10.0.0.2"];
        // An untrusted peer: its header is ignored.
        assert_eq!(
            client_address(ip("192.0.2.1"), xff.into_iter(), &lb),
            ip("192.0.2.1")
        );
        // A trusted one: the rightmost entry not trusted (the client wrote what is left of it).
        assert_eq!(
            client_address(ip("10.0.0.1"), xff.into_iter(), &lb),
            ip("198.51.100.1")
        );
        // Every hop trusted: the leftmost.
        let all = nets(&["10.0.0.0/8", "198.51.100.0/24", "203.0.113.0/24"]);
        assert_eq!(
            client_address(ip("10.0.0.1"), xff.into_iter(), &all),
            ip("203.0.113.9")
        );
        // Garbage stops the walk at the last good hop.
        let bad = ["203.0.113.9, not-an-ip", "10.0.0.3"];
        assert_eq!(
            client_address(ip("10.0.0.1"), bad.into_iter(), &lb),
            ip("10.0.0.3")
        );
        // Ports and brackets; a mapped address.
        let ports = ["[2001:db8::1]:443, 198.51.100.2:5555"];
        assert_eq!(
            client_address(ip("10.0.0.1"), ports.into_iter(), &lb),
            ip("198.51.100.2")
        );
        assert_eq!(
            client_address(ip("::ffff:192.0.2.5"), [].into_iter(), &lb),
            ip("192.0.2.5")
        );
        assert!(parse_net("192.0.2.7").is_some() && parse_net("10.0.0.0/33").is_none());
    }
}
