//! From the store's documents to the configuration the data plane builds: the file's resources
//! plus the store's, with secret values opened by the master key.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

use super::crypto::MasterKey;
use crate::config::stored::Dump;
pub use crate::config::stored::{ControlState, ISSUER, OWNER, PROVIDER, ROUTE, SECRET, TOKEN};

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

impl ControlState {
    /// Opens every gateway secret; a secret that does not open is left out (and named), so the
    /// build reports the keys that needed it.
    pub fn open(dump: Dump, key: &MasterKey) -> (ControlState, Vec<String>) {
        let mut secrets = HashMap::new();
        let mut problems = Vec::new();
        let revision = dump.revision;
        for r in dump.resources.iter().filter(|r| r.kind == SECRET) {
            match serde_json::from_value::<SecretDoc>(r.body.clone()) {
                Ok(doc) if doc.scopes.contains(&SecretScope::Gateway) => {
                    match key.open(&key.secret_aad(&r.name, revision), &doc.sealed) {
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
