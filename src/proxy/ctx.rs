//! Per-request state. The snapshot is loaded once, here, so a request sees one consistent
//! configuration from its first filter to `logging()` even if a reload happens meanwhile.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::feedback::KeyAnswer;
use super::forward::ForwardConn;
use super::steps::{Admitted, ForwardAdmitted};
use crate::audit::{ModelScanner, UsageParser};
use crate::auth::Principal;
use crate::budgets::Charge;
use crate::config::{Provider, ProviderKey, Route, Snapshot};
use crate::limits::Grant;

#[derive(Debug)]
pub struct RequestCtx {
    pub snap: Arc<Snapshot>,
    pub started: Instant,
    pub request_id: String,
    /// The client's address (`client_address`): the peer, or what a trusted proxy says.
    pub client: Option<std::net::IpAddr>,
    /// What the request turned out to be, once admitted (one kind, never several).
    pub kind: RequestKind,
    pub principal: Option<Arc<Principal>>,
    /// Index into the provider's `keys`; `None` when the client's own key is used (BYOK).
    pub key: Option<usize>,
    /// Upstream connection attempts after the first (a failed connect is retried once).
    pub retries: usize,
    /// Why Sluice refused the request itself, for metrics and logs.
    pub reason: Option<&'static str>,
    /// Accounting, when the route has it on.
    pub accounting: Option<Accounting>,
    /// The forward-proxy connection this request arrived on (`None` in reverse mode).
    pub conn: Option<Arc<ForwardConn>>,
    /// The destination host of a forward-proxy request (for the audit record).
    pub forward_host: Option<String>,
    /// A 401/403 from the upstream whose body will say whether the pool key is bad.
    pub key_answer: Option<KeyAnswer>,
    /// The user's own token from the vault (`credentials: oauth`), injected upstream.
    pub user_token: Option<Arc<str>>,
    /// Sluice refused the request itself before routing it upstream (its audit record goes to
    /// the refused stream, which cannot evict usage records).
    pub refused: bool,
    /// The client's connection left Pingora for a relay task of its own (an MCP GET stream),
    /// which writes the audit record when the stream ends.
    pub detached: bool,
    /// What the limits took: flight slots are released when the context is dropped (the
    /// request's end, however it ended), token reservations settled in `logging`.
    pub grant: Grant,
    /// The budgets this request's usage is charged to.
    pub charge: Charge,
    /// Its place in a trace, when spans are exported (`server.otlp_endpoint`).
    pub trace: Option<crate::trace::Context>,
}

/// The kinds of request the proxy listener serves, decided at admission.
#[derive(Debug, Default)]
pub enum RequestKind {
    /// Not admitted (yet): refused, or answered by Sluice itself (its OAuth pages, metadata).
    #[default]
    Unrouted,
    /// A provider route (reverse, agent environment, intercepted forward-proxy host): its
    /// index into `snap.routes`, and on a route with a fallback chain the kept body, the hop
    /// and the hops tried.
    Route {
        route: usize,
        fallback: Option<Box<super::fallback::FallbackCtx>>,
    },
    /// A forward-proxy request to a host that is not intercepted, proxied as is to the address
    /// checked at admission.
    Passthrough(Passthrough, std::net::SocketAddr),
    /// An MCP request (`/mcp/{name}`): the server and what goes upstream with it.
    Mcp(Box<super::mcp::McpCtx>),
}

/// Destination of a plain-HTTP forward-proxy request that goes through untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passthrough {
    pub host: String,
    pub port: u16,
}

/// What the audit record needs, gathered as the request and response stream through.
#[derive(Debug, Default)]
pub struct Accounting {
    /// An LLM API (not `kind: http`): its model and usage are read from the traffic.
    pub llm: bool,
    pub model: ModelScanner,
    pub usage: Option<UsageParser>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub ttfb: Option<Duration>,
}

impl RequestCtx {
    pub fn new(snap: Arc<Snapshot>) -> RequestCtx {
        RequestCtx {
            snap,
            started: Instant::now(),
            request_id: String::new(),
            client: None,
            kind: RequestKind::Unrouted,
            principal: None,
            key: None,
            retries: 0,
            reason: None,
            accounting: None,
            conn: None,
            forward_host: None,
            key_answer: None,
            user_token: None,
            refused: false,
            detached: false,
            grant: Grant::default(),
            charge: Charge::default(),
            trace: None,
        }
    }

