//! A provider as written (YAML `providers:` or the admin API).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::config::kind::Kind;
use crate::config::{wire, ConfigError};
pub use crate::upstream::ProviderKind;

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
    /// With `credentials: oauth`: the OAuth provider whose user grants are injected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_provider: Option<String>,
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
    /// `principal`: the same caller keeps the same key (weighted rendezvous hashing over the
    /// healthy keys), so providers' prompt caches stay warm; a key that leaves the pool moves
    /// only its own callers. `none` (default): smooth weighted round-robin.
    #[serde(default, skip_serializing_if = "Affinity::is_none")]
    pub affinity: Affinity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Affinity {
    #[default]
    None,
    Principal,
}

impl Affinity {
    pub fn is_none(&self) -> bool {
        *self == Affinity::None
    }
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
    /// The calling user's own token from the token vault (`oauth_provider`): their consented
    /// grant, or for a `token_exchange` provider their JWT exchanged. Client keys are stripped.
    #[serde(rename = "oauth")]
    OAuth,
    /// Nothing is injected and every client credential is stripped (an API open behind
    /// Sluice's own client authentication).
    None,
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

impl Kind for Provider {
    const KIND: &'static str = "provider";
    const LIST: &'static str = "providers";
    fn name(&self) -> String {
        self.name.clone()
    }
    fn list(config: &wire::Config) -> &Vec<Self> {
        &config.providers
    }
    fn list_mut(config: &mut wire::Config) -> &mut Vec<Self> {
        &mut config.providers
    }
    /// Resources written through the admin API reach only sealed secrets (`secret:NAME`).
    /// `env:` and `file:` read the process's own environment and files (the master key, a data
    /// plane's control token), so they belong to the operator's config file alone; so does
    /// `ca_file`, a path on the node.
    fn stored_problems(&self) -> Vec<ConfigError> {
        let at = format!("store:provider/{}", self.name);
        let mut problems = Vec::new();
        for (j, k) in self.keys.iter().enumerate() {
            if !k.secret_ref.starts_with("secret:") {
                problems.push(ConfigError::at(
                    format!("{at}.keys[{j}].secret_ref"),
                    "through the admin API a key is a `value` or a `secret:NAME` reference; `env:` and `file:` references belong in the config file",
                ));
            }
        }
        if self.ca_file.is_some() {
            problems.push(ConfigError::at(
                format!("{at}.ca_file"),
                "`ca_file` is a path on the node: set it in the config file",
            ));
        }
        problems
    }
}

fn default_weight() -> u32 {
    1
}

fn default_quarantine_seconds() -> u64 {
    300
}

fn default_cooldown_seconds() -> u64 {
    30
}

fn default_true() -> bool {
    true
}
