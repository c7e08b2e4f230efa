//! A route as written (YAML `routes:` or the admin API).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::auth::AuthPolicy;
use crate::config::kind::Kind;
use crate::config::wire;

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
    /// Names of the `issuers` whose JWTs this route accepts (default: all of them; never
    /// Sluice's own issuer, whose tokens are valid at their agent environment only).
    #[serde(default)]
    pub issuers: Vec<String>,
    /// JWT claims that must equal these values.
    #[serde(default)]
    pub required_claims: BTreeMap<String, String>,
    /// Forward the authenticated principal upstream in this header (e.g. `x-forwarded-user`),
    /// as its one rendering (`owner:alice#…`, `token:…`, `jwt:{issuer}:{subject}`, `app:…`).
    #[serde(default)]
    pub principal_header: Option<String>,
    /// Record usage and write an audit record for requests on this route (default true).
    #[serde(default = "default_true")]
    pub audit: bool,
    /// Providers that answer when this route's provider fails before its answer starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<super::fallback::wire::Fallback>,
}

impl Kind for Route {
    const KIND: &'static str = "route";
    const LIST: &'static str = "routes";
    fn name(&self) -> String {
        self.prefix.clone()
    }
    fn list(config: &wire::Config) -> &Vec<Self> {
        &config.routes
    }
    fn list_mut(config: &mut wire::Config) -> &mut Vec<Self> {
        &mut config.routes
    }
}

fn default_true() -> bool {
    true
}
