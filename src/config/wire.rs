//! The configuration file exactly as users write it (YAML). Converted into a validated
//! [`Snapshot`](super::Snapshot) by `snapshot.rs`; nothing on the request path reads these types.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use super::agent::wire::Agent;
pub use super::budget::wire::{Budget, Price};
pub use super::issuer::wire::Issuer;
pub use super::limit::wire::Limit;
pub use super::mcp_server::wire::McpServer;
pub use super::oauth_provider::wire::OAuthProvider;
pub use super::owner::wire::{Owner, Role};
pub use super::provider::wire::{Affinity, CredentialMode, Key, Provider};
pub use super::route::wire::Route;
pub use super::token::wire::Token;
pub use crate::auth::AuthPolicy;
pub use crate::forward::policy::TunnelPolicy;
pub use crate::upstream::ProviderKind;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listeners: Listeners,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub server: ServerOptions,
    #[serde(default)]
    pub audit: Audit,
    #[serde(default)]
    pub providers: Vec<Provider>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub tokens: Vec<Token>,
    #[serde(default)]
    pub owners: Vec<Owner>,
    #[serde(default)]
    pub issuers: Vec<Issuer>,
    /// Upstream authorization servers Sluice is a client of (`config::oauth_provider`).
    #[serde(default)]
    pub oauth_providers: Vec<OAuthProvider>,
    /// Upstream MCP servers fronted at `/mcp/{name}` (`config::mcp_server`).
    #[serde(default)]
    pub mcp_servers: Vec<McpServer>,
    /// Agents' HTTP APIs served at `/agents/{agent}/{environment}` (`config::agent`).
    #[serde(default)]
    pub agents: Vec<Agent>,
    /// Rate and concurrency limits per token, owner, route or app (`config::limit`).
    #[serde(default)]
    pub limits: Vec<Limit>,
    /// Spend caps per period in tokens and US dollars (`config::budget`).
    #[serde(default)]
    pub budgets: Vec<Budget>,
    /// Model prices (US dollars per million tokens) over the shipped table.
    #[serde(default)]
    pub prices: Vec<Price>,
    /// Sluice's own issuer: the algorithm of its signing keys and their rotation.
    #[serde(default)]
    pub builtin_issuer: BuiltinIssuer,
    /// Forward-proxy policy (`listeners.forward`).
    #[serde(default)]
    pub forward: Forward,
    /// How users' browsers and agents reach the proxy listener (`https://gw.example.com`, a
    /// path allowed): what connect links and the OAuth redirect URI start with. Default
    /// `http://` + `listeners.proxy`; set it behind a TLS-terminating load balancer.
    #[serde(default)]
    pub public_base_url: Option<String>,
}

impl Config {
    /// `public_base_url` without a trailing `/`, or the proxy listener's address.
    pub fn public_base_url(&self) -> String {
        match &self.public_base_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!(
                "{}://{}",
                if self.listeners.proxy_tls.is_some() {
                    "https"
                } else {
                    "http"
                },
                BOUND_PROXY.get().unwrap_or(&self.listeners.proxy)
            ),
        }
    }
}

/// The proxy listener's address as bound, when the file asks for port 0 (set once at start).
static BOUND_PROXY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Records the address the proxy listener got for `listeners.proxy: …:0`.
pub fn set_bound_proxy(addr: String) {
    let _ = BOUND_PROXY.set(addr);
}

/// Listener addresses: fixed for the life of the process (a reload that changes them is refused).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listeners {
    /// Reverse proxy (base URL mode).
    #[serde(default = "default_proxy_listener")]
    pub proxy: String,
    /// Forward proxy (CONNECT and absolute-form HTTP); omit to disable.
    #[serde(default)]
    pub forward: Option<String>,
    /// Admin: `/metrics`, `/healthz`, `/readyz`, `/ca.pem` and the `/v1` admin API.
    #[serde(default = "default_admin_listener")]
    pub admin: String,
    /// Serve the admin listener over TLS (HTTPS) with this certificate chain and key.
    #[serde(default)]
    pub admin_tls: Option<TlsFiles>,
    /// Serve the proxy listener over TLS (HTTPS, and HTTP/2 by ALPN).
    #[serde(default)]
    pub proxy_tls: Option<ListenerTls>,
    /// Embedded mock upstream (for the `demo` provider and load tests); omit to disable.
    #[serde(default)]
    pub mock: Option<String>,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            proxy: default_proxy_listener(),
            forward: None,
            admin: default_admin_listener(),
            admin_tls: None,
            proxy_tls: None,
            mock: None,
        }
    }
}

