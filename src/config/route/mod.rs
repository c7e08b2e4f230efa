//! Routes: a path prefix, the provider behind it, and who may use it. The route as written is
//! `wire`.

pub mod fallback;
pub mod wire;

use http::HeaderName;
use std::collections::HashSet;
use std::sync::Arc;

use crate::auth::jwt::JwtVerifier;
use crate::auth::Access;
use crate::config::provider::Provider;
use crate::config::wire::{self as config_wire, AuthPolicy};
use crate::config::ConfigError;
use crate::metrics::RouteMetrics;

#[derive(Debug)]
pub struct Route {
    /// Empty for the forward proxy's intercept routes, which are chosen by host, not path.
    pub prefix: String,
    pub provider: Arc<Provider>,
    pub access: Access,
    /// Operations open without a credential whatever `access` says (an agent's `GET /health`).
    pub open: Vec<OpenOperation>,
    /// An agent environment's: lifetime of the tokens Sluice's issuer gives its apps (seconds).
    pub token_lifetime: Option<u64>,
    /// Reached through the forward proxy: the client's path is kept as is (no prefix to strip,
    /// no base path to add) and the route is never matched by path.
    pub intercept: bool,
    pub principal_header: Option<HeaderName>,
    /// Usage accounting and an audit record for each request.
    pub audit: bool,
    /// Providers that answer when `provider` fails before its answer starts.
    pub fallback: Option<Box<fallback::Fallback>>,
    /// The route as limits, budgets, metrics and the audit name it: its prefix; for an
    /// intercept route, the prefix of the declared route its provider is reached by (whose
    /// access it applies), or `forward` when there is none.
    pub label: String,
    pub metrics: RouteMetrics,
}

impl Route {
    /// The audience a token must name here: set on agent environments that take tokens of
    /// Sluice's issuer (`auth: oauth`) only.
    pub fn audience(&self) -> Option<&str> {
        self.access.required_claims.get("aud").map(String::as_str)
    }
}

/// A method (or any) and a path under the route's prefix: exact, or a prefix ending in `/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOperation {
    method: Option<http::Method>,
    path: String,
    prefix: bool,
}

impl OpenOperation {
    pub fn parse(method: &str, path: &str) -> Result<OpenOperation, String> {
        let method = match method {
            "*" => None,
            m if m.bytes().all(|b| b.is_ascii_uppercase()) && !m.is_empty() => {
                Some(http::Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string())?)
            }
            m => return Err(format!("method `{m}` must be upper case (`GET`) or `*`")),
        };
        if !path.starts_with('/') || path.contains(['?', '#', ' ', '%']) || path.contains("..") {
            return Err(format!(
                "path `{path}` must start with `/`, without query, `%` or `..` (e.g. `/health`, `/docs/*`)"
            ));
        }
        let (path, prefix) = match path.strip_suffix("/*") {
            Some(p) => (p.to_owned(), true),
            None if path.contains('*') => {
                return Err(format!("`*` only as a last segment (`/docs/*`): `{path}`"))
            }
            None => (path.to_owned(), false),
        };
        Ok(OpenOperation {
            method,
            path,
            prefix,
        })
    }

    /// Whether a request with `method` and `rest` (its path after the route's prefix) is open.
    pub fn matches(&self, method: &http::Method, rest: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && match rest.strip_prefix(self.path.as_str()) {
                Some("") => !self.prefix,
                Some(tail) => self.prefix && tail.starts_with('/') && tail.len() > 1,
                None => false,
            }
    }
}

