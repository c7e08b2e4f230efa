//! The control plane's resources as the configuration sees them: documents by (kind, name) at
//! one revision, the gateway secrets opened for them, and how they join the file's resources.
//! The store itself (and the master key that opens the secrets) is `control`'s.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use super::{wire, ConfigError};
use crate::secrets::Secret;

pub const PROVIDER: &str = "provider";
pub const ROUTE: &str = "route";
pub const ISSUER: &str = "issuer";
pub const TOKEN: &str = "token";
pub const OWNER: &str = "owner";
pub const SECRET: &str = "secret";

/// A stored resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub kind: String,
    pub name: String,
    pub body: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Every resource at one revision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dump {
    pub revision: u64,
    pub resources: Vec<Resource>,
}

/// The store's resources at one revision, ready for a snapshot build.
#[derive(Debug, Default)]
pub struct ControlState {
    pub dump: Dump,
    /// Opened values of the secrets scoped `gateway`.
    pub secrets: HashMap<String, Secret>,
}

/// Appends the store's resources to `config` (the file's), reporting documents that do not fit
/// their type. Names must not clash with the file's: the build reports duplicates.
pub fn merge(config: &mut wire::Config, dump: &Dump) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    fn take<T: serde::de::DeserializeOwned>(
        r: &Resource,
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