    /// Records what admission decided: the route and key, or the passthrough destination.
    pub fn admitted(&mut self, host: Option<String>, admitted: ForwardAdmitted, audit_on: bool) {
        self.forward_host = host;
        match admitted {
            ForwardAdmitted::Provider(Admitted {
                route,
                principal,
                key,
                grant,
                charge,
                hop,
            }) => {
                self.principal = Some(principal);
                self.key = key;
                // A token limit reads the usage even where nothing is recorded.
                let counts_tokens = grant.counts_tokens();
                let needs_usage = counts_tokens || !charge.is_empty();
                self.grant = grant;
                self.charge = charge;
                let fallback = super::fallback::FallbackCtx::new(self.snap.routes.get(route), hop);
                self.kind = RequestKind::Route { route, fallback };
                if let Some(route) = self
                    .route()
                    .filter(|r| (audit_on && r.audit) || needs_usage)
                {
                    let llm = route.provider.kind != crate::config::ProviderKind::Http;
                    self.accounting = Some(Accounting {
                        llm,
                        model: if counts_tokens {
                            ModelScanner::with_max_tokens()
                        } else {
                            ModelScanner::new()
                        },
                        ..Accounting::default()
                    });
                }
            }
            ForwardAdmitted::Passthrough {
                destination,
                addr,
                principal,
            } => {
                self.principal = Some(principal);
                self.kind = RequestKind::Passthrough(destination, addr);
            }
        }
    }

    pub fn route(&self) -> Option<&Route> {
        self.route_index().and_then(|i| self.snap.routes.get(i))
    }

    /// Index into `snap.routes` of a provider route's request.
    pub fn route_index(&self) -> Option<usize> {
        match &self.kind {
            RequestKind::Route { route, .. } => Some(*route),
            _ => None,
        }
    }

    /// A fallback route's state.
    pub fn fallback(&self) -> Option<&super::fallback::FallbackCtx> {
        match &self.kind {
            RequestKind::Route { fallback, .. } => fallback.as_deref(),
            _ => None,
        }
    }

    pub fn fallback_mut(&mut self) -> Option<&mut super::fallback::FallbackCtx> {
        match &mut self.kind {
            RequestKind::Route { fallback, .. } => fallback.as_deref_mut(),
            _ => None,
        }
    }

    pub fn passthrough(&self) -> Option<(&Passthrough, std::net::SocketAddr)> {
        match &self.kind {
            RequestKind::Passthrough(dest, addr) => Some((dest, *addr)),
            _ => None,
        }
    }

    pub fn mcp(&self) -> Option<&super::mcp::McpCtx> {
        match &self.kind {
            RequestKind::Mcp(m) => Some(m),
            _ => None,
        }
    }

    pub fn mcp_mut(&mut self) -> Option<&mut super::mcp::McpCtx> {
        match &mut self.kind {
            RequestKind::Mcp(m) => Some(m),
            _ => None,
        }
    }

    /// The MCP request's state, taken out (a GET stream's relay takes it along).
    pub fn take_mcp(&mut self) -> Option<Box<super::mcp::McpCtx>> {
        match std::mem::take(&mut self.kind) {
            RequestKind::Mcp(m) => Some(m),
            other => {
                self.kind = other;
                None
            }
        }
    }

    /// The provider the request is on: the route's, or a fallback's after a failure.
    pub fn provider(&self) -> Option<&Provider> {
        let route = self.route()?;
        match self.fallback() {
            Some(f) if f.hop > 0 => super::fallback::hop_provider(route, f.hop),
            _ => Some(&route.provider),
        }
    }

    pub fn key(&self) -> Option<&ProviderKey> {
        let provider = self.provider()?;
        self.key.and_then(|i| provider.keys.get(i))
    }
}

/// The client's `x-request-id` when it is a sane token, else a new id: a per-process random
/// prefix and a counter (unique, cheap, no syscall per request).
pub fn request_id(client: Option<&str>) -> String {
    if let Some(id) = client {
        let sane = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if sane {
            return id.to_owned();
        }
    }
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        u32::from_le_bytes(b)
    });
    format!(
        "{prefix:08x}{:016x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
