//! Where a forward-proxy client may go: intercepted provider hosts, tunnelled hosts, refused
//! ones, and which resolved addresses a tunnel may reach. Pure functions of the snapshot.

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::Access;
pub use crate::error::Denied;

/// What happens to destinations that are not intercepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TunnelPolicy {
    #[default]
    Deny,
    Tunnel,
}

#[derive(Debug)]
pub struct ForwardPolicy {
    pub access: Access,
    pub audit: bool,
    pub tunnel: TunnelPolicy,
    pub allow_hosts: Vec<HostPattern>,
    pub deny_hosts: Vec<HostPattern>,
    pub ports: Vec<u16>,
    pub allow_cidrs: Vec<IpNet>,
    /// Addresses `deny_hosts` names (as addresses or CIDRs): refused after resolution too.
    pub deny_cidrs: Vec<IpNet>,
    /// Intercepted host → index of its route in `Snapshot::routes`.
    pub intercept: HashMap<String, usize>,
    pub head_timeout: Duration,
    pub connect_timeout: Duration,
    pub tunnel_idle: Duration,
}

/// What the proxy does with a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Terminate TLS and send the requests through this route.
    Intercept(usize),
    /// Blind tunnel (after the resolved address passes `address_allowed`).
    Tunnel,
    Deny(Denied),
}

/// `example.com` (exactly) or `*.example.com` (any subdomain, not the domain itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    Suffix(String),
}

impl HostPattern {
    pub fn parse(pattern: &str) -> Result<HostPattern, String> {
        let lower = pattern.trim_end_matches('.').to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'));
        if !valid {
            return Err(format!(
                "`{pattern}` must be a host name, an IP address or `*.domain`"
            ));
        }
        Ok(if wild {
            HostPattern::Suffix(format!(".{name}"))
        } else {
            HostPattern::Exact(name.to_owned())
        })
    }

    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => name == host,
            HostPattern::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    }
}

impl ForwardPolicy {
    /// `host` is lowercase without a trailing dot or IPv6 brackets.
    pub fn decide(&self, host: &str, port: u16) -> Decision {
        if let Some(&route) = self.intercept.get(host) {
            if port == 443 || port == 80 {
                return Decision::Intercept(route);
            }
        }
        if !self.ports.contains(&port) {
            return Decision::Deny(Denied::Port);
        }
        let listed = |list: &[HostPattern]| list.iter().any(|p| p.matches(host));
        match self.tunnel {
            TunnelPolicy::Tunnel if listed(&self.deny_hosts) => Decision::Deny(Denied::Host),
            TunnelPolicy::Tunnel => Decision::Tunnel,
            TunnelPolicy::Deny if listed(&self.allow_hosts) => Decision::Tunnel,
            TunnelPolicy::Deny => Decision::Deny(Denied::Host),
        }
    }

    /// Whether a tunnel may connect to `ip`: public addresses always, others only inside an
    /// allowed CIDR. Checked on the resolved address that is then dialled, so a name that
    /// resolves differently the second time cannot slip through.
    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if self.deny_cidrs.iter().any(|net| net.contains(&ip)) {
            return false;
        }
        !is_internal(ip) || self.allow_cidrs.iter().any(|net| net.contains(&ip))
    }
}

/// The IPv4 address a 6to4 address (`2002:AABB:CCDD::/48`) routes to.
fn embedded_6to4(v6: std::net::Ipv6Addr) -> std::net::Ipv4Addr {
    let [_, hi, lo, ..] = v6.segments();
    std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
}

/// Link-local, where clouds serve instance metadata (`169.254.169.254`, `fe80::/10`), also
/// as a mapped, NAT64 or 6to4 address: never a destination Sluice fetches a document from on an
/// admin's word (private addresses are, for company IdPs on internal networks).
pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            let [first, second, ..] = v6.segments();
            let nat64 = first == 0x64 && second == 0xff9b;
            (first & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
                || (nat64 && {
                    let [.., hi, lo] = v6.segments();
                    std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
                        .is_link_local()
                })
                || (first == 0x2002 && embedded_6to4(v6).is_link_local())
        }
    }
}

