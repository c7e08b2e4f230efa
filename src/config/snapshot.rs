//! The validated, immutable configuration one request sees, with everything the hot path needs
//! precomputed: resolved secrets and ready-made auth header values, pick tables, metric handles,
//! token digests, and routes ordered for longest-prefix matching.

use http::{HeaderName, HeaderValue};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::wire::{self, AuthPolicy, CredentialMode, ProviderKind};
use super::{auth_build, ConfigError};
use crate::auth::jwks::JwksRegistry;
use crate::auth::jwt::JwtVerifier;
use crate::auth::opaque::TokenRecord;
use crate::auth::usage::UsageRegistry;
use crate::auth::Access;
use crate::balance::{HealthRegistry, KeyPool, Member};
use crate::forward::policy::{ForwardPolicy, HostPattern};
use crate::metrics::{KeyMetrics, RouteMetrics};
use crate::secrets::{self, Secret};
use crate::upstream::Upstream;

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
    /// Admin API role of each owner that has one.
    pub owner_roles: HashMap<String, wire::Role>,
    /// Every declared owner (the file's and the store's), with or without a role.
    pub owners: HashSet<String>,
    /// The control plane's revision included (0 when there is no control plane).
    pub control_revision: u64,
    /// Non-fatal findings (e.g. an optional key whose secret is not set), logged on publish.
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub credentials: CredentialMode,
    pub upstream: Upstream,
    pub intercept_hosts: Vec<String>,
    pub keys: Vec<ProviderKey>,
    pub pool: KeyPool,
    pub quarantine: Duration,
    pub cooldown: Duration,
}

#[derive(Debug)]
pub struct ProviderKey {
    pub id: String,
    pub secret: Secret,
    /// The header value sent upstream (`Bearer …` or the bare key), marked sensitive.
    pub header_value: HeaderValue,
    pub hint: String,
    pub weight: u32,
    pub enabled: bool,
    pub metrics: KeyMetrics,
}

#[derive(Debug)]
pub struct Route {
    /// Empty for the forward proxy's intercept routes, which are chosen by host, not path.
    pub prefix: String,
    pub provider: Arc<Provider>,
    pub access: Access,
    /// Reached through the forward proxy: the client's path is kept as is (no prefix to strip,
    /// no base path to add) and the route is never matched by path.
    pub intercept: bool,
    pub principal_header: Option<HeaderName>,
    /// Usage accounting and an audit record for each request.
    pub audit: bool,
    pub metrics: RouteMetrics,
}

/// What a build needs from outside the file: the revision to stamp, and state that outlives a
/// snapshot (key health, issuers' signing keys, token last-use times).
#[derive(Debug, Default)]
pub struct BuildContext {
    pub revision: u64,
    pub health: Arc<HealthRegistry>,
    pub jwks: Arc<JwksRegistry>,
    pub usage: Arc<UsageRegistry>,
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
}

