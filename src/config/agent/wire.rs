//! An agent as written (YAML `agents:` or the admin API).

use serde::{Deserialize, Serialize};

use crate::config::kind::Kind;
use crate::config::wire;

/// An agent's HTTP API, one upstream per environment, each served at
/// `/agents/{agent}/{environment}/…` on the proxy listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// Lowercase letters, digits and hyphens; immutable once stored.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `dev`, `staging`, `prod`, …: each its own upstream and policy.
    pub environments: Vec<Environment>,
    /// Lifetime of the access tokens Sluice's issuer gives this agent's apps (60 to 86400).
    #[serde(default = "token_lifetime_seconds")]
    pub token_lifetime_seconds: u64,
}

fn token_lifetime_seconds() -> u64 {
    900
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Lowercase letters, digits and hyphens, unique within the agent.
    pub name: String,
    /// The agent's API in this environment: `https://`, or `http://`.
    pub url: String,
    /// Who may call it.
    #[serde(default)]
    pub auth: AgentAuth,
    /// With `auth: token` or `oauth`: scopes the caller's token must hold, all of them.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Operations open without a credential whatever `auth` says (`GET /health`).
    #[serde(default)]
    pub exceptions: Vec<Operation>,
    /// Off: every call is refused (404), the policy kept.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A production environment: its apps, their secrets and test tokens are created only with
    /// `agent_protected_credentials`, which operators do not hold.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
}

/// How callers authenticate to an agent × environment: exactly one per environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentAuth {
    /// Opaque Sluice tokens.
    #[default]
    Token,
    /// JWTs from Sluice's built-in issuer whose audience is this agent environment
    /// (`{public_base_url}/agents/{agent}/{environment}`).
    Oauth,
    /// Open: no credential (client credentials are still stripped).
    None,
}

/// A method and a path under the environment: exact (`/health`) or a prefix ending in `/*`
/// (`/docs/*`); method `*` for any.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub method: String,
    pub path: String,
}

fn yes() -> bool {
    true
}

impl Kind for Agent {
    const KIND: &'static str = "agent";
    const LIST: &'static str = "agents";
    fn name(&self) -> String {
        self.name.clone()
    }
    fn list(config: &wire::Config) -> &Vec<Self> {
        &config.agents
    }
    fn list_mut(config: &mut wire::Config) -> &mut Vec<Self> {
        &mut config.agents
    }
}
