//! An MCP server as written (YAML `mcp_servers:` or the admin API).

use serde::{Deserialize, Serialize};

pub use crate::auth::AuthPolicy;
use crate::config::kind::Kind;
use crate::config::wire;

/// An upstream MCP server Sluice fronts at `/mcp/{name}` (Streamable HTTP).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    /// Lowercase letters, digits and hyphens; immutable once stored.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The upstream MCP endpoint: `https://`, or `http://` to a loopback host only (none for a
    /// group).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// A group: one endpoint federating these MCP servers (each with its own upstream auth),
    /// their tools and prompts named `{member}__{name}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// How Sluice authenticates to the upstream.
    #[serde(default)]
    pub auth: McpAuth,
    /// With `auth: oauth_provider`: whose users' grants (or token exchange) to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_provider: Option<String>,
    /// With `auth: secret`: the stored secret (scope `mcp`) holding a static service token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// Where the upstream credential goes.
    #[serde(default)]
    pub token_injection: TokenInjection,
    /// Which Sluice credentials clients may present.
    #[serde(default)]
    pub client_auth: AuthPolicy,
    /// Scopes the client must hold, all of them.
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub timeouts: McpTimeouts,
    /// Put JSON-RPC arguments and results in audit records (off: method, tool and sizes only).
    #[serde(default)]
    pub record_payloads: bool,
    /// GET streams one principal may hold open on this server at once (1 to 10,000): more
    /// are refused with 429 `mcp_streams`.
    #[serde(default = "max_streams_per_principal")]
    pub max_streams_per_principal: u32,
    /// Put the single-use connect link in a `tools/call` result when the user's account is not
    /// connected (off: the result names `sluice oauth connect`). A tool result enters the
    /// model's context, where a prompt-injected model could hand the link to a stranger, who
    /// would then connect their own account under this user's principal; clients that declare
    /// URL elicitation get the link in their own interface either way.
    #[serde(default)]
    pub links_in_tool_results: bool,
    /// Per-tool policy: which tools, resources and prompts each principal sees and uses
    /// (default: all of them, for everyone admitted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<super::policy::WireRule>,
}

fn max_streams_per_principal() -> u32 {
    16
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum McpAuth {
    /// No upstream credential (client credentials are still stripped).
    #[default]
    None,
    /// The calling user's token from the vault (`oauth_provider`).
    OauthProvider,
    /// A static service token (`secret_ref`).
    Secret,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenInjection {
    #[serde(default = "authorization")]
    pub header: String,
    #[serde(default = "bearer")]
    pub prefix: String,
}

impl Default for TokenInjection {
    fn default() -> Self {
        TokenInjection {
            header: authorization(),
            prefix: bearer(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct McpTimeouts {
    /// Connecting to the upstream.
    #[serde(default = "connect_seconds")]
    pub connect_seconds: u64,
    /// Longest silence on a stream (a tool may run for minutes; a GET stream idles for hours).
    #[serde(default = "idle_seconds")]
    pub idle_seconds: u64,
}

impl Default for McpTimeouts {
    fn default() -> Self {
        McpTimeouts {
            connect_seconds: connect_seconds(),
            idle_seconds: idle_seconds(),
        }
    }
}

fn authorization() -> String {
    "Authorization".to_owned()
}
fn bearer() -> String {
    "Bearer ".to_owned()
}
fn connect_seconds() -> u64 {
    10
}
fn idle_seconds() -> u64 {
    3600
}
fn yes() -> bool {
    true
}

impl Kind for McpServer {
    const KIND: &'static str = "mcp_server";
    const LIST: &'static str = "mcp_servers";
    fn name(&self) -> String {
        self.name.clone()
    }
    fn list(config: &wire::Config) -> &Vec<Self> {
        &config.mcp_servers
    }
    fn list_mut(config: &mut wire::Config) -> &mut Vec<Self> {
        &mut config.mcp_servers
    }
}