impl Provider {
    /// The header a provider expects its key in.
    pub fn key_header(&self) -> &'static str {
        match self.kind {
            ProviderKind::Anthropic => "x-api-key",
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => "authorization",
        }
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
            forward: build_forward(
                &wire::Forward::default(),
                &[],
                &mut Vec::new(),
                &JwtVerifier::new(Vec::new()),
                &[],
                &mut Vec::new(),
            ),
            owner_roles: HashMap::new(),
            owners: HashSet::new(),
            control_revision: 0,
            warnings: Vec::new(),
        }
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
        base: &Path,
        ctx: &BuildContext,
    ) -> Result<Snapshot, Vec<ConfigError>> {
        // Destructured without `..`: a new field does not compile until it is handled here.
        let wire::Config {
            listeners,
            data_dir: _,
            server: _,
            audit: _,
            providers,
            routes,
            tokens,
            owners,
            issuers,
            forward,
        } = config;
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        check_listeners(listeners, &mut errors);

        let mut built = Vec::new();
        let mut names = HashSet::new();
        let mut live_keys = Vec::new();
        for (i, p) in providers.iter().enumerate() {
            let at = format!("providers[{i}]");
            if !names.insert(p.name.as_str()) {
                errors.push(ConfigError::at(
                    format!("{at}.name"),
                    format!("duplicate provider name `{}`", p.name),
                ));
            }
            if let Some(provider) = build_provider(p, &at, base, ctx, &mut errors, &mut warnings) {
                live_keys.extend(
                    provider
                        .keys
                        .iter()
                        .map(|k| (provider.name.clone(), k.id.clone())),
                );
                built.push(Arc::new(provider));
            }
        }

        let jwt = auth_build::issuers(issuers, ctx, &mut errors);
        let mut built_routes = Vec::new();
        let mut prefixes = HashSet::new();
        for (i, r) in routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            let wire::Route {
                prefix,
                provider,
                auth,
                scopes,
                issuers: route_issuers,
                required_claims,
                principal_header,
                audit,
            } = r;
            if !prefix.starts_with('/')
                || (prefix.len() > 1 && prefix.ends_with('/'))
                || prefix.contains(['?', '#', ' '])
            {
                errors.push(ConfigError::at(
                    format!("{at}.prefix"),
                    format!("`{prefix}` must start with `/` and not end with `/` (e.g. `/openai`)"),
                ));
            }
            if !prefixes.insert(prefix.as_str()) {
                errors.push(ConfigError::at(
                    format!("{at}.prefix"),
                    format!("duplicate route prefix `{prefix}`"),
                ));
            }
            let issuer_idx = issuer_indices(route_issuers, &jwt, issuers, &at, &mut errors);
            let header = match principal_header {
                Some(h) => match HeaderName::from_bytes(h.as_bytes()) {
                    Ok(name) if !is_reserved_header(name.as_str()) => Some(name),
                    _ => {
                        errors.push(ConfigError::at(
                            format!("{at}.principal_header"),
                            format!("`{h}` must be a header name that is not a credential or `x-sluice-*` header"),
                        ));
                        None
                    }
                },
                None => None,
            };
            if *auth == AuthPolicy::None
                && (!scopes.is_empty() || !route_issuers.is_empty() || !required_claims.is_empty())
            {
                errors.push(ConfigError::at(
                    format!("{at}.auth"),
                    "`auth: none` cannot require scopes, issuers or claims",
                ));
            }
            match built.iter().find(|p| &p.name == provider) {
                Some(p) => built_routes.push(Route {
                    prefix: if prefix == "/" {
                        String::new()
                    } else {
                        prefix.clone()
                    },
                    provider: p.clone(),
                    access: Access {
                        auth: *auth,
                        scopes: scopes.clone(),
                        issuers: issuer_idx,
                        required_claims: required_claims.clone(),
                    },
                    intercept: false,
                    principal_header: header,
                    audit: *audit,
                    metrics: RouteMetrics::new(prefix, provider),
                }),
                None if names.contains(provider.as_str()) => {} // the provider itself is in error
                None => errors.push(ConfigError::at(
                    format!("{at}.provider"),
                    format!("no provider named `{provider}`"),
                )),
            }
        }
        built_routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let forward = build_forward(
            forward,
            &built,
            &mut built_routes,
            &jwt,
            issuers,
            &mut errors,
        );

        let built_tokens = auth_build::tokens(tokens, owners, ctx, &mut errors);
        if routes
            .iter()
            .any(|r| matches!(r.auth, AuthPolicy::Token | AuthPolicy::Any))
            && tokens.is_empty()
            && issuers.is_empty()
        {
            warnings.push("routes require credentials but no `tokens` or `issuers` are declared: they refuse every request".into());
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        ctx.health.retain(&live_keys);
        let live_issuers: Vec<_> = jwt.issuers.iter().map(|t| t.keys.clone()).collect();
        ctx.jwks.retain(&live_issuers);
        Ok(Snapshot {
            revision: ctx.revision,
            providers: built,
            routes: built_routes,
            tokens: built_tokens,
            jwt,
            forward,
            owner_roles: owners
                .iter()
                .filter_map(|o| o.role.map(|r| (o.name.clone(), r)))
                .collect(),
            owners: owners.iter().map(|o| o.name.clone()).collect(),
            control_revision: ctx.control_revision,
            warnings,
        })
    }
}

