//! An owner as written (YAML `owners:` or the admin API).

use serde::{Deserialize, Serialize};

use crate::config::kind::Kind;
use crate::config::wire;

/// Who tokens belong to; a disabled owner's tokens are all refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    pub name: String,
    /// Given by the control plane when it creates the owner, never taken from a request: an
    /// owner deleted and created again under the same name is another principal and does not
    /// inherit the first one's grants, sessions or counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// What this owner's tokens may do on the admin API (none: no admin access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Named admin-API permissions held besides the role's (`oauth_provider_attach`,
    /// `provider_update`, …): a custom role. An owner with permissions and no role may use
    /// exactly these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
}

impl Owner {
    /// Whether this owner may use the admin API at all (a role or named permissions): only
    /// admins manage the tokens of such owners.
    pub fn privileged(&self) -> bool {
        self.role.is_some() || !self.permissions.is_empty()
    }
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

impl Kind for Owner {
    const KIND: &'static str = "owner";
    const LIST: &'static str = "owners";
    fn name(&self) -> String {
        self.name.clone()
    }
    fn list(config: &wire::Config) -> &Vec<Self> {
        &config.owners
    }
    fn list_mut(config: &mut wire::Config) -> &mut Vec<Self> {
        &mut config.owners
    }
}

fn default_true() -> bool {
    true
}
