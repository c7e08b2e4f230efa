//! The caps of MCP requests, decided before the vault is asked: the limits that name the
//! server (`mcp_server:`), and for a GET stream a place among the streams its principal holds
//! open there (`max_streams_per_principal`).

use pingora_proxy::Session;

use super::mcp::Refused;
use crate::auth::{Identity, Principal};
use crate::config::{McpServer, Snapshot};
use crate::limits::{At, Grant};

/// A place among the GET streams one principal holds open on one server (the server's
/// `max_streams_per_principal`); given back when dropped, however the stream ended.
#[derive(Debug)]
pub struct StreamSlot {
    key: String,
}

static OPEN_STREAMS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, u32>>> =
    std::sync::LazyLock::new(Default::default);

impl StreamSlot {
    fn take(server: &McpServer, holder: &str) -> Option<StreamSlot> {
        let key = format!("{}\0{holder}", server.name);
        let mut open = OPEN_STREAMS.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= server.max_streams {
            return None;
        }
        *n += 1;
        Some(StreamSlot { key })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = OPEN_STREAMS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// What the limits naming this server took and, for a GET stream, its place; a 429 JSON-RPC
/// error otherwise (nothing taken). `who` is the principal's rendering.
pub(super) async fn take(
    session: &Session,
    snap: &Snapshot,
    server: &McpServer,
    principal: &Principal,
    (who, source): (&str, Option<std::net::IpAddr>),
) -> Result<(Grant, Option<StreamSlot>), Refused> {
    let stream = if session.req_header().method == http::Method::GET {
        let holder = holder(session, principal, who);
        let slot = StreamSlot::take(server, &holder).ok_or_else(|| {
            let message = format!(
                "{} streams of yours are open on `{}`: close one first",
                server.max_streams, server.name
            );
            let mut r = Refused::new(429, -32000, message);
            r.headers.push(("x-sluice-error", "mcp_streams".to_owned()));
            r
        })?;
        Some(slot)
    } else {
        None
    };
    let at = At {
        route: "",
        provider: "",
        mcp_server: Some(&server.name),
        endpoint: None,
        source,
    };
    match super::steps::limit_at(snap, at, principal).await {
        Ok(grant) => Ok((grant, stream)),
        Err(error) => {
            let mut r = Refused::new(429, -32000, error.to_string());
            r.headers
                .push(("x-sluice-error", error.reason().to_owned()));
            if let crate::error::GatewayError::Limited(l) = &error {
                let retry = l.retry_after_ms.div_ceil(1000).max(1);
                r.headers.push(("retry-after", retry.to_string()));
            }
            Err(r)
        }
    }
}

/// Whose streams a GET counts among: the principal's, or for anonymous callers
/// (`client_auth: none`) their address, IPv6 by /64 (one host holds a whole /64), so one
/// caller cannot take every anonymous stream.
fn holder(session: &Session, principal: &Principal, who: &str) -> String {
    if principal.identity != Identity::Anonymous {
        return who.to_owned();
    }
    let addr = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| match a.ip() {
            std::net::IpAddr::V6(v6) => {
                let [a, b, c, d, ..] = v6.segments();
                std::net::IpAddr::V6(std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
            v4 => v4,
        });
    format!(
        "anonymous@{}",
        addr.map(|ip| ip.to_string()).unwrap_or_default()
    )
}