/// Resolves issuer names to indices into `jwt.issuers`; `None` (every issuer) when none are named.
fn issuer_indices(
    names: &[String],
    jwt: &JwtVerifier,
    declared: &[wire::Issuer],
    at: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<usize>> {
    if names.is_empty() {
        return None;
    }
    let mut found = Vec::new();
    for (j, name) in names.iter().enumerate() {
        match jwt.issuers.iter().position(|t| &t.name == name) {
            Some(idx) => found.push(idx),
            None if declared.iter().any(|w| &w.name == name) => {} // the issuer itself is in error
            None => errors.push(ConfigError::at(
                format!("{at}.issuers[{j}]"),
                format!("no issuer named `{name}`"),
            )),
        }
    }
    Some(found)
}

/// The forward proxy's policy, and one intercept route per provider with `intercept_hosts`
/// (appended to `routes`, after the path-matched ones).
/// `10.0.0.0/8`, `192.0.2.7` or `2001:db8::1` as a network.
fn parse_net(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

fn build_forward(
    forward: &wire::Forward,
    providers: &[Arc<Provider>],
    routes: &mut Vec<Route>,
    jwt: &JwtVerifier,
    declared_issuers: &[wire::Issuer],
    errors: &mut Vec<ConfigError>,
) -> ForwardPolicy {
    let wire::Forward {
        policy,
        allow_hosts,
        deny_hosts,
        ports,
        allow_cidrs,
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
    if *auth == AuthPolicy::None {
        errors.push(ConfigError::at(
            "forward.auth",
            "the forward proxy always authenticates: use `token`, `jwt` or `any`",
        ));
    }
    let mut patterns = |list: &[String], field: &str| -> Vec<HostPattern> {
        list.iter()
            .enumerate()
            .filter_map(|(j, p)| {
                HostPattern::parse(p)
                    .map_err(|e| errors.push(ConfigError::at(format!("forward.{field}[{j}]"), e)))
                    .ok()
            })
            .collect()
    };
    let allow_hosts = patterns(allow_hosts, "allow_hosts");
    // An address or CIDR in `deny_hosts` also refuses every name that resolves into it.
    let deny_cidrs: Vec<ipnet::IpNet> = deny_hosts.iter().filter_map(|h| parse_net(h)).collect();
    let mut denied_names = Vec::new();
    for (j, h) in deny_hosts.iter().enumerate() {
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
            Ok(p) => denied_names.push(p),
            Err(e) => errors.push(ConfigError::at(format!("forward.deny_hosts[{j}]"), e)),
        }
    }
    let deny_hosts = denied_names;
    let mut cidrs = Vec::new();
    for (j, c) in allow_cidrs.iter().enumerate() {
        match c.parse::<ipnet::IpNet>() {
            Ok(net) => cidrs.push(net),
            Err(_) => errors.push(ConfigError::at(
                format!("forward.allow_cidrs[{j}]"),
                format!("`{c}` is not a CIDR (e.g. 10.0.0.0/8)"),
            )),
        }
    }
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
    };
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
        routes.push(Route {
            prefix: String::new(),
            provider: provider.clone(),
            access: access.clone(),
            intercept: true,
            principal_header: None,
            audit: *audit,
            metrics: RouteMetrics::new("forward", &provider.name),
        });
    }
    ForwardPolicy {
        access,
        audit: *audit,
        tunnel: *policy,
        allow_hosts,
        deny_hosts,
        ports: ports.clone(),
        allow_cidrs: cidrs,
        deny_cidrs,
        intercept,
        head_timeout: Duration::from_secs(*head_timeout_seconds),
        connect_timeout: Duration::from_secs(*connect_timeout_seconds),
        tunnel_idle: Duration::from_secs(*tunnel_idle_seconds),
    }
}

/// Listener addresses. (`admin_tls` is fixed at start: loaded once by `server::admin_tls`.)
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

