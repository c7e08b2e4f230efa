//! A limit as written (YAML `limits:` or the admin API); `config::limit` registers it as a kind.

use serde::{Deserialize, Serialize};

/// Rate and concurrency limits on the requests a selector matches, enforced before anything
/// goes upstream. Every selector given must match (none: every request on a provider route).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Lowercase letters, digits and hyphens; the `limit` label of `sluice_limit_refusals_total`.
    pub name: String,
    /// A route's prefix (`/openai`, `/agents/billing/prod`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// A provider's name: its routes and its intercepted hosts (forward proxy) alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The owner of the caller's opaque token (never a JWT claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// An opaque token's id (never its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A client id of Sluice's own issuer (an agent's consumer or provisioned app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// An MCP server's name (`/mcp/{name}`): the limit applies to its requests and streams,
    /// and only a limit naming an MCP server does (`route` and `provider` are not given then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_server: Option<String>,
    /// Who shares one set of counters: everything the selectors match (`all`, default), or
    /// each principal, or each owner, on its own.
    #[serde(default)]
    pub per: Per,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Input + output tokens per minute: a request is admitted while the minute's allowance is
    /// not used up; its `max_tokens` (when given) is reserved as it streams upstream and the
    /// usage the answer reports replaces the reservation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Requests in flight at once (streams included, until their last byte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<u32>,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    #[default]
    All,
    /// One set per principal (its one rendering: a token's owner, else the token).
    Principal,
    /// The same as `principal`: a token's owner, else the caller itself.
    Owner,
    /// One set per credential: each opaque token by id (`token:{id}`), even among one owner's
    /// tokens; any other credential as its principal.
    Token,
}