/// PEM files for a TLS listener (relative paths are taken from the config file's directory).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A public listener's TLS: a default certificate, more chosen by the client's SNI among their
/// names, replaced live when the files change or on SIGHUP. TLS 1.3 and 1.2 only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// The default certificate chain, leaf first (relative to the config file's directory).
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// More certificates; a client naming one of a certificate's DNS names (SNI) gets it.
    #[serde(default)]
    pub sni: Vec<TlsFiles>,
    /// Offer HTTP/2 by ALPN (`h2` before `http/1.1`). Default true.
    #[serde(default)]
    pub http2: Option<bool>,
    /// Ask clients for a certificate issued by one of these CAs (PEM). Optional for the
    /// client; routes with `auth: client_cert` need one. Loaded at start.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// The built-in issuer's signing keys, applied by the control plane: new keys (the first, each
/// rotation) use `algorithm`; the signing key is rotated `rotate_after_seconds` after the
/// newest key was made (0: only by command).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinIssuer {
    #[serde(default)]
    pub algorithm: SigningAlgorithm,
    #[serde(default = "default_rotate_after")]
    pub rotate_after_seconds: u64,
}

impl Default for BuiltinIssuer {
    fn default() -> Self {
        BuiltinIssuer {
            algorithm: SigningAlgorithm::default(),
            rotate_after_seconds: default_rotate_after(),
        }
    }
}

/// 90 days.
fn default_rotate_after() -> u64 {
    90 * 86_400
}

/// The built-in issuer's signature algorithms: ECDSA P-256 (the default, what every JWT library
/// verifies) or Ed25519.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum SigningAlgorithm {
    #[default]
    ES256,
    EdDSA,
}

impl SigningAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::ES256 => "ES256",
            SigningAlgorithm::EdDSA => "EdDSA",
        }
    }
}

