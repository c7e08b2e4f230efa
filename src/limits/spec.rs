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
    /// One of Sluice's own endpoints that anyone may call before being authenticated: its
    /// issuer (`/oauth2/…`: token, registration, authorization and consent) or the token
    /// vault's pages (`/oauth/v1/…`: connect, consent, callback). Only a limit naming an endpoint
    /// applies to it, and it names no route, provider, owner, token or app; `per: source` is the
    /// usual holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    /// Who shares one set of counters: everything the selectors match (`all`, default), or
    /// each principal, each owner, each token or each client address on its own.
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
    /// One set per client address (an IPv6 client's /64): the connection's peer, or the
    /// client a trusted load balancer named (PROXY protocol, `X-Forwarded-For`). Limits only.
    Source,
}

/// Sluice's own endpoints a limit can name (`endpoint:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// The built-in issuer: `/oauth2/…` and its metadata.
    Issuer,
    /// The token vault's pages: `/oauth/v1/…`.
    Vault,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Issuer => "issuer",
            Endpoint::Vault => "vault",
        }
    }
}
