//! MCP servers: upstream MCP endpoints Sluice fronts at `/mcp/{name}`, validated into what the
//! proxy needs (the upstream, the header the credential goes in, who may call). The server as
//! written is `wire`.

pub mod policy;
pub mod wire;

pub use wire::{McpAuth, McpServer as WireMcpServer};

use http::HeaderName;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Access, AuthPolicy};
use crate::config::ConfigError;
use crate::upstream::Upstream;

/// Longest silence allowed on an MCP stream, and longest connect timeout.
const MAX_IDLE_SECONDS: u64 = 86_400;
const MAX_CONNECT_SECONDS: u64 = 300;

#[derive(Debug)]
pub struct McpServer {
    pub name: String,
    /// Its public URL (`{public_base_url}/mcp/{name}`): what client JWTs must be for.
    pub resource: String,
    /// Where its protected-resource metadata (RFC 9728) is served.
    pub metadata_url: String,
    pub display_name: String,
    /// `None` for a group.
    pub upstream: Option<Upstream>,
    /// The upstream URL as written (empty for a group).
    pub url: String,
    /// A group's member servers, by name.
    pub members: Vec<String>,
    pub auth: McpAuth,
    pub oauth_provider: Option<String>,
    pub secret_ref: Option<String>,
    pub inject_header: HeaderName,
    pub inject_prefix: String,
    pub access: Access,
    pub enabled: bool,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub record_payloads: bool,
    /// GET streams one principal may hold open here at once.
    pub max_streams: u32,
    pub links_in_tool_results: bool,
    /// Per-tool policy (`None`: everything for everyone admitted).
    pub policy: Option<Arc<policy::Policy>>,
}

/// Validates every MCP server; the valid ones by name.
pub(super) fn build_all(
    servers: &[WireMcpServer],
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
    oauth_providers: &HashMap<String, Arc<crate::config::OAuthProvider>>,
    public_base_url: &str,
) -> HashMap<String, Arc<McpServer>> {
    let mut built = HashMap::new();
    let mut names = std::collections::HashSet::new();
    check_members(servers, errors);
    for (i, s) in servers.iter().enumerate() {
        let at = format!("mcp_servers[{i}]");
        let name_at = format!("{at}.name");
        let kind = ("MCP server", "github");
        if !crate::config::name::check_unique(kind, &s.name, &name_at, &mut names, errors) {
            continue;
        }
        if let Some(server) = build(s, &at, public_base_url, errors) {
            if let Some(o) = s
                .oauth_provider
                .as_ref()
                .filter(|o| !oauth_providers.contains_key(*o))
            {
                warnings.push(format!(
                    "MCP server `{}` uses OAuth provider `{o}`, which does not exist: its calls are refused until it does",
                    s.name
                ));
            }
            built.insert(s.name.clone(), Arc::new(server));
        }
    }
    built
}

