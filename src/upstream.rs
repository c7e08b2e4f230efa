//! Where a provider's requests go: scheme, host, base path, trust roots, and an asynchronously
//! resolved, cached address (pingora's `HttpPeer::new` would resolve synchronously and panic on
//! failure, so peers are always built from a resolved `SocketAddr`).

use arc_swap::ArcSwapOption;
use pingora::upstreams::peer::{HttpPeer, ALPN};
use pingora::utils::tls::WrappedX509;
use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_ms;

/// The wire format a provider's API speaks (also its error shape and key header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    #[serde(rename = "openai")]
    OpenAi,
    Anthropic,
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
    /// Any HTTP API (an agent's, an internal service): no LLM semantics (no model or usage
    /// parsing, no key judged from an answer's body), a key pool optional.
    Http,
    /// Azure OpenAI: deployments (`/openai/deployments/{d}/…?api-version=`) and the v1 API,
    /// OpenAI's wire format with the key in `api-key`.
    #[serde(rename = "azure-openai")]
    AzureOpenAi,
    /// Google's Generative Language API (`/v1beta/models/{model}:generateContent`, …): the key
    /// in `x-goog-api-key`, usage from `usageMetadata`.
    Gemini,
}

/// How long a DNS answer is reused (getaddrinfo reports no TTL).
const DNS_TTL_MS: u64 = 30_000;

#[derive(Debug)]
pub struct Upstream {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix of `base_url` without a trailing slash ("" for none).
    pub base_path: String,
    /// `Host` header value sent upstream (host, plus the port when it is not the default).
    pub authority: String,
    /// Set when `base_url` names an IP address: no DNS at all.
    literal: Option<SocketAddr>,
    resolved: ArcSwapOption<Resolved>,
    pub ca: Option<Arc<[WrappedX509]>>,
    /// Pingora reuses pooled connections by a peer hash that ignores the trusted CA list: without
    /// this, a connection verified against one provider's `ca_file` would be handed to another
    /// provider on the same address that must not trust it. One pool per provider and CA set.
    pool_group: u64,
}

#[derive(Debug)]
struct Resolved {
    addrs: Vec<SocketAddr>,
    expires_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
}

impl Upstream {
    pub fn new(
        provider: &str,
        tls: bool,
        host: String,
        port: u16,
        base_path: String,
        ca: Option<Arc<[WrappedX509]>>,
    ) -> Upstream {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        provider.hash(&mut hasher);
        for cert in ca.iter().flat_map(|c| c.iter()) {
            cert.borrow_raw_cert().hash(&mut hasher);
        }
        let pool_group = hasher.finish();
        let default_port = if tls { 443 } else { 80 };
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let literal = bare_host.parse().ok().map(|ip| SocketAddr::new(ip, port));
        let authority = if port == default_port {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        Upstream {
            tls,
            host: bare_host.to_owned(),
            port,
            base_path,
            authority,
            literal,
            resolved: ArcSwapOption::empty(),
            ca,
            pool_group,
        }
    }

    /// The address to connect to: an IP literal, a cached answer, or a fresh asynchronous lookup.
    /// `attempt` rotates through the addresses so a retry tries the next one.
    pub async fn addr(&self, attempt: usize) -> Result<SocketAddr, UpstreamError> {
        if let Some(addr) = self.literal {
            return Ok(addr);
        }
        let now = now_ms();
        if let Some(cached) = self.resolved.load().as_ref() {
            if cached.expires_ms > now && !cached.addrs.is_empty() {
                return Ok(cached.addrs[attempt % cached.addrs.len()]);
            }
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| UpstreamError::Resolve(self.host.clone(), e.to_string()))?
            .collect();
        let Some(first) = addrs.get(attempt % addrs.len().max(1)).copied() else {
            return Err(UpstreamError::Resolve(
                self.host.clone(),
                "no addresses".into(),
            ));
        };
        self.resolved.store(Some(Arc::new(Resolved {
            addrs,
            expires_ms: now + DNS_TTL_MS,
        })));
        Ok(first)
    }

    /// A pingora peer for `addr`, with TLS, SNI, trust roots and keepalive pooling set.
    pub fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, self.tls, self.host.clone());
        let opts = &mut peer.options;
        opts.alpn = ALPN::H1;
        opts.connection_timeout = Some(Duration::from_secs(5));
        opts.total_connection_timeout = Some(Duration::from_secs(10));
        // Kept-alive upstream connections are reused through pingora's pool for this long.
        opts.idle_timeout = Some(Duration::from_secs(60));
        // Generation can be slow to start and long to stream: no read deadline shorter than that.
        opts.read_timeout = Some(Duration::from_secs(600));
        opts.write_timeout = Some(Duration::from_secs(60));
        // One send for a request's head and body (Pingora patch 17).
        opts.head_with_body = true;
        opts.ca = self.ca.clone();
        peer.group_key = self.pool_group;
        peer
    }
}