/// Every route, longest prefix first. `providers` are the ones that built; `declared` names
/// every provider of the file (a route to a provider in error is not reported twice).
pub(super) fn build_all(
    routes: &[config_wire::Route],
    providers: &[Arc<Provider>],
    declared: &[config_wire::Provider],
    jwt: &JwtVerifier,
    issuers: &[config_wire::Issuer],
    errors: &mut Vec<ConfigError>,
) -> Vec<Route> {
    let mut built = Vec::new();
    let mut prefixes = HashSet::new();
    for (i, r) in routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        if !prefixes.insert(r.prefix.as_str()) {
            errors.push(ConfigError::at(
                format!("{at}.prefix"),
                format!("duplicate route prefix `{}`", r.prefix),
            ));
        }
        let access = access(r, &at, jwt, issuers, errors);
        let header = principal_header(r, &at, errors);
        match providers.iter().find(|p| p.name == r.provider) {
            Some(p) => built.push(Route {
                prefix: if r.prefix == "/" {
                    String::new()
                } else {
                    r.prefix.clone()
                },
                provider: p.clone(),
                access,
                open: Vec::new(),
                token_lifetime: None,
                intercept: false,
                principal_header: header,
                audit: r.audit,
                fallback: r.fallback.as_ref().and_then(|f| {
                    fallback::build(f, p, providers, declared, &at, errors).map(Box::new)
                }),
                label: if r.prefix == "/" {
                    String::new()
                } else {
                    r.prefix.clone()
                },
                metrics: RouteMetrics::new(&r.prefix, &r.provider),
            }),
            // The provider itself is in error.
            None if declared.iter().any(|p| p.name == r.provider) => {}
            None => errors.push(ConfigError::at(
                format!("{at}.provider"),
                format!("no provider named `{}`", r.provider),
            )),
        }
    }
    built.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    built
}

/// The route's prefix checked, and who may use it.
fn access(
    r: &config_wire::Route,
    at: &str,
    jwt: &JwtVerifier,
    declared_issuers: &[config_wire::Issuer],
    errors: &mut Vec<ConfigError>,
) -> Access {
    let config_wire::Route {
        prefix,
        provider: _,
        auth,
        scopes,
        issuers,
        required_claims,
        principal_header: _,
        audit: _,
        fallback: _,
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
    if matches!(*auth, AuthPolicy::None | AuthPolicy::ClientCert)
        && (!scopes.is_empty() || !issuers.is_empty() || !required_claims.is_empty())
    {
        errors.push(ConfigError::at(
            format!("{at}.auth"),
            format!(
                "`auth: {}` cannot require scopes, issuers or claims",
                if *auth == AuthPolicy::None {
                    "none"
                } else {
                    "client_cert"
                }
            ),
        ));
    }
    Access {
        auth: *auth,
        scopes: scopes.clone(),
        issuers: issuer_indices(issuers, jwt, declared_issuers, at, errors),
        required_claims: required_claims.clone(),
        app_audience: None,
    }
}

fn principal_header(
    r: &config_wire::Route,
    at: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<HeaderName> {
    let h = r.principal_header.as_ref()?;
    match HeaderName::from_bytes(h.as_bytes()) {
        Ok(name) if !is_reserved_header(name.as_str()) => Some(name),
        _ => {
            errors.push(ConfigError::at(
                format!("{at}.principal_header"),
                format!(
                    "`{h}` must be a header name that is not a credential or `x-sluice-*` header"
                ),
            ));
            None
        }
    }
}

/// Resolves issuer names to indices into `jwt.issuers`; `None` (every issuer) when none are named.
pub(super) fn issuer_indices(
    names: &[String],
    jwt: &JwtVerifier,
    declared: &[config_wire::Issuer],
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
/// Headers Sluice owns on the way upstream: never a place to put the principal.
fn is_reserved_header(name: &str) -> bool {
    name.starts_with("x-sluice-")
        || crate::auth::CREDENTIAL_HEADERS
            .iter()
            .any(|h| h.as_str() == name)
        || name == "host"
}

#[cfg(test)]
mod tests {
    use super::OpenOperation;
    use http::Method;

    #[test]
    fn open_operations_match_their_method_and_path_only() {
        let health = OpenOperation::parse("GET", "/health").unwrap();
        assert!(health.matches(&Method::GET, "/health"));
        for (m, p) in [
            (Method::POST, "/health"),
            (Method::GET, "/health/x"),
            (Method::GET, "/healthz"),
            (Method::GET, ""),
        ] {
            assert!(!health.matches(&m, p), "{m} {p}");
        }
        let docs = OpenOperation::parse("*", "/docs/*").unwrap();
        assert!(docs.matches(&Method::DELETE, "/docs/a/b"));
        assert!(!docs.matches(&Method::GET, "/docs"));
        assert!(!docs.matches(&Method::GET, "/docs/"));
        assert!(!docs.matches(&Method::GET, "/docsx/a"));
        for (m, p) in [
            ("get", "/health"),
            ("GET", "health"),
            ("GET", "/a/*/b"),
            ("GET", "/a/../b"),
            ("GET", "/a%2fb"),
            ("GET", "/a?x"),
            ("", "/a"),
        ] {
            assert!(OpenOperation::parse(m, p).is_err(), "{m} {p}");
        }
    }
}