fn build(
    s: &WireMcpServer,
    at: &str,
    public_base_url: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<McpServer> {
    let before = errors.len();
    let policy = policy::Policy::build(&s.policy, &format!("{at}.policy"), &mut |f, m| {
        errors.push(ConfigError::at(f, m))
    });
    let mut bad = |field: &str, message: String| {
        errors.push(ConfigError::at(format!("{at}.{field}"), message));
    };
    let group = !s.members.is_empty();
    if group {
        check_group(s, &mut bad);
    } else if let Err(e) = crate::config::oauth_provider::check_url(&s.url) {
        bad("url", e);
    }
    check_credential(s, &mut bad);
    let header = check_injection(s, &mut bad);
    check_limits(s, &mut bad);
    let upstream = match (
        group,
        crate::config::provider::parse_base_url(&s.name, &s.url, None),
    ) {
        (true, _) => None,
        (false, Ok(u)) => Some(u),
        (false, Err(e)) => {
            errors.push(ConfigError::at(format!("{at}.url"), e));
            None
        }
    };
    if errors.len() > before {
        return None;
    }
    Some(McpServer {
        resource: resource_of(public_base_url, &s.name),
        metadata_url: format!(
            "{public_base_url}/.well-known/oauth-protected-resource/mcp/{}",
            s.name
        ),
        name: s.name.clone(),
        display_name: s.display_name.clone().unwrap_or_else(|| s.name.clone()),
        upstream,
        url: s.url.clone(),
        members: s.members.clone(),
        auth: s.auth,
        oauth_provider: s.oauth_provider.clone(),
        secret_ref: s.secret_ref.clone(),
        inject_header: header?,
        inject_prefix: s.token_injection.prefix.clone(),
        access: Access {
            auth: s.client_auth,
            scopes: s.scopes.clone(),
            // Tokens of Sluice's issuer for this server (people signed in through Sluice's
            // authorization endpoint): valid here only.
            app_audience: Some(resource_of(public_base_url, &s.name)),
            ..Access::default()
        },
        enabled: s.enabled,
        connect_timeout: Duration::from_secs(s.timeouts.connect_seconds),
        idle_timeout: Duration::from_secs(s.timeouts.idle_seconds),
        record_payloads: s.record_payloads,
        max_streams: s.max_streams_per_principal,
        links_in_tool_results: s.links_in_tool_results,
        policy,
    })
}

/// A group names 2 to 32 distinct members and no upstream of its own (each member
/// authenticates upstream as it is configured).
fn check_group(s: &WireMcpServer, bad: &mut impl FnMut(&str, String)) {
    if !s.url.is_empty() {
        bad("url", "a group has no url: its members have theirs".into());
    }
    if s.auth != McpAuth::None {
        bad(
            "auth",
            "a group has no upstream auth: each member uses its own".into(),
        );
    }
    let mut seen = std::collections::HashSet::new();
    if !(2..=32).contains(&s.members.len()) {
        bad("members", "a group federates 2 to 32 MCP servers".into());
    }
    for (j, m) in s.members.iter().enumerate() {
        if *m == s.name || !seen.insert(m.as_str()) {
            bad(
                &format!("members[{j}]"),
                format!("`{m}` is the group itself or repeated"),
            );
        }
    }
}

/// Members name MCP servers that exist and are not groups themselves.
fn check_members(servers: &[WireMcpServer], errors: &mut Vec<ConfigError>) {
    for (i, s) in servers.iter().enumerate() {
        for (j, m) in s.members.iter().enumerate() {
            let member = servers.iter().find(|o| o.name == *m);
            let problem = match member {
                None => Some(format!("no MCP server named `{m}`")),
                Some(o) if !o.members.is_empty() => {
                    Some(format!("`{m}` is a group: groups do not nest"))
                }
                Some(_) => None,
            };
            if let Some(p) = problem {
                errors.push(ConfigError::at(format!("mcp_servers[{i}].members[{j}]"), p));
            }
        }
    }
}

/// How Sluice authenticates upstream: each `auth` with its own field, and only with it.
fn check_credential(s: &WireMcpServer, bad: &mut impl FnMut(&str, String)) {
    match (s.auth, &s.oauth_provider, &s.secret_ref) {
        (McpAuth::OauthProvider, None, _) => bad(
            "oauth_provider",
            "`auth: oauth_provider` needs the OAuth provider's name".into(),
        ),
        (McpAuth::Secret, _, None) => bad(
            "secret_ref",
            "`auth: secret` needs the name of a stored secret (scope `mcp`)".into(),
        ),
        (McpAuth::Secret, _, Some(name)) if !crate::secrets::valid_name(name) => bad(
            "secret_ref",
            format!("`{name}` is not a secret name: UPPER_SNAKE_CASE"),
        ),
        _ => {}
    }
    if s.oauth_provider.is_some() && s.auth != McpAuth::OauthProvider {
        bad("oauth_provider", "only with `auth: oauth_provider`".into());
    }
    if s.secret_ref.is_some() && s.auth != McpAuth::Secret {
        bad("secret_ref", "only with `auth: secret`".into());
    }
}

/// The header the credential goes in (not one of Sluice's own) and a printable prefix.
fn check_injection(s: &WireMcpServer, bad: &mut impl FnMut(&str, String)) -> Option<HeaderName> {
    let injection = &s.token_injection;
    let header = HeaderName::from_bytes(injection.header.as_bytes())
        .ok()
        .filter(|h| !h.as_str().starts_with("x-sluice-"));
    if header.is_none() {
        bad(
            "token_injection.header",
            format!("`{}` is not a header Sluice may set", injection.header),
        );
    }
    if http::HeaderValue::from_str(&injection.prefix).is_err() {
        bad(
            "token_injection.prefix",
            "must be printable text (e.g. `Bearer `)".into(),
        );
    }
    header
}

/// Client policy and timeouts within their bounds.
fn check_limits(s: &WireMcpServer, bad: &mut impl FnMut(&str, String)) {
    if s.client_auth == AuthPolicy::None && !s.scopes.is_empty() {
        bad("client_auth", "`none` cannot require scopes".into());
    }
    if s.client_auth == AuthPolicy::ClientCert {
        bad(
            "client_auth",
            "MCP servers take tokens (`token`, `jwt`, `any`) or `none`".into(),
        );
    }
    if s.timeouts.idle_seconds == 0 || s.timeouts.idle_seconds > MAX_IDLE_SECONDS {
        bad(
            "timeouts.idle_seconds",
            format!("between 1 and {MAX_IDLE_SECONDS}"),
        );
    }
    if s.timeouts.connect_seconds == 0 || s.timeouts.connect_seconds > MAX_CONNECT_SECONDS {
        bad(
            "timeouts.connect_seconds",
            format!("between 1 and {MAX_CONNECT_SECONDS}"),
        );
    }
    if !(1..=10_000).contains(&s.max_streams_per_principal) {
        bad("max_streams_per_principal", "between 1 and 10000".into());
    }
}

/// The resource URL of MCP server `name` (RFC 8707 `resource`, the `aud` of Sluice's tokens for it).
pub fn resource_of(public_base_url: &str, name: &str) -> String {
    format!("{public_base_url}/mcp/{name}")
}
