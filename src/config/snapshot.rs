//! The validated, immutable configuration one request sees, with everything the hot path needs
//! precomputed: resolved secrets and ready-made auth header values, pick tables, metric handles,
//! token digests, and routes ordered for longest-prefix matching.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use super::mcp_server::McpServer;
use super::oauth_provider::OAuthProvider;
use super::provider::Provider;
use super::route::Route;
use super::wire::{self, AuthPolicy};
use super::{
    agent as agents, budget, forward, issuer, limit, mcp_server, oauth_provider, provider, route,
    token, ConfigError,
};
use crate::auth::jwks::JwksRegistry;
use crate::auth::jwt::JwtVerifier;
use crate::auth::opaque::TokenRecord;
use crate::auth::usage::UsageRegistry;
use crate::balance::HealthRegistry;
use crate::forward::policy::ForwardPolicy;
use crate::secrets::Secret;

#[derive(Debug)]
pub struct Snapshot {
    pub revision: u64,
    pub providers: Vec<Arc<Provider>>,
    /// Longest prefix first.
    pub routes: Vec<Route>,
    /// Opaque token records by id.
    pub tokens: HashMap<String, TokenRecord>,
    /// Trusted issuers and the verified-JWT cache (a new snapshot starts a new cache, so a
    /// changed audience or issuer list applies to tokens already seen).
    pub jwt: JwtVerifier,
    pub forward: ForwardPolicy,
    /// Every declared owner (the file's and the store's) and its admin-API access.
    pub owners: HashMap<String, OwnerAccess>,
    /// Upstream OAuth providers by name (validated; the vault and MCP servers use them).
    pub oauth_providers: HashMap<String, Arc<OAuthProvider>>,
    /// MCP servers by name (`/mcp/{name}`).
    pub mcp_servers: HashMap<String, Arc<McpServer>>,
    /// What clients and browsers reach the proxy listener at (`Config::public_base_url`).
    pub public_base_url: String,
    /// The built-in issuer's public keys as a JWKS document (`/oauth2/jwks`).
    pub builtin_jwks: serde_json::Value,
    /// Client ids of the built-in issuer's apps: a token whose app is gone is refused.
    pub live_apps: std::collections::HashSet<String>,
    /// Index of Sluice's own issuer among `jwt.issuers`.
    pub builtin_issuer: Option<usize>,
    /// The issuer people sign in at (Sluice as the authorization server of its MCP servers).
    pub sign_in: Option<super::issuer::SignIn>,
    /// `jti`s of the built-in issuer's tokens revoked before they expire.
    pub revoked_tokens: std::collections::HashSet<String>,
    /// People an operator signed out everywhere, with when: Sluice's tokens, sessions and
    /// refresh tokens issued to them until then are refused.
    pub signed_out: HashMap<String, u64>,
    /// Client ids of Sluice's authorization endpoint an operator revoked: every token of
    /// theirs is refused.
    pub revoked_clients: std::collections::HashSet<String>,
    /// The algorithm and rotation of the built-in issuer's keys (applied by the control plane).
    pub signing: wire::BuiltinIssuer,
    /// The control plane's revision included (0 when there is no control plane).
    pub control_revision: u64,
    /// Rate and concurrency limits, checked at admission.
    pub limits: crate::limits::Limits,
    /// Spend caps, checked at admission and charged with each answer's usage.
    pub budgets: crate::budgets::Budgets,
    /// Non-fatal findings (e.g. an optional key whose secret is not set), logged on publish.
    pub warnings: Vec<String>,
}

impl BuildContext {
    /// Forgets the key health and signing keys of keys and issuers no longer configured.
    fn retain_live(&self, providers: &[Arc<Provider>], jwt: &JwtVerifier) {
        let live_keys: Vec<(String, String)> = providers
            .iter()
            .flat_map(|p| p.keys.iter().map(|k| (p.name.clone(), k.id.clone())))
            .collect();
        self.health.retain(&live_keys);
        let live_issuers: Vec<_> = jwt.issuers.iter().map(|t| t.keys.clone()).collect();
        self.jwks.retain(&live_issuers);
    }
}

