//! The configuration file exactly as users write it (YAML). Converted into a validated
//! [`Snapshot`](super::Snapshot) by `snapshot.rs`; nothing on the request path reads these types.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use super::oauth_provider::OAuthProvider;
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
    /// Forward-proxy policy (`listeners.forward`).
    #[serde(default)]
    pub forward: Forward,
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

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Lowercase letters, digits and hyphens; immutable once stored.
    pub name: String,
    /// The provider's wire format.
    pub kind: ProviderKind,
    /// Scheme, host and optional port of the upstream API (`https://api.openai.com`).
    pub base_url: String,
    /// Hosts the forward proxy intercepts for this provider (`api.openai.com`).
    #[serde(default)]
    pub intercept_hosts: Vec<String>,
    #[serde(default)]
    pub credentials: CredentialMode,
    /// The key pool, picked by smooth weighted round-robin.
    #[serde(default)]
    pub keys: Vec<Key>,
    /// Extra CA certificates (PEM) trusted for this provider's upstream instead of the system roots.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub ca_file: Option<PathBuf>,
    /// How long a key stays out of rotation after the upstream answered 401/403 (seconds).
    #[serde(default = "default_quarantine_seconds")]
    pub quarantine_seconds: u64,
    /// Cool-down after a 429 without `Retry-After` (seconds).
    #[serde(default = "default_cooldown_seconds")]
    pub cooldown_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialMode {
    /// Sluice injects a key from the pool; client provider keys are stripped.
    #[default]
    Centralized,
    /// The client's own provider key passes through; the pool is not used.
    Byok,
    /// The client's own provider key if it sent one, otherwise a pool key.
    PreferByok,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Key {
    /// Unique within the provider; shown in metrics and audit records.
    pub id: String,
    /// `secret:NAME` (the control plane's store), `env:VAR` or `file:/path`.
    pub secret_ref: String,
    /// Share of the provider's traffic; 0 drains the key (in-flight requests finish).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// A disabled key is kept but never picked.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// When the secret cannot be resolved, leave the key out (with a warning) instead of
    /// rejecting the whole config. For providers enabled by setting an environment variable.
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub prefix: String,
    pub provider: String,
    #[serde(default)]
    pub auth: AuthPolicy,
    /// Scopes the caller must hold, all of them (opaque token `scopes`, JWT `scope`/`scp`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Names of the `issuers` whose JWTs this route accepts (default: all of them).
    #[serde(default)]
    pub issuers: Vec<String>,
    /// JWT claims that must equal these values.
    #[serde(default)]
    pub required_claims: BTreeMap<String, String>,
    /// Forward the authenticated principal upstream in this header (e.g. `x-forwarded-user`).
    #[serde(default)]
    pub principal_header: Option<String>,
    /// Record usage and write an audit record for requests on this route (default true).
    #[serde(default = "default_true")]
    pub audit: bool,
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

/// An opaque token record (what `sluice token generate` prints): never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// The 12-character id inside the token (`sluice_<id>_…`).
    pub id: String,
    /// `sha256:<64 hex>` of the token's secret part.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// RFC 3339 time after which the token is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// RFC 3339 time from which the token is refused (revocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl Token {
    /// A new opaque token (shown once) and its record: only the SHA-256 of its secret is kept.
    pub fn generate(
        name: Option<String>,
        owner: Option<String>,
        scopes: Vec<String>,
        expires_at: Option<String>,
    ) -> Result<(String, Token), getrandom::Error> {
        let (token, id, digest) = crate::auth::opaque::generate()?;
        let record = Token {
            id,
            sha256: format!("sha256:{}", hex::encode(digest)),
            name,
            owner,
            scopes,
            expires_at,
            revoked_at: None,
        };
        Ok((token, record))
    }
}

/// Who tokens belong to; a disabled owner's tokens are all refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    pub name: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// What this owner's tokens may do on the admin API (none: no admin access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// Admin API roles. Each endpoint checks one named permission (see `control::rbac`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Provider keys, secrets and tokens; reads everything else.
    Operator,
    /// Reads metadata only.
    Viewer,
    /// A data plane following this control plane: reads the revision feed only.
    Dataplane,
}

/// A trusted JWT issuer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Issuer {
    /// Short name for routes, metrics and logs.
    pub name: String,
    /// The exact `iss` claim.
    pub issuer: String,
    /// Where the signing keys are; default: `jwks_uri` from `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Accepted `aud` values (any of them).
    pub audiences: Vec<String>,
    /// Accepted signing algorithms, each bound to its key type.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// The claim that names the principal (`sub`, `client_id`, …).
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
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
fn default_weight() -> u32 {
    1
}
fn default_true() -> bool {
    true
}
fn default_quarantine_seconds() -> u64 {
    300
}
fn default_cooldown_seconds() -> u64 {
    30
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into(), "EdDSA".into()]
}
fn default_leeway() -> u64 {
    30
}
fn default_principal_claim() -> String {
    "sub".into()
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
