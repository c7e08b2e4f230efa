//! Agents: teams' HTTP APIs served at `/agents/{agent}/{environment}/…`. Each enabled
//! environment becomes a route to a provider of kind `http` (nothing injected, client
//! credentials stripped) with the environment's auth setting and its open operations, so it
//! passes through the same filters, audit and metrics as any route. The agent as written is
//! `wire`.

pub mod wire;

pub use wire::Agent as WireAgent;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Access, AuthPolicy};
use crate::balance::KeyPool;
use crate::config::name::check_unique;
use crate::config::provider::{parse_base_url, Provider};
use crate::config::route::{OpenOperation, Route};
use crate::config::wire::{CredentialMode, ProviderKind};
use crate::config::ConfigError;
use crate::metrics::RouteMetrics;

/// Where agents are served.
pub const PREFIX: &str = "/agents";
/// The `client_id` of the control plane's test tokens (they belong to no app).
pub const TEST_CLIENT: &str = "sluice-test";

/// The URL an agent environment is invoked at, and the audience of the tokens it takes.
pub fn invoke_url(base_url: &str, agent: &str, env: &str) -> String {
    format!("{base_url}{PREFIX}/{agent}/{env}")
}

/// The audiences of the built-in issuer: the environments with `auth: oauth`.
pub(super) fn oauth_audiences(agents: &[WireAgent], base_url: &str) -> Vec<String> {
    agents
        .iter()
        .flat_map(|a| {
            a.environments
                .iter()
                .filter(|e| e.auth == wire::AgentAuth::Oauth)
                .map(|e| invoke_url(base_url, &a.name, &e.name))
        })
        .collect()
}

/// The routes of every enabled agent environment; `builtin` is the index of Sluice's own
/// issuer among the trusted issuers (`None` before the control plane made a signing key).
pub(super) fn build_all(
    agents: &[WireAgent],
    base_url: &str,
    builtin: Option<usize>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Vec<Route> {
    let mut built = Vec::new();
    let mut names = HashSet::new();
    for (i, a) in agents.iter().enumerate() {
        let at = format!("agents[{i}]");
        let name_at = format!("{at}.name");
        if !check_unique(
            ("agent", "support-bot"),
            &a.name,
            &name_at,
            &mut names,
            errors,
        ) {
            continue;
        }
        if !(60..=86_400).contains(&a.token_lifetime_seconds) {
            errors.push(ConfigError::at(
                format!("{at}.token_lifetime_seconds"),
                format!("{} is not between 60 and 86400", a.token_lifetime_seconds),
            ));
        }
        let mut envs = HashSet::new();
        for (j, env) in a.environments.iter().enumerate() {
            let env_at = format!("{at}.environments[{j}]");
            let name_at = format!("{env_at}.name");
            if !check_unique(
                ("environment", "prod"),
                &env.name,
                &name_at,
                &mut envs,
                errors,
            ) {
                continue;
            }
            if env.auth == wire::AgentAuth::Oauth && builtin.is_none() {
                warnings.push(format!(
                    "agent `{}` environment `{}` takes tokens of Sluice's issuer, which has no signing key yet: its calls are refused",
                    a.name, env.name
                ));
            }
            let audience = invoke_url(base_url, &a.name, &env.name);
            if let Some(mut route) = build(&a.name, env, &env_at, (builtin, audience), errors) {
                route.token_lifetime = Some(a.token_lifetime_seconds);
                built.extend(env.enabled.then_some(route));
            }
        }
    }
    built
}

fn build(
    agent: &str,
    env: &wire::Environment,
    at: &str,
    (builtin, audience): (Option<usize>, String),
    errors: &mut Vec<ConfigError>,
) -> Option<Route> {
    let before = errors.len();
    let name = format!("{agent}.{}", env.name);
    let upstream = parse_base_url(&name, &env.url, None)
        .map_err(|e| errors.push(ConfigError::at(format!("{at}.url"), e)))
        .ok();
    if env.auth == wire::AgentAuth::None && !env.scopes.is_empty() {
        errors.push(ConfigError::at(
            format!("{at}.scopes"),
            "scopes need `auth: token`",
        ));
    }
    let mut open = Vec::new();
    for (k, op) in env.exceptions.iter().enumerate() {
        match OpenOperation::parse(&op.method, &op.path) {
            Ok(o) => open.push(o),
            Err(e) => errors.push(ConfigError::at(format!("{at}.exceptions[{k}]"), e)),
        }
    }
    let upstream = upstream?;
    if errors.len() > before {
        return None;
    }
    let prefix = format!("{PREFIX}/{agent}/{}", env.name);
    let provider = Arc::new(Provider {
        name: name.clone(),
        kind: ProviderKind::Http,
        credentials: CredentialMode::None,
        oauth_provider: None,
        upstream,
        intercept_hosts: Vec::new(),
        keys: Vec::new(),
        pool: KeyPool::build(Vec::new()),
        quarantine: Duration::ZERO,
        cooldown: Duration::ZERO,
        affinity: false,
    });
    let access = match env.auth {
        wire::AgentAuth::Token => Access {
            auth: AuthPolicy::Token,
            scopes: env.scopes.clone(),
            ..Access::default()
        },
        // Only Sluice's issuer, only tokens for this environment (its audience set holds every
        // `oauth` environment; the claim pins this one).
        wire::AgentAuth::Oauth => Access {
            auth: AuthPolicy::Jwt,
            scopes: env.scopes.clone(),
            issuers: Some(builtin.into_iter().collect()),
            required_claims: [("aud".to_owned(), audience.clone())].into(),
            app_audience: Some(audience),
        },
        wire::AgentAuth::None => Access {
            auth: AuthPolicy::None,
            ..Access::default()
        },
    };
    Some(Route {
        metrics: RouteMetrics::new(&prefix, &name),
        label: prefix.clone(),
        prefix,
        provider,
        access,
        open,
        token_lifetime: None,
        intercept: false,
        principal_header: None,
        audit: true,
        fallback: None,
    })
}