/// Loopback, private, link-local, shared (CGNAT), unspecified, multicast, documentation and
/// other special-purpose ranges: nothing a proxy should reach on a client's behalf by default.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
                || (first & 0xffc0) == 0xfec0 // site local (deprecated)
                || v6.to_ipv4().is_some_and(|v4| is_internal(IpAddr::V4(v4)))
                || (first == 0x64 && v6.segments()[1] == 0xff9b) // NAT64, 64:ff9b::/96 and 64:ff9b:1::/48
                || (first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || (first == 0x2001 && v6.segments()[1] == 0) // Teredo: tunnels to an embedded IPv4
                || (first == 0x2002 && is_internal(IpAddr::V4(embedded_6to4(v6))))
            // 6to4
        }
    }
}

/// Splits a CONNECT target or URI authority into a normalised host and a port.
pub fn split_authority(authority: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
        None => default_port?,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
    valid.then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(tunnel: TunnelPolicy) -> ForwardPolicy {
        ForwardPolicy {
            access: Access::default(),
            audit: true,
            tunnel,
            allow_hosts: vec![HostPattern::parse("*.github.com").unwrap()],
            deny_hosts: vec![HostPattern::parse("evil.example").unwrap()],
            ports: vec![443, 80],
            allow_cidrs: vec!["10.1.0.0/16".parse().unwrap()],
            deny_cidrs: vec!["93.184.216.0/24".parse().unwrap()],
            intercept: HashMap::from([("api.openai.com".to_owned(), 3)]),
            head_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            tunnel_idle: Duration::from_secs(1),
        }
    }

    #[test]
    fn decisions() {
        let deny = policy(TunnelPolicy::Deny);
        assert_eq!(deny.decide("api.openai.com", 443), Decision::Intercept(3));
        assert_eq!(
            deny.decide("api.openai.com", 8443),
            Decision::Deny(Denied::Port)
        );
        assert_eq!(deny.decide("codeload.github.com", 443), Decision::Tunnel);
        assert_eq!(deny.decide("github.com", 443), Decision::Deny(Denied::Host));
        assert_eq!(
            deny.decide("example.org", 443),
            Decision::Deny(Denied::Host)
        );
        assert_eq!(
            deny.decide("codeload.github.com", 22),
            Decision::Deny(Denied::Port)
        );
        let tunnel = policy(TunnelPolicy::Tunnel);
        assert_eq!(tunnel.decide("example.org", 80), Decision::Tunnel);
        assert_eq!(
            tunnel.decide("evil.example", 443),
            Decision::Deny(Denied::Host)
        );
    }

    #[test]
    fn internal_addresses_need_an_allowed_cidr() {
        let p = policy(TunnelPolicy::Tunnel);
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.3.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "64:ff9b:1::a00:1",
            "2002:7f00:1::1",                       // 6to4 of 127.0.0.1
            "2002:a9fe:a9fe::1",                    // 6to4 of 169.254.169.254
            "2001:0:4136:e378:8000:63bf:3fff:fdd2", // Teredo
            "93.184.216.34",                        // public, but in deny_hosts as a CIDR
        ] {
            assert!(!p.address_allowed(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "10.1.2.3",
            "::ffff:10.1.2.3",
            "93.184.217.34",
            "2606:4700::1111",
            "2002:5db8:d822::1", // 6to4 of a public address
        ] {
            assert!(p.address_allowed(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn link_local_in_every_spelling() {
        for ip in [
            "169.254.169.254",
            "fe80::1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(is_link_local(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "127.0.0.1", "192.168.1.1", "::1", "8.8.8.8"] {
            assert!(!is_link_local(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn authorities() {
        assert_eq!(
            split_authority("API.OpenAI.com.:443", None),
            Some(("api.openai.com".into(), 443))
        );
        assert_eq!(
            split_authority("[::1]:8443", None),
            Some(("::1".into(), 8443))
        );
        assert_eq!(
            split_authority("example.com", Some(80)),
            Some(("example.com".into(), 80))
        );
        assert_eq!(split_authority("example.com", None), None);
        assert_eq!(split_authority("example.com:0", None), None);
        assert_eq!(split_authority("exa mple.com:443", None), None);
        assert_eq!(split_authority("[::1:443", None), None);
        assert_eq!(split_authority(":443", None), None);
    }
}