fn build_provider(
    p: &wire::Provider,
    at: &str,
    base: &Path,
    ctx: &BuildContext,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Option<Provider> {
    let wire::Provider {
        name,
        kind,
        base_url,
        intercept_hosts,
        credentials,
        keys,
        ca_file,
        quarantine_seconds,
        cooldown_seconds,
    } = p;
    let before = errors.len();
    let valid_name = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if !valid_name {
        errors.push(ConfigError::at(
            format!("{at}.name"),
            format!("`{name}` must be lowercase letters, digits and hyphens (e.g. `openai-eu`)"),
        ));
    }
    /// A key benched longer than a day would need a person anyway.
    const MAX_BENCH_SECONDS: u64 = 86_400;
    for (field, value) in [
        ("quarantine_seconds", quarantine_seconds),
        ("cooldown_seconds", cooldown_seconds),
    ] {
        if *value > MAX_BENCH_SECONDS {
            errors.push(ConfigError::at(
                format!("{at}.{field}"),
                format!("{value} is more than the {MAX_BENCH_SECONDS} seconds allowed"),
            ));
        }
    }
    let ca = match ca_file {
        Some(file) => match load_ca(&base.join(file)) {
            Ok(ca) => Some(ca),
            Err(e) => {
                errors.push(ConfigError::at(format!("{at}.ca_file"), e));
                None
            }
        },
        None => None,
    };
    let upstream = match parse_base_url(name, base_url, ca) {
        Ok(u) => Some(u),
        Err(e) => {
            errors.push(ConfigError::at(format!("{at}.base_url"), e));
            None
        }
    };
    for (j, host) in intercept_hosts.iter().enumerate() {
        if host.is_empty() || host.contains(['/', ':', ' ']) || host.to_ascii_lowercase() != *host {
            errors.push(ConfigError::at(
                format!("{at}.intercept_hosts[{j}]"),
                format!("`{host}` must be a lowercase host name (e.g. api.openai.com)"),
            ));
        }
    }
    if *credentials == CredentialMode::Centralized && keys.is_empty() {
        errors.push(ConfigError::at(
            format!("{at}.keys"),
            format!("provider `{name}` has `credentials: centralized` but no keys"),
        ));
    }

    let mut built_keys = Vec::new();
    let mut key_ids = HashSet::new();
    for (j, k) in keys.iter().enumerate() {
        let key_at = format!("{at}.keys[{j}]");
        let wire::Key {
            id,
            secret_ref,
            weight,
            enabled,
            optional,
        } = k;
        if id.is_empty() || !key_ids.insert(id.as_str()) {
            errors.push(ConfigError::at(
                format!("{key_at}.id"),
                format!("key id `{id}` is empty or repeated in provider `{name}`"),
            ));
            continue;
        }
        let resolved = match secret_ref.strip_prefix("secret:") {
            Some(secret_name) => ctx
                .secrets
                .get(secret_name)
                .cloned()
                .ok_or_else(|| format!("no secret named `{secret_name}` in the store")),
            None => secrets::resolve(secret_ref, base).map_err(|e| e.to_string()),
        };
        let secret = match resolved {
            Ok(s) => s,
            Err(e) if *optional => {
                warnings.push(format!("provider `{name}` key `{id}` left out: {e}"));
                continue;
            }
            Err(e) => {
                errors.push(ConfigError::at(
                    format!("{key_at}.secret_ref"),
                    format!("key `{id}` of provider `{name}`: {e}"),
                ));
                continue;
            }
        };
        let raw = match kind {
            ProviderKind::Anthropic => secret.expose().to_owned(),
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
                format!("Bearer {}", secret.expose())
            }
        };
        let Ok(mut header_value) = HeaderValue::from_str(&raw) else {
            errors.push(ConfigError::at(
                format!("{key_at}.secret_ref"),
                format!("key `{id}` of provider `{name}`: the secret contains characters not allowed in a header"),
            ));
            continue;
        };
        header_value.set_sensitive(true);
        built_keys.push(ProviderKey {
            id: id.clone(),
            hint: secret.hint(),
            header_value,
            weight: *weight,
            enabled: *enabled,
            metrics: KeyMetrics::new(name, id),
            secret,
        });
    }
    if errors.len() > before {
        return None;
    }
    let upstream = upstream?;
    let members = built_keys
        .iter()
        .map(|k| Member {
            weight: k.weight,
            enabled: k.enabled,
            health: ctx.health.get(name, &k.id, k.secret.fingerprint()),
        })
        .collect();
    Some(Provider {
        name: name.clone(),
        kind: *kind,
        credentials: *credentials,
        upstream,
        intercept_hosts: intercept_hosts.clone(),
        pool: KeyPool::build(members),
        keys: built_keys,
        quarantine: Duration::from_secs(*quarantine_seconds),
        cooldown: Duration::from_secs(*cooldown_seconds),
    })
}

fn parse_base_url(
    provider: &str,
    base_url: &str,
    ca: Option<Arc<[pingora::utils::tls::WrappedX509]>>,
) -> Result<Upstream, String> {
    let uri: http::Uri = base_url
        .parse()
        .map_err(|e| format!("`{base_url}` is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("`{base_url}` must start with http:// or https://")),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{base_url}` has no host"))?;
    if uri.query().is_some() {
        return Err(format!("`{base_url}` must not have a query string"));
    }
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Ok(Upstream::new(
        provider,
        tls,
        host.to_owned(),
        port,
        base_path,
        ca,
    ))
}

fn load_ca(file: &Path) -> Result<Arc<[pingora::utils::tls::WrappedX509]>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let shown = file.display();
    let pem = std::fs::read(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let der = cert.map_err(|e| format!("{shown}: bad PEM: {e}"))?;
        // pingora's parser panics on bad DER: check it here first.
        x509_parser::parse_x509_certificate(&der)
            .map_err(|e| format!("{shown}: bad certificate: {e}"))?;
        certs.push(pingora::utils::tls::WrappedX509::new(
            der.to_vec(),
            pingora::utils::tls::parse_x509,
        ));
    }
    if certs.is_empty() {
        return Err(format!("{shown} holds no PEM certificate"));
    }
    Ok(certs.into())
}

/// Headers Sluice owns on the way upstream: never a place to put the principal.
fn is_reserved_header(name: &str) -> bool {
    name.starts_with("x-sluice-")
        || crate::auth::CREDENTIAL_HEADERS.contains(&name)
        || name == "host"
}

#[cfg(test)]
mod tests;
