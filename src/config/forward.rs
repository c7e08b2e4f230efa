//! The forward proxy's policy as the snapshot holds it, and one intercept route per provider
//! that names `intercept_hosts`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::provider::Provider;
use super::route::{issuer_indices, Route};
use super::wire::{self, AuthPolicy};
use super::ConfigError;
use crate::auth::jwt::JwtVerifier;
use crate::auth::Access;
use crate::forward::policy::{ForwardPolicy, HostPattern};
use crate::metrics::RouteMetrics;

/// `10.0.0.0/8`, `192.0.2.7` or `2001:db8::1` as a network.
fn parse_net(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

pub(super) fn build(
    forward: &wire::Forward,
    providers: &[Arc<Provider>],
    routes: &mut Vec<Route>,
    jwt: &JwtVerifier,
    declared_issuers: &[wire::Issuer],
    errors: &mut Vec<ConfigError>,
) -> ForwardPolicy {
    let wire::Forward {
        policy,
        allow_hosts: _,
        deny_hosts: _,
        ports,
        allow_cidrs: _,
        auth,
        scopes,
        issuers,
        audit,
        ca_cert: _,
        ca_key: _,
        head_timeout_seconds,
        connect_timeout_seconds,
        tunnel_idle_seconds,
    } = forward;
    if matches!(*auth, AuthPolicy::None | AuthPolicy::ClientCert) {
        errors.push(ConfigError::at(
            "forward.auth",
            "the forward proxy always authenticates with a credential: use `token`, `jwt` or `any`",
        ));
    }
    let lists = host_lists(forward, errors);
    for (j, port) in ports.iter().enumerate() {
        if *port == 0 {
            errors.push(ConfigError::at(
                format!("forward.ports[{j}]"),
                "port 0 is not a port",
            ));
        }
    }
    for (field, value) in [
        ("head_timeout_seconds", head_timeout_seconds),
        ("connect_timeout_seconds", connect_timeout_seconds),
        ("tunnel_idle_seconds", tunnel_idle_seconds),
    ] {
        if *value == 0 {
            errors.push(ConfigError::at(
                format!("forward.{field}"),
                "must be at least 1",
            ));
        }
    }
    let access = Access {
        auth: *auth,
        scopes: scopes.clone(),
        issuers: issuer_indices(issuers, jwt, declared_issuers, "forward", errors),
        required_claims: BTreeMap::new(),
        app_audience: None,
    };
    let intercept = intercept_routes(providers, routes, &access, *audit, errors);
    ForwardPolicy {
        access,
        audit: *audit,
        tunnel: *policy,
        allow_hosts: lists.allow_hosts,
        deny_hosts: lists.deny_hosts,
        ports: ports.clone(),
        allow_cidrs: lists.allow_cidrs,
        deny_cidrs: lists.deny_cidrs,
        intercept,
        head_timeout: Duration::from_secs(*head_timeout_seconds),
        connect_timeout: Duration::from_secs(*connect_timeout_seconds),
        tunnel_idle: Duration::from_secs(*tunnel_idle_seconds),
    }
}

/// `allow_hosts`, `deny_hosts` (names, and addresses or CIDRs) and `allow_cidrs`, parsed.
struct HostLists {
    allow_hosts: Vec<HostPattern>,
    deny_hosts: Vec<HostPattern>,
    allow_cidrs: Vec<ipnet::IpNet>,
    deny_cidrs: Vec<ipnet::IpNet>,
}

fn host_lists(forward: &wire::Forward, errors: &mut Vec<ConfigError>) -> HostLists {
    let mut allow_hosts = Vec::new();
    for (j, h) in forward.allow_hosts.iter().enumerate() {
        match HostPattern::parse(h) {
            Ok(p) => allow_hosts.push(p),
            Err(e) => errors.push(ConfigError::at(format!("forward.allow_hosts[{j}]"), e)),
        }
    }
    // An address or CIDR in `deny_hosts` also refuses every name that resolves into it.
    let mut deny_hosts = Vec::new();
    let mut deny_cidrs = Vec::new();
    for (j, h) in forward.deny_hosts.iter().enumerate() {
        deny_cidrs.extend(parse_net(h));
        if h.contains('/') {
            if parse_net(h).is_none() {
                errors.push(ConfigError::at(
                    format!("forward.deny_hosts[{j}]"),
                    format!("`{h}` is not a CIDR (e.g. 203.0.113.0/24)"),
                ));
            }
            continue;
        }
        match HostPattern::parse(h) {
            Ok(p) => deny_hosts.push(p),
            Err(e) => errors.push(ConfigError::at(format!("forward.deny_hosts[{j}]"), e)),
        }
    }
    let mut allow_cidrs = Vec::new();
    for (j, c) in forward.allow_cidrs.iter().enumerate() {
        match c.parse::<ipnet::IpNet>() {
            Ok(net) => allow_cidrs.push(net),
            Err(_) => errors.push(ConfigError::at(
                format!("forward.allow_cidrs[{j}]"),
                format!("`{c}` is not a CIDR (e.g. 10.0.0.0/8)"),
            )),
        }
    }
    HostLists {
        allow_hosts,
        deny_hosts,
        allow_cidrs,
        deny_cidrs,
    }
}

/// One intercept route per provider with `intercept_hosts`; returns host → route index.
fn intercept_routes(
    providers: &[Arc<Provider>],
    routes: &mut Vec<Route>,
    access: &Access,
    audit: bool,
    errors: &mut Vec<ConfigError>,
) -> HashMap<String, usize> {
    let mut intercept = HashMap::new();
    for (i, provider) in providers.iter().enumerate() {
        if provider.intercept_hosts.is_empty() {
            continue;
        }
        let idx = routes.len();
        for (j, host) in provider.intercept_hosts.iter().enumerate() {
            if let Some(other) = intercept.insert(host.clone(), idx) {
                let owner = &routes[other].provider.name;
                errors.push(ConfigError::at(
                    format!("providers[{i}].intercept_hosts[{j}]"),
                    format!("`{host}` is already intercepted for provider `{owner}`"),
                ));
            }
        }
        // Intercepted traffic is admitted as the declared route that reaches the provider
        // (the first one written): its scopes, issuers and claims on top of the proxy's, and
        // its `route:` limits and budgets.
        let reached = routes
            .iter()
            .find(|r| !r.intercept && r.provider.name == provider.name);
        let (access, label) = match reached {
            Some(r) => (r.access.clone(), r.label.clone()),
            None => (access.clone(), "forward".to_owned()),
        };
        routes.push(Route {
            prefix: String::new(),
            provider: provider.clone(),
            access,
            open: Vec::new(),
            token_lifetime: None,
            intercept: true,
            principal_header: None,
            audit,
            fallback: None,
            metrics: RouteMetrics::new(&label, &provider.name),
            label,
        });
    }
    intercept
}
