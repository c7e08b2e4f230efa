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
use crate::config::provider::{parse_base_url, valid_name, Provider};
use crate::config::route::{OpenOperation, Route};
use crate::config::wire::{CredentialMode, ProviderKind};
use crate::config::ConfigError;
use crate::metrics::RouteMetrics;

/// Where agents are served.
pub const PREFIX: &str = "/agents";

/// The routes of every enabled agent environment.
pub(super) fn build_all(agents: &[WireAgent], errors: &mut Vec<ConfigError>) -> Vec<Route> {
    let mut built = Vec::new();
    let mut names = HashSet::new();
    for (i, a) in agents.iter().enumerate() {
        let at = format!("agents[{i}]");
        if !valid_name(&a.name) || !names.insert(a.name.as_str()) {
            errors.push(ConfigError::at(
                format!("{at}.name"),
                format!(
                    "`{}` must be unique, lowercase letters, digits and hyphens",
                    a.name
                ),
            ));
            continue;
        }
        let mut envs = HashSet::new();
        for (j, env) in a.environments.iter().enumerate() {
            let env_at = format!("{at}.environments[{j}]");
            if !valid_name(&env.name) || !envs.insert(env.name.as_str()) {
                errors.push(ConfigError::at(
                    format!("{env_at}.name"),
                    format!(
                        "`{}` must be unique within the agent, lowercase letters, digits and hyphens",
                        env.name
                    ),
                ));
                continue;
            }
            if let Some(route) = build(&a.name, env, &env_at, errors) {
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
    });
    let auth = match env.auth {
        wire::AgentAuth::Token => AuthPolicy::Token,
        wire::AgentAuth::None => AuthPolicy::None,
    };
    Some(Route {
        metrics: RouteMetrics::new(&prefix, &name),
        prefix,
        provider,
        access: Access {
            auth,
            scopes: env.scopes.clone(),
            ..Access::default()
        },
        open,
        intercept: false,
        principal_header: None,
        audit: true,
    })
}