/// What an owner's tokens may do on the admin API: a role's permissions and named ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerAccess {
    pub role: Option<wire::Role>,
    pub permissions: Vec<String>,
}

impl OwnerAccess {
    /// An owner's name and access, as the snapshot keeps them.
    fn of(o: &wire::Owner) -> (String, OwnerAccess) {
        let access = OwnerAccess {
            role: o.role,
            permissions: o.permissions.clone(),
        };
        (o.name.clone(), access)
    }

    pub fn privileged(&self) -> bool {
        self.role.is_some() || !self.permissions.is_empty()
    }
}

/// What a build needs from outside the file: the revision to stamp, and state that outlives a
/// snapshot (key health, issuers' signing keys, token last-use times).
#[derive(Debug, Default)]
pub struct BuildContext {
    pub revision: u64,
    pub health: Arc<HealthRegistry>,
    pub jwks: Arc<JwksRegistry>,
    pub usage: Arc<UsageRegistry>,
    /// The limits' counters, kept across reloads.
    pub limits: Arc<crate::limits::Registry>,
    /// The budgets' spend, kept across reloads (and restarts, through `budgets.json`).
    pub budgets: Arc<crate::budgets::Registry>,
    /// Secret values from the control plane's store, for `secret_ref: "secret:NAME"`.
    pub secrets: HashMap<String, Secret>,
    /// The control plane's revision these resources come from (0: none).
    pub control_revision: u64,
}

impl crate::auth::CredentialIndex for Snapshot {
    fn token_record(&self, id: &str) -> Option<&TokenRecord> {
        self.tokens.get(id)
    }

    fn jwt_verifier(&self) -> &JwtVerifier {
        &self.jwt
    }

    fn revoked(&self, principal: &crate::auth::Principal) -> bool {
        self.app_token_revoked(principal)
    }
}

impl Snapshot {
    /// An empty snapshot (revision 0) that answers every request with "no route".
    pub fn empty() -> Snapshot {
        Snapshot {
            revision: 0,
            providers: Vec::new(),
            routes: Vec::new(),
            tokens: HashMap::new(),
            jwt: JwtVerifier::new(Vec::new()),
            forward: forward::build(
                &wire::Forward::default(),
                &[],
                &mut Vec::new(),
                &JwtVerifier::new(Vec::new()),
                &[],
                &mut Vec::new(),
            ),
            owners: HashMap::new(),
            oauth_providers: HashMap::new(),
            mcp_servers: HashMap::new(),
            public_base_url: String::new(),
            builtin_jwks: serde_json::json!({ "keys": [] }),
            live_apps: Default::default(),
            builtin_issuer: None,
            sign_in: None,
            revoked_tokens: Default::default(),
            signed_out: HashMap::new(),
            revoked_clients: Default::default(),
            signing: wire::BuiltinIssuer::default(),
            control_revision: 0,
            limits: Default::default(),
            budgets: Default::default(),
            warnings: Vec::new(),
        }
    }

    /// A token of Sluice's issuer that was revoked (RFC 7009) or whose app was deleted: refused
    /// from the revision that says so on. Test tokens belong to no app.
    ///
    /// A signed-in person's token is refused as well once its client was revoked or sign-in
    /// at its issuer is no longer configured.
    pub fn app_token_revoked(&self, principal: &crate::auth::Principal) -> bool {
        if !principal.audience_bound {
            return false;
        }
        let jti_revoked = principal.claims["jti"]
            .as_str()
            .is_some_and(|j| self.revoked_tokens.contains(j));
        match (&principal.identity, principal.app()) {
            (_, Some(client_id)) => {
                jti_revoked
                    || (client_id != super::agent::TEST_CLIENT
                        && !self.live_apps.contains(client_id))
            }
            (crate::auth::Identity::Jwt { issuer, .. }, None) => {
                let client = principal.claims["client_id"].as_str().unwrap_or_default();
                // Milliseconds where Sluice wrote them; else the end of the `iat` second.
                let issued = principal.claims[crate::auth::jwt::ISSUED_MS]
                    .as_u64()
                    .or_else(|| principal.claims["iat"].as_u64().map(|s| s * 1000 + 999))
                    .unwrap_or(0);
                jti_revoked
                    || self.revoked_clients.contains(client)
                    || self.sign_in.as_ref().is_none_or(|s| s.issuer != *issuer)
                    || self.signed_out_since(&principal.key, issued)
            }
            _ => true,
        }
    }