/// Process settings: fixed for the life of the process.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServerOptions {
    /// Worker threads of the proxy listener; default: one per CPU.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Seconds to keep serving in-flight requests after SIGTERM (default 60).
    #[serde(default)]
    pub grace_period_seconds: Option<u64>,
    /// Seconds to wait for services to stop after the grace period (default 5).
    #[serde(default)]
    pub graceful_shutdown_timeout_seconds: Option<u64>,
    /// One multi-threaded runtime whose threads steal each other's tasks (true), or one
    /// single-threaded runtime per thread (false). Default true.
    #[serde(default)]
    pub work_stealing: Option<bool>,
    /// One event loop per proxy thread, each accepting on a listening socket of its own (all
    /// bound to the proxy address with `SO_REUSEPORT`, so the kernel spreads connections): a
    /// connection's I/O never wakes another thread. Default false (one listener whose
    /// connections go to any thread).
    #[serde(default)]
    pub thread_per_core: Option<bool>,
    /// Which loop proxies HTTP/1 requests on the proxy listener: `sluice` (default; one future
    /// per request, Sluice's own upstream pool) or `pingora` (pingora-proxy's). HTTP/2,
    /// upgrades and `Expect: 100-continue` always take Pingora's.
    #[serde(default)]
    pub proxy_loop: Option<ProxyLoop>,
    /// Largest request head (request line and headers) on the proxy listeners (default
    /// 65536 bytes; 400 beyond).
    #[serde(default)]
    pub max_request_head_bytes: Option<usize>,
    /// Time a client has to send a whole request head from its first byte (default 10 s).
    #[serde(default)]
    pub request_head_timeout_seconds: Option<u64>,
    /// Load balancers and proxies in front of Sluice (`10.0.0.0/8`, `192.0.2.7`): from them
    /// the client's address is read in `X-Forwarded-For` (the rightmost entry that is not one
    /// of them); from anyone else it is the connection's peer. Default: none.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Load balancers whose connections to the proxy and forward listeners start with a PROXY
    /// protocol header (v1 or v2; `10.0.0.0/8`, `192.0.2.7`): the client address it names is
    /// the connection's. A connection from one of them without a valid header is closed;
    /// from anyone else no header is read. Default: none.
    #[serde(default)]
    pub proxy_protocol_from: Vec<String>,
    /// HTTP/2 without TLS on a plain proxy listener, for clients that start with the HTTP/2
    /// preface (h2c "prior knowledge"); HTTP/1.1 clients are served as before. Default false.
    #[serde(default)]
    pub h2c: Option<bool>,
    /// Streams one HTTP/2 client connection may have open at once (default 100).
    #[serde(default)]
    pub h2_max_concurrent_streams: Option<u32>,
    /// Longest a kept-alive client connection waits for its next request (default 60 s).
    #[serde(default)]
    pub keepalive_timeout_seconds: Option<u64>,
    /// Client connections each proxy listener holds at most (default 16384).
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Client connections one address (an IPv6 client's /64) holds at most on each proxy
    /// listener (default 4096).
    #[serde(default)]
    pub max_connections_per_source: Option<usize>,
    /// Share limits' request rates and token allowances across replicas through Redis
    /// (`redis://127.0.0.1:6379/0`); default: each process counts on its own.
    #[serde(default)]
    pub limits_backend: Option<String>,
    /// The key every replica of this deployment holds (`env:VAR` or `file:/path`, at least 32
    /// characters) that authenticates benched-key messages in `limits_backend`; without it a
    /// key benched on one replica is not benched on the others.
    #[serde(default)]
    pub limits_backend_key_ref: Option<String>,
    /// A data plane that has not heard from its control plane for this long reports not ready
    /// on `/readyz` (default: never; every data plane losing one control plane at once would
    /// leave a Service with no endpoint).
    #[serde(default)]
    pub control_plane_max_staleness_seconds: Option<u64>,
    /// What a data plane past that staleness does with requests: `serve` them from its last
    /// good state (default) or `refuse` them (503 `control_plane_stale`).
    #[serde(default)]
    pub control_plane_stale: Option<StaleAction>,
    /// Prefix of every Redis key and channel of this deployment (default `sluice`): two
    /// deployments sharing one Redis share nothing.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Export a trace span per request over OTLP/HTTP (JSON) to this collector
    /// (`http://otel-collector:4318`); default: no tracing.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// The spans' `service.name` (default `sluice`).
    #[serde(default)]
    pub otlp_service_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyLoop {
    #[default]
    Sluice,
    Pingora,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StaleAction {
    #[default]
    Serve,
    Refuse,
}

/// Audit records: one JSON line per request. Fixed for the life of the process.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    #[serde(default)]
    pub sink: AuditSinkKind,
    /// Default: `audit.jsonl` under `data_dir`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Size at which the file is rotated to `path.1` (default 100 MiB).
    #[serde(default = "default_audit_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (default 5).
    #[serde(default = "default_audit_keep")]
    pub keep: usize,
    /// Records waiting for the writer before new ones are dropped (default 8192).
    #[serde(default = "default_audit_queue")]
    pub queue: usize,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            sink: AuditSinkKind::default(),
            path: None,
            max_bytes: default_audit_max_bytes(),
            keep: default_audit_keep(),
            queue: default_audit_queue(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuditSinkKind {
    #[default]
    File,
    Stdout,
    None,
}

/// Forward-proxy policy: who may use the proxy, which hosts are intercepted (each provider's
/// `intercept_hosts`), and what happens to every other destination.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// Destinations that are not intercepted: `deny` (default) or `tunnel` (blind, authenticated).
    #[serde(default)]
    pub policy: TunnelPolicy,
    /// Hosts tunnelled even when `policy: deny` (`example.com` or `*.example.com`).
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Hosts refused even when `policy: tunnel`; an address or CIDR (`203.0.113.0/24`) also
    /// refuses every name that resolves into it.
    #[serde(default)]
    pub deny_hosts: Vec<String>,
    /// Destination ports allowed (default 443 and 80).
    #[serde(default = "default_forward_ports")]
    pub ports: Vec<u16>,
    /// Private, loopback and link-local destinations are refused after DNS resolution unless
    /// they fall in one of these CIDRs (e.g. `10.0.0.0/8`).
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    /// Which Sluice credentials may use the proxy: `token`, `jwt` or `any` (default).
    #[serde(default)]
    pub auth: AuthPolicy,
    /// Scopes the caller must hold to use the proxy at all.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Names of the `issuers` whose JWTs the proxy accepts (default: all of them).
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Audit records for intercepted requests (default true).
    #[serde(default = "default_true")]
    pub audit: bool,
    /// CA certificate and key (PEM) that sign intercepted hosts' certificates. Default: a CA
    /// created on first run under `data_dir/ca/`. Fixed for the life of the process.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    #[serde(default)]
    pub ca_key: Option<PathBuf>,
    /// Time allowed for a client to send its CONNECT (or first request) head.
    #[serde(default = "default_head_timeout")]
    pub head_timeout_seconds: u64,
    /// Time allowed to reach a tunnelled destination.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: u64,
    /// A tunnel with no bytes either way for this long is closed.
    #[serde(default = "default_tunnel_idle")]
    pub tunnel_idle_seconds: u64,
}

impl Default for Forward {
    fn default() -> Self {
        Forward {
            policy: TunnelPolicy::default(),
            allow_hosts: Vec::new(),
            deny_hosts: Vec::new(),
            ports: default_forward_ports(),
            allow_cidrs: Vec::new(),
            auth: AuthPolicy::default(),
            scopes: Vec::new(),
            issuers: Vec::new(),
            audit: true,
            ca_cert: None,
            ca_key: None,
            head_timeout_seconds: default_head_timeout(),
            connect_timeout_seconds: default_connect_timeout(),
            tunnel_idle_seconds: default_tunnel_idle(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_proxy_listener() -> String {
    "127.0.0.1:8080".to_owned()
}
fn default_admin_listener() -> String {
    "127.0.0.1:9090".to_owned()
}
fn default_true() -> bool {
    true
}
fn default_audit_max_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_audit_keep() -> usize {
    5
}
fn default_forward_ports() -> Vec<u16> {
    vec![443, 80]
}
fn default_head_timeout() -> u64 {
    10
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_tunnel_idle() -> u64 {
    300
}
fn default_audit_queue() -> usize {
    8192
}
