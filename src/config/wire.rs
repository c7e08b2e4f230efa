//! The configuration file exactly as users write it (YAML). Converted into a validated
//! [`Snapshot`](super::Snapshot) by `snapshot.rs`; nothing on the request path reads these types.

use serde::Deserialize;
use std::path::PathBuf;

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
    pub providers: Vec<Provider>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub tokens: Vec<StaticToken>,
}

/// Listener addresses: fixed for the life of the process (a reload that changes them is refused).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listeners {
    /// Reverse proxy (base URL mode).
    #[serde(default = "default_proxy_listener")]
    pub proxy: String,
    /// Forward proxy (CONNECT); not served yet, accepted so configs written for it parse.
    #[serde(default)]
    pub forward: Option<String>,
    /// Admin: `/metrics`, `/healthz`, `/readyz`.
    #[serde(default = "default_admin_listener")]
    pub admin: String,
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
            mock: None,
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
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    #[serde(default)]
    pub intercept_hosts: Vec<String>,
    #[serde(default)]
    pub credentials: CredentialMode,
    #[serde(default)]
    pub keys: Vec<Key>,
    /// Extra CA certificates (PEM) trusted for this provider's upstream instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long a key stays out of rotation after the upstream answered 401/403 (seconds).
    #[serde(default = "default_quarantine_seconds")]
    pub quarantine_seconds: u64,
    /// Cool-down after a 429 without `Retry-After` (seconds).
    #[serde(default = "default_cooldown_seconds")]
    pub cooldown_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    #[serde(rename = "openai")]
    OpenAi,
    Anthropic,
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    pub id: String,
    /// `env:VAR` or `file:/path`.
    pub secret_ref: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// When the secret cannot be resolved, leave the key out (with a warning) instead of
    /// rejecting the whole config. For providers enabled by setting an environment variable.
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub prefix: String,
    pub provider: String,
    #[serde(default)]
    pub auth: AuthPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuthPolicy {
    /// No Sluice credential; any client reaching the listener may use the route.
    None,
    /// A token listed under `tokens:` (by its SHA-256).
    #[default]
    Static,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticToken {
    pub id: String,
    /// `sha256:<64 hex>` of the whole token; the token itself is never written down.
    pub sha256: String,
    #[serde(default)]
    pub owner: Option<String>,
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