    /// Whether `principal` was signed out everywhere at or after `at_ms` (Unix milliseconds):
    /// what Sluice issued them then is refused.
    pub fn signed_out_since(&self, principal: &str, at_ms: u64) -> bool {
        self.signed_out
            .get(principal)
            .is_some_and(|since| at_ms <= *since)
    }

    /// The route of an enabled agent environment.
    pub fn agent_route(&self, agent: &str, env: &str) -> Option<&Route> {
        let prefix = format!("{}/{agent}/{env}", super::agent::PREFIX);
        self.routes.iter().find(|r| r.prefix == prefix)
    }

    /// The route of an enabled agent environment that takes tokens of Sluice's issuer, with the
    /// audience they must name.
    pub fn oauth_environment(&self, agent: &str, env: &str) -> Option<(&Route, &str)> {
        let route = self.agent_route(agent, env)?;
        Some((route, route.audience()?))
    }

    /// The route whose prefix matches `path` on a segment boundary, longest prefix first.
    pub fn route(&self, path: &str) -> Option<(usize, &Route)> {
        self.routes.iter().enumerate().find(|(_, r)| {
            !r.intercept
                && path
                    .strip_prefix(r.prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    /// Validates `config` whole and builds a snapshot, or returns every problem found.
    /// Relative `ca_file` paths are taken from `base` (the config file's directory).
    pub fn build(
        config: &wire::Config,
        issuer: &super::stored::IssuerState,
        base: &Path,
        ctx: &BuildContext,
    ) -> Result<Snapshot, Vec<ConfigError>> {
        let super::stored::IssuerState {
            signing_keys,
            live_apps,
            revoked_tokens,
            signed_out,
            revoked_clients,
        } = issuer;
        // Destructured without `..`: a new field does not compile until it is handled here.
        let wire::Config {
            listeners,
            data_dir: _,
            server,
            audit: _,
            providers,
            routes,
            tokens,
            owners,
            issuers,
            // The forward policy: `build_routes`; limits, budgets, prices: `controls`.
            forward: _,
            // OAuth providers, MCP servers and the public URL: `gateway_resources`.
            oauth_providers: _,
            mcp_servers: _,
            // Agents: `build_routes` and `build_issuers`.
            agents: _,
            builtin_issuer,
            public_base_url: _,
            limits: _,
            budgets: _,
            prices: _,
        } = config;
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        check_listeners(listeners, &mut errors);
        check_server(server, &mut errors);
        check_client_cert_routes(config, &mut errors);

        // In dependency order: routes name providers and issuers; the forward proxy adds one
        // intercept route per provider; tokens name owners.
        let built = provider::build_all(providers, base, ctx, &mut errors, &mut warnings);
        let base_url = config.public_base_url();
        let (jwt, builtin_idx, builtin_jwks) =
            build_issuers(config, signing_keys, &base_url, ctx, &mut errors);
        let (built_routes, forward) = build_routes(
            config,
            (&built, &jwt, builtin_idx, &base_url),
            &mut errors,
            &mut warnings,
        );
        let built_tokens = token::build_all(tokens, owners, ctx, &mut errors);
        let (oauth_providers, mcp_servers) =
            gateway_resources(config, &built, &base_url, &mut errors, &mut warnings);
        let sign_in = issuer::sign_in(issuers, &oauth_providers, &jwt, &mut errors);
        no_credential_can_pass(routes, tokens, issuers, &mut warnings);
        check_controls(config, &built_routes, &mut errors);

        if !errors.is_empty() {
            return Err(errors);
        }
        ctx.retain_live(&built, &jwt);
        let (limits, budgets) = controls(config, ctx);
        Ok(Snapshot {
            revision: ctx.revision,
            providers: built,
            routes: built_routes,
            tokens: built_tokens,
            jwt,
            forward,
            owners: owners.iter().map(OwnerAccess::of).collect(),
            oauth_providers,
            mcp_servers,
            public_base_url: base_url,
            builtin_jwks,
            live_apps: live_apps.iter().cloned().collect(),
            builtin_issuer: builtin_idx,
            sign_in,
            revoked_tokens: revoked_tokens.iter().cloned().collect(),
            signed_out: signed_out.iter().cloned().collect(),
            revoked_clients: revoked_clients.iter().cloned().collect(),
            signing: *builtin_issuer,
            control_revision: ctx.control_revision,
            limits,
            budgets,
            warnings,
        })
    }
}

/// The declared routes, the agents' environments and the forward proxy's intercept routes (in
/// that order: the intercept routes are referred to by index), with the forward policy.
fn build_routes(
    config: &wire::Config,
    (built, jwt, builtin_idx, base_url): (&[Arc<Provider>], &JwtVerifier, Option<usize>, &str),
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> (Vec<Route>, ForwardPolicy) {
    let (providers, issuers) = (&config.providers, &config.issuers);
    let mut routes = route::build_all(&config.routes, built, providers, jwt, issuers, errors);
    let agent_routes = (config.agents.as_slice(), base_url, builtin_idx);
    add_agents(&mut routes, agent_routes, errors, warnings);
    let forward = forward::build(&config.forward, built, &mut routes, jwt, issuers, errors);
    (routes, forward)
}

/// Limits, budgets and prices name routes and providers that exist.
fn check_controls(config: &wire::Config, routes: &[Route], errors: &mut Vec<ConfigError>) {
    limit::check_all(&config.limits, routes, &config.mcp_servers, errors);
    budget::check_all(&config.budgets, &config.prices, routes, errors);
}

/// The limits and budgets of a valid config, with the counters and spend of the unchanged ones.
fn controls(
    config: &wire::Config,
    ctx: &BuildContext,
) -> (crate::limits::Limits, crate::budgets::Budgets) {
    let prices = crate::budgets::Prices::new(&config.prices);
    (
        ctx.limits.build(&config.limits),
        ctx.budgets.build(&config.budgets, prices),
    )
}

/// The OAuth providers and MCP servers, and the checks of the gateway's own paths.
fn gateway_resources(
    config: &wire::Config,
    built: &[Arc<Provider>],
    base_url: &str,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> (
    HashMap<String, Arc<OAuthProvider>>,
    HashMap<String, Arc<McpServer>>,
) {
    let oauth_providers =
        oauth_provider::build_all(&config.oauth_providers, &config.issuers, errors, warnings);
    let mcp_servers = mcp_server::build_all(
        &config.mcp_servers,
        errors,
        warnings,
        &oauth_providers,
        base_url,
    );
    check_gateway_paths(
        config.public_base_url.as_deref(),
        &config.routes,
        built,
        &oauth_providers,
        errors,
        warnings,
    );
    (oauth_providers, mcp_servers)
}

/// The trusted issuers, Sluice's own last (once the control plane has made a signing key) with
/// its index, and its keys as a JWKS document.
fn build_issuers(
    config: &wire::Config,
    signing_keys: &[serde_json::Value],
    base_url: &str,
    ctx: &BuildContext,
    errors: &mut Vec<ConfigError>,
) -> (JwtVerifier, Option<usize>, serde_json::Value) {
    let jwks = serde_json::json!({ "keys": signing_keys });
    // Agent environments taking app tokens, and MCP servers taking the tokens of people
    // signed in through Sluice's authorization endpoint (each token names one of them).
    let mut audiences = agents::oauth_audiences(&config.agents, base_url);
    audiences.extend(
        config
            .mcp_servers
            .iter()
            .map(|s| mcp_server::resource_of(base_url, &s.name)),
    );
    audiences.push(issuer::CONSOLE_AUDIENCE.to_owned());
    let builtin = issuer::builtin(base_url, &jwks, &audiences);
    let has_builtin = builtin.is_some();
    let jwt = issuer::build_all(&config.issuers, ctx, builtin, errors);
    let index = has_builtin.then(|| jwt.issuers.len() - 1);
    (jwt, index, jwks)
}

/// Agents' routes beside the declared ones (a route declared at an agent's prefix is an error),
/// longest prefix first again.
fn add_agents(
    routes: &mut Vec<Route>,
    (agents, base_url, builtin): (&[wire::Agent], &str, Option<usize>),
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) {
    for r in agents::build_all(agents, base_url, builtin, errors, warnings) {
        if routes.iter().any(|d| d.prefix == r.prefix) {
            errors.push(ConfigError::at(
                "agents",
                format!(
                    "a route is declared at `{}`, where an agent environment is served",
                    r.prefix
                ),
            ));
        }
        routes.push(r);
    }
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
}

/// A warning when routes require credentials but no token or issuer is declared.
fn no_credential_can_pass(
    routes: &[wire::Route],
    tokens: &[wire::Token],
    issuers: &[wire::Issuer],
    warnings: &mut Vec<String>,
) {
    let refuse_all = routes
        .iter()
        .any(|r| matches!(r.auth, AuthPolicy::Token | AuthPolicy::Any))
        && tokens.is_empty()
        && issuers.is_empty();
    if refuse_all {
        warnings.push("routes require credentials but no `tokens` or `issuers` are declared: they refuse every request".into());
    }
}

/// What the gateway's own paths need: a valid `public_base_url`, no route under them, and the
/// OAuth providers that `credentials: oauth` providers name (a warning: they may come later).
fn check_gateway_paths(
    public_base_url: Option<&str>,
    routes: &[wire::Route],
    built: &[Arc<Provider>],
    oauth_providers: &HashMap<String, Arc<OAuthProvider>>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) {
    if let Some(url) = public_base_url {
        check_public_base_url(url, errors);
    }
    for (i, r) in routes
        .iter()
        .enumerate()
        .filter(|(_, r)| reserved_prefix(&r.prefix))
    {
        errors.push(ConfigError::at(
            format!("routes[{i}].prefix"),
            format!(
                "`{}` is Sluice's own (OAuth consent under /oauth/v1, /.well-known, MCP servers under /mcp, its issuer under /oauth2)",
                r.prefix
            ),
        ));
    }
    for p in built {
        if let Some(o) = p
            .oauth_provider
            .as_ref()
            .filter(|o| !oauth_providers.contains_key(*o))
        {
            warnings.push(format!(
                "provider `{}` injects grants of OAuth provider `{o}`, which does not exist: its requests are refused until it does",
                p.name
            ));
        }
    }
}

/// Path prefixes the proxy listener answers itself.
fn reserved_prefix(prefix: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    p == "/oauth"
        || p == "/oauth/v1"
        || p.starts_with("/oauth/v1/")
        || p == "/.well-known"
        || p.starts_with("/.well-known/")
        || p == "/mcp"
        || p.starts_with("/mcp/")
        || p == "/oauth2"
        || p.starts_with("/oauth2/")
}

/// An absolute http(s) URL with a host, no query or fragment.
fn check_public_base_url(url: &str, errors: &mut Vec<ConfigError>) {
    let ok = url
        .parse::<http::Uri>()
        .ok()
        .filter(|u| matches!(u.scheme_str(), Some("http" | "https")))
        .filter(|u| u.host().is_some_and(|h| !h.is_empty()))
        .is_some_and(|u| u.query().is_none() && !url.contains('#'));
    if !ok {
        errors.push(ConfigError::at(
            "public_base_url",
            format!("`{url}` must be an absolute http(s) URL such as https://gateway.example.com"),
        ));
    }
}

/// Process settings with bounds.
fn check_server(server: &wire::ServerOptions, errors: &mut Vec<ConfigError>) {
    let mut bounded = |field: &str, value: Option<u64>, (low, high): (u64, u64)| {
        if value.is_some_and(|v| v < low || v > high) {
            errors.push(ConfigError::at(
                format!("server.{field}"),
                format!("must be between {low} and {high}"),
            ));
        }
    };
    let n = |v: Option<usize>| v.map(|v| v as u64);
    let many = (1, 10_000_000);
    for (field, value, bounds) in [
        (
            "max_request_head_bytes",
            n(server.max_request_head_bytes),
            (1024, 1_048_575),
        ),
        (
            "request_head_timeout_seconds",
            server.request_head_timeout_seconds,
            (1, 3600),
        ),
        (
            "keepalive_timeout_seconds",
            server.keepalive_timeout_seconds,
            (1, 3600),
        ),
        ("max_connections", n(server.max_connections), many),
        (
            "h2_max_concurrent_streams",
            server.h2_max_concurrent_streams.map(u64::from),
            (1, 10_000),
        ),
        (
            "max_connections_per_source",
            n(server.max_connections_per_source),
            many,
        ),
    ] {
        bounded(field, value, bounds);
    }
    let nets = [
        ("trusted_proxies", &server.trusted_proxies),
        ("proxy_protocol_from", &server.proxy_protocol_from),
    ];
    for (field, cidrs) in nets {
        for (j, cidr) in cidrs.iter().enumerate() {
            if crate::client_address::parse_net(cidr).is_none() {
                errors.push(ConfigError::at(
                    format!("server.{field}[{j}]"),
                    format!("`{cidr}` is not an address or CIDR (e.g. 10.0.0.0/8)"),
                ));
            }
        }
    }
    if let Some(ns) = &server.namespace {
        if !crate::limits::shared::valid_namespace(ns) {
            errors.push(ConfigError::at(
                "server.namespace",
                format!("`{ns}` must be 1 to 64 lowercase letters, digits, `-` or `_`"),
            ));
        }
    }
}

/// Routes that take client certificates need a listener that asks for them.
fn check_client_cert_routes(config: &wire::Config, errors: &mut Vec<ConfigError>) {
    let asks_certs = config
        .listeners
        .proxy_tls
        .as_ref()
        .is_some_and(|t| t.client_ca.is_some());
    for (i, route) in config.routes.iter().enumerate() {
        if route.auth == AuthPolicy::ClientCert && !asks_certs {
            errors.push(ConfigError::at(
                format!("routes[{i}].auth"),
                "client certificates need `listeners.proxy_tls.client_ca`",
            ));
        }
    }
}

/// Listener addresses. (`admin_tls` and `proxy_tls` are loaded at start, and by `sluice check`.)
fn check_listeners(listeners: &wire::Listeners, errors: &mut Vec<ConfigError>) {
    let wire::Listeners {
        proxy,
        forward,
        admin,
        mock,
        ..
    } = listeners;
    let all = [
        ("proxy", Some(proxy)),
        ("forward", forward.as_ref()),
        ("admin", Some(admin)),
        ("mock", mock.as_ref()),
    ];
    for (name, addr) in all {
        if let Some(addr) = addr {
            if addr.parse::<SocketAddr>().is_err() {
                errors.push(ConfigError::at(
                    format!("listeners.{name}"),
                    format!("`{addr}` is not an IP:port address (e.g. 127.0.0.1:8080)"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// The entry of `revoked_tokens` that refuses every token of a registered OAuth client.
pub fn revoked_client_key(client_id: &str) -> String {
    format!("{}{client_id}", super::stored::REVOKED_CLIENT_PREFIX)
}
