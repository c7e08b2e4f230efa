//! The PROXY protocol (v1 text and v2 binary, as HAProxy, AWS NLB and most load balancers send
//! it) on connections from a trusted load balancer: the header is read before anything else
//! (before TLS), and the client address it names becomes the connection's peer address, the
//! one caps, limits, audit records and traces see.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{SocketDigest, Stream};
use ppp::{HeaderResult, PartialResult};
use std::os::unix::io::AsRawFd;
use tokio::io::AsyncReadExt;

/// A v2 header may carry TLVs (AWS and Azure add some); more than this is not a header.
const MAX_HEADER: usize = 4096;
/// The longest v1 header, its CRLF included.
const V1_MAX: usize = 107;

/// What the header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The client's address.
    Proxied(SocketAddr),
    /// The load balancer's own connection (a health check; v2 LOCAL, v1 UNKNOWN): the peer
    /// address stands.
    Local,
}

/// Why a connection was closed instead of served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Invalid,
    Timeout,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Invalid => "invalid",
            Refused::Timeout => "timeout",
        }
    }
}

/// Parses a complete header at the start of `buf`: the header and its length, `Ok(None)` when
/// more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, Refused> {
    // A v1 header is a line of at most 107 bytes: until its end has arrived, a parse error may
    // only mean a number cut in two by the segment boundary.
    let v1_line = b"PROXY ".starts_with(&buf[..buf.len().min(6)]);
    if v1_line && buf.len() < V1_MAX && !buf.windows(2).any(|w| w == b"\r\n") {
        return Ok(None);
    }
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return if buf.len() >= MAX_HEADER {
            Err(Refused::Invalid)
        } else {
            Ok(None)
        };
    }
    match result {
        HeaderResult::V1(Ok(h)) => {
            let header = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    Header::Proxied(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    Header::Proxied(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Unknown => Header::Local,
            };
            Ok(Some((header, h.header.len())))
        }
        HeaderResult::V2(Ok(h)) => {
            let header = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => Header::Local,
                (_, ppp::v2::Addresses::IPv4(a)) => {
                    Header::Proxied(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (_, ppp::v2::Addresses::IPv6(a)) => {
                    Header::Proxied(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                // A unix-socket or unspecified client has no address to give.
                _ => Header::Local,
            };
            Ok(Some((header, h.len())))
        }
        _ => Err(Refused::Invalid),
    }
}

/// Reads the header that starts `stream`, within `timeout`. Bytes read past it are put back;
/// a proxied client's address becomes the stream's peer address.
pub async fn read(stream: Stream, timeout: Duration) -> Result<(Stream, Header), Refused> {
    let mut l4 = stream
        .into_any()
        .downcast::<L4Stream>()
        .map_err(|_| Refused::Invalid)?;
    let mut buf = Vec::with_capacity(256);
    let read = async {
        loop {
            let mut chunk = [0u8; 512];
            let n = l4.read(&mut chunk).await.map_err(|_| Refused::Invalid)?;
            if n == 0 {
                return Err(Refused::Invalid);
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(found) = parse(&buf)? {
                return Ok(found);
            }
        }
    };
    let (header, len) = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| Refused::Timeout)??;
    if let Some(rest) = buf.get(len..) {
        l4.rewind(rest);
    }
    if let Header::Proxied(client) = header {
        let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
        let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(client)));
        pingora::protocols::GetSocketDigest::set_socket_digest(&mut *l4, digest);
    }
    Ok((l4, header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_headers_name_the_client_and_their_length() {
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\nGET / HTTP/1.1\r\n";
        let (h, len) = parse(v1).unwrap().unwrap();
        assert_eq!(h, Header::Proxied("203.0.113.7:51000".parse().unwrap()));
        assert_eq!(&v1[len..], b"GET / HTTP/1.1\r\n");
        let v1_6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n";
        let (h, _) = parse(v1_6).unwrap().unwrap();
        assert_eq!(h, Header::Proxied("[2001:db8::7]:51000".parse().unwrap()));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap(),
            (Header::Local, 15)
        );

        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2.extend([0x21, 0x11, 0, 12]); // v2 PROXY, TCP over IPv4, 12 bytes of addresses
        v2.extend([198, 51, 100, 9, 10, 0, 0, 1, 0xC3, 0x50, 1, 0xBB]);
        v2.extend(b"\x16\x03\x01"); // a TLS ClientHello follows
        let (h, len) = parse(&v2).unwrap().unwrap();
        assert_eq!(h, Header::Proxied("198.51.100.9:50000".parse().unwrap()));
        assert_eq!(&v2[len..], b"\x16\x03\x01");
        let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local).unwrap().unwrap(), (Header::Local, 16));
    }

    #[test]
    fn partial_headers_wait_and_garbage_is_refused() {
        assert_eq!(parse(b"PROXY TCP4 203.0.113.7"), Ok(None));
        // Cut after a port's digits: still waiting for the line's end.
        assert_eq!(parse(b"PROXY TCP4 203.0.113.40 127.0.0.1 40000 "), Ok(None));
        assert_eq!(
            parse(b"PROXY TCP4 203.0.113.40 127.0.0.1 40000 4"),
            Ok(None)
        );
        let mut too_long = b"PROXY TCP4 ".to_vec();
        too_long.resize(V1_MAX, b'1');
        assert_eq!(parse(&too_long), Err(Refused::Invalid));
        assert_eq!(parse(b"\r\n\r\n\0\r\nQU"), Ok(None));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(Refused::Invalid)
        );
        assert_eq!(
            parse(b"PROXY TCP4 999.0.113.7 10.0.0.1 1 2\r\n"),
            Err(Refused::Invalid)
        );
        // A v1 header with no end does not buffer forever.
        let endless = [b'P'; MAX_HEADER];
        assert_eq!(parse(&endless), Err(Refused::Invalid));
    }
}
