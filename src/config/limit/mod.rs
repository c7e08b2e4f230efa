//! Limits: rate and concurrency allowances per token, owner, route or app. The limit as
//! written is `wire`; the request path's counters are `crate::limits`.

pub mod wire;

use std::collections::HashSet;

use crate::config::route::Route;
use crate::config::ConfigError;

/// A limit's or budget's name: the one name rule (`config::name`), unique in its list.
pub(crate) fn check_name<'a>(
    kind: &str,
    name: &'a str,
    at: &str,
    names: &mut HashSet<&'a str>,
    errors: &mut Vec<ConfigError>,
) {
    crate::config::name::check_unique((kind, "ci-bot"), name, at, names, errors);
}

/// A `route` selector names a route's prefix, a `provider` one a provider some route serves.
pub(crate) fn check_targets(
    route: Option<&str>,
    provider: Option<&str>,
    routes: &[Route],
    at: &dyn Fn(&str) -> String,
    errors: &mut Vec<ConfigError>,
) {
    if let Some(p) = provider {
        if !routes.iter().any(|r| r.provider.name == p) {
            errors.push(ConfigError::at(
                at("provider"),
                format!("no route serves a provider named `{p}`"),
            ));
        }
    }
    if let Some(route) = route {
        if !routes.iter().any(|r| !r.intercept && r.prefix == route) {
            errors.push(ConfigError::at(
                at("route"),
                format!("no route has the prefix `{route}`"),
            ));
        }
    }
}

/// Names unique and well formed, at least one allowance each and none zero, the route a route.
pub(crate) fn check_all(
    limits: &[wire::Limit],
    routes: &[Route],
    mcp_servers: &[crate::config::wire::McpServer],
    errors: &mut Vec<ConfigError>,
) {
    let mut names = HashSet::new();
    for (i, l) in limits.iter().enumerate() {
        let at = |field: &str| format!("limits[{i}].{field}");
        check_name("limit", &l.name, &at("name"), &mut names, errors);
        let allowances = [
            ("requests_per_second", l.requests_per_second.map(u64::from)),
            ("requests_per_minute", l.requests_per_minute.map(u64::from)),
            ("tokens_per_minute", l.tokens_per_minute),
            ("concurrent", l.concurrent.map(u64::from)),
        ];
        if allowances.iter().all(|(_, v)| v.is_none()) {
            errors.push(ConfigError::at(
                at("name"),
                "a limit needs at least one of requests_per_second, requests_per_minute, \
                 tokens_per_minute, concurrent",
            ));
        }
        for (field, v) in allowances {
            if v == Some(0) {
                errors.push(ConfigError::at(
                    at(field),
                    "must be at least 1 (to refuse everything, remove the route or revoke the token)",
                ));
            }
        }
        check_targets(
            l.route.as_deref(),
            l.provider.as_deref(),
            routes,
            &at,
            errors,
        );
        check_endpoint(l, &at, errors);
        check_mcp_server(l, mcp_servers, &at, errors);
    }
}

/// A limit on one of Sluice's own endpoints (`endpoint:`): its callers are not authenticated
/// yet, so it names nothing else and counts per source or in all.
fn check_endpoint(l: &wire::Limit, at: &dyn Fn(&str) -> String, errors: &mut Vec<ConfigError>) {
    if l.endpoint.is_none() {
        return;
    }
    let selectors = [
        l.route.is_some(),
        l.provider.is_some(),
        l.owner.is_some(),
        l.token.is_some(),
        l.app.is_some(),
        l.mcp_server.is_some(),
    ];
    if selectors.iter().any(|s| *s) {
        errors.push(ConfigError::at(
            at("endpoint"),
            "its callers are not authenticated yet: name no route, provider, owner, token, app or MCP server",
        ));
    }
    if l.tokens_per_minute.is_some() {
        errors.push(ConfigError::at(
            at("tokens_per_minute"),
            "Sluice's own endpoints use no model tokens: limit requests or concurrency",
        ));
    }
    if matches!(
        l.per,
        crate::limits::spec::Per::Principal
            | crate::limits::spec::Per::Owner
            | crate::limits::spec::Per::Token
    ) {
        errors.push(ConfigError::at(
            at("per"),
            "its callers are not authenticated yet: `per: source` or `all`",
        ));
    }
}

/// A limit on an MCP server (`mcp_server:`): a server that exists, and no route or provider.
fn check_mcp_server(
    l: &wire::Limit,
    mcp_servers: &[crate::config::wire::McpServer],
    at: &dyn Fn(&str) -> String,
    errors: &mut Vec<ConfigError>,
) {
    if let Some(server) = &l.mcp_server {
        if !mcp_servers.iter().any(|m| &m.name == server) {
            errors.push(ConfigError::at(
                at("mcp_server"),
                format!("no MCP server named `{server}`"),
            ));
        }
        if l.route.is_some() || l.provider.is_some() {
            errors.push(ConfigError::at(
                at("mcp_server"),
                "an MCP server is neither a route nor a provider: give one of them",
            ));
        }
        if l.tokens_per_minute.is_some() {
            errors.push(ConfigError::at(
                at("tokens_per_minute"),
                "MCP answers carry no token usage: limit requests or concurrency",
            ));
        }
    }
}
