//! From the store's documents to the configuration the data plane builds: the file's resources
//! plus the store's, with secret values opened by the master key.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

use super::crypto::MasterKey;
use super::store::Dump;
use crate::config::{wire, ConfigError};
use crate::secrets::Secret;

pub const PROVIDER: &str = "provider";
pub const ROUTE: &str = "route";
pub const ISSUER: &str = "issuer";
pub const TOKEN: &str = "token";
pub const OWNER: &str = "owner";
pub const SECRET: &str = "secret";

/// What the store holds for a secret: never the value, only its sealed form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretDoc {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub scopes: Vec<SecretScope>,
    /// AES-256-GCM under the master key (see `crypto`).
    pub sealed: String,
    /// Bumped on each value change (rotation).
    #[serde(default)]
    pub version: u64,
}

/// Who may use a secret: the gateway's key pools, MCP servers, agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SecretScope {
    Gateway,
    Mcp,
    Agent,
}

/// The store's resources at one revision, ready for a snapshot build.
#[derive(Debug, Default)]
pub struct ControlState {
    pub dump: Dump,
    /// Opened values of the secrets scoped `gateway`.
    pub secrets: HashMap<String, Secret>,
}

impl ControlState {
    /// Opens every gateway secret; a secret that does not open is left out (and named), so the
    /// build reports the keys that needed it.
    pub fn open(dump: Dump, key: &MasterKey) -> (ControlState, Vec<String>) {
        let mut secrets = HashMap::new();
        let mut problems = Vec::new();
        for r in dump.resources.iter().filter(|r| r.kind == SECRET) {
            match serde_json::from_value::<SecretDoc>(r.body.clone()) {
                Ok(doc) if doc.scopes.contains(&SecretScope::Gateway) => {
                    match key.open(&r.name, &doc.sealed) {
                        Ok(v) => {
                            secrets.insert(r.name.clone(), v);
                        }
                        Err(e) => problems.push(format!("secret `{}`: {e}", r.name)),
                    }
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("secret `{}`: {e}", r.name)),
            }
        }
        (ControlState { dump, secrets }, problems)
    }
}

/// Appends the store's resources to `config` (the file's), reporting documents that do not fit
/// their type. Names must not clash with the file's: the build reports duplicates.
pub fn merge(config: &mut wire::Config, dump: &Dump) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    fn take<T: serde::de::DeserializeOwned>(
        r: &super::store::Resource,
        errors: &mut Vec<ConfigError>,
    ) -> Option<T> {
        serde_json::from_value(r.body.clone())
            .map_err(|e| {
                errors.push(ConfigError::at(
                    format!("store.{}.{}", r.kind, r.name),
                    e.to_string(),
                ))
            })
            .ok()
    }
    for r in &dump.resources {
        match r.kind.as_str() {
            PROVIDER => {
                let provider: Option<wire::Provider> = take(r, &mut errors);
                if let Some(p) = provider {
                    errors.extend(stored_provider_problems(&p));
                    config.providers.push(p);
                }
            }
            ROUTE => config.routes.extend(take(r, &mut errors)),
            ISSUER => config.issuers.extend(take(r, &mut errors)),
            TOKEN => config.tokens.extend(take(r, &mut errors)),
            OWNER => config.owners.extend(take(r, &mut errors)),
            _ => {}
        }
    }
    errors
}

/// Why the admin API may not store this provider: resources written through the API reach only
/// sealed secrets (`secret:NAME`). `env:` and `file:` read the process's own environment and
/// files (the master key, a data plane's control token), so they belong to the operator's
/// config file alone; so does `ca_file`, a path on the node.
pub fn stored_provider_problems(p: &wire::Provider) -> Vec<ConfigError> {
    let at = format!("store:provider/{}", p.name);
    let mut problems = Vec::new();
    for (j, k) in p.keys.iter().enumerate() {
        if !k.secret_ref.starts_with("secret:") {
            problems.push(ConfigError::at(
                format!("{at}.keys[{j}].secret_ref"),
                "through the admin API a key is a `value` or a `secret:NAME` reference; `env:` and `file:` references belong in the config file",
            ));
        }
    }
    if p.ca_file.is_some() {
        problems.push(ConfigError::at(
            format!("{at}.ca_file"),
            "`ca_file` is a path on the node: set it in the config file",
        ));
    }
    problems
}
