//! Trusted JWT issuers: each checked and given its verifier (keys fetched later, on demand). The
//! issuer as written is `wire`.

pub mod wire;

use std::collections::HashSet;

use crate::auth::jwt::{self, JwtVerifier, TrustedIssuer};
use crate::config::wire as config_wire;
use crate::config::{BuildContext, ConfigError};

/// Every issuer, checked; the valid ones make the verifier.
pub fn build_all(
    issuers: &[config_wire::Issuer],
    ctx: &BuildContext,
    builtin: Option<TrustedIssuer>,
    errors: &mut Vec<ConfigError>,
) -> JwtVerifier {
    /// Clock skew is seconds to minutes; more would make `exp` meaningless (and the
    /// verifier subtracts it from the clock).
    const MAX_LEEWAY_SECONDS: u64 = 3600;
    let mut names = HashSet::new();
    let mut iss_seen = HashSet::new();
    let mut built = Vec::new();
    for (i, w) in issuers.iter().enumerate() {
        let at = format!("issuers[{i}]");
        let config_wire::Issuer {
            name,
            issuer,
            jwks_uri,
            audiences,
            algorithms,
            leeway_seconds,
            principal_claim,
            // Checked with the OAuth providers: `sign_in`.
            sign_in: _,
        } = w;
        let before = errors.len();
        if let Err(problem) = check_name(name, &mut names) {
            errors.push(ConfigError::at(format!("{at}.name"), problem));
        }
        if *leeway_seconds > MAX_LEEWAY_SECONDS {
            errors.push(ConfigError::at(
                format!("{at}.leeway_seconds"),
                format!("{leeway_seconds} is more than the {MAX_LEEWAY_SECONDS} seconds allowed"),
            ));
        }
        check_urls(w, &at, &mut iss_seen, errors);
        if audiences.is_empty() || audiences.iter().any(String::is_empty) {
            errors.push(ConfigError::at(
                format!("{at}.audiences"),
                "list at least one audience: tokens minted for other services must not work here",
            ));
        }
        let algs = algorithms_of(algorithms, &at, errors);
        if principal_claim.is_empty() {
            errors.push(ConfigError::at(
                format!("{at}.principal_claim"),
                "name the claim that identifies the caller",
            ));
        }
        if errors.len() > before {
            continue;
        }
        let validations = algs
            .iter()
            .map(|alg| {
                (
                    *alg,
                    jwt::validation(*alg, issuer, audiences, *leeway_seconds),
                )
            })
            .collect();
        built.push(TrustedIssuer {
            name: name.clone(),
            issuer: issuer.clone(),
            principal_claim: principal_claim.clone(),
            validations,
            keys: ctx.jwks.get(name, issuer, jwks_uri.as_deref()),
        });
    }
    if let Some(b) = builtin {
        if let Some(i) = issuers.iter().position(|w| w.issuer == b.issuer) {
            errors.push(ConfigError::at(
                format!("issuers[{i}].issuer"),
                format!("`{}` is Sluice's own issuer (public_base_url)", b.issuer),
            ));
        }
        built.push(b);
    }
    JwtVerifier::new(built)
}

/// An issuer's name is part of its callers' principal (`jwt:{issuer}:{subject}`): usable in
/// that rendering, not Sluice's own, and unique.
fn check_name<'a>(name: &'a str, names: &mut HashSet<&'a str>) -> Result<(), String> {
    if !crate::auth::valid_principal_name(name) {
        return Err(format!("`{name}` is not an issuer name: 1 to 128 letters, digits and `-_.@+` (it is part of its callers' principal, `jwt:{{issuer}}:{{subject}}`)"));
    }
    if name == BUILTIN {
        return Err(format!(
            "`{BUILTIN}` is the name of Sluice's own issuer: choose another"
        ));
    }
    if !names.insert(name) {
        return Err(format!("issuer name `{name}` is repeated"));
    }
    Ok(())
}

/// The name of Sluice's built-in issuer among the trusted issuers.
pub const BUILTIN: &str = crate::auth::jwt::BUILTIN_ISSUER;

/// Sluice's built-in issuer (`iss` = the public base URL): its keys come with the
/// configuration (never fetched), ES256 only, for tokens whose `aud` is one of `audiences`
/// (the agent environments that take them). `None` until the control plane made a key.
pub fn builtin(url: &str, jwks: &serde_json::Value, audiences: &[String]) -> Option<TrustedIssuer> {
    let keys = crate::auth::jwks::IssuerKeys::fixed(BUILTIN, url, jwks).ok()?;
    // No audience would let jsonwebtoken skip the check: a token for nothing fits nothing.
    let audiences = if audiences.is_empty() {
        vec![format!("{url}/nothing")]
    } else {
        audiences.to_vec()
    };
    Some(TrustedIssuer {
        name: BUILTIN.into(),
        issuer: url.to_owned(),
        principal_claim: "sub".into(),
        // Each key verifies only the algorithm of its JWK (`alg`, its `kty` too).
        validations: [
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::Algorithm::EdDSA,
        ]
        .into_iter()
        .map(|alg| (alg, jwt::validation(alg, url, &audiences, 30)))
        .collect(),
        keys: std::sync::Arc::new(keys),
    })
}

/// `issuer` (unique) and `jwks_uri` are http(s) URLs.
fn check_urls<'a>(
    w: &'a config_wire::Issuer,
    at: &str,
    seen: &mut HashSet<&'a str>,
    errors: &mut Vec<ConfigError>,
) {
    let issuer = &w.issuer;
    if !is_http_url(issuer) {
        errors.push(ConfigError::at(
            format!("{at}.issuer"),
            format!("`{issuer}` must be an http(s) URL (the exact `iss` claim)"),
        ));
    } else if !seen.insert(issuer.as_str()) {
        errors.push(ConfigError::at(
            format!("{at}.issuer"),
            format!("issuer `{issuer}` is listed twice"),
        ));
    }
    if let Some(uri) = &w.jwks_uri {
        if !is_http_url(uri) {
            errors.push(ConfigError::at(
                format!("{at}.jwks_uri"),
                format!("`{uri}` must be an http(s) URL"),
            ));
        }
    }
}

/// The accepted algorithms, each checked (never HS*).
fn algorithms_of(
    algorithms: &[String],
    at: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<jsonwebtoken::Algorithm> {
    let mut algs = Vec::new();
    for (j, a) in algorithms.iter().enumerate() {
        match jwt::parse_algorithm(a) {
            Some(alg) => algs.push(alg),
            None => errors.push(ConfigError::at(
                format!("{at}.algorithms[{j}]"),
                format!("`{a}` is not accepted: use RS256/384/512, PS256/384/512, ES256/384 or EdDSA (shared-secret HS* never)"),
            )),
        }
    }
    if algorithms.is_empty() {
        errors.push(ConfigError::at(
            format!("{at}.algorithms"),
            "list at least one algorithm",
        ));
    }
    algs
}

fn is_http_url(s: &str) -> bool {
    s.parse::<http::Uri>().ok().is_some_and(|u| {
        matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
    })
}

/// Where people sign in (`issuers[].sign_in`), as Sluice's authorization endpoint uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    /// The issuer's configured name: the signed-in principal is `jwt:{issuer}:{subject}`.
    pub issuer: String,
    /// Its index among the trusted issuers (whose keys verify the ID token).
    pub index: usize,
    /// The OAuth provider that is Sluice's client there.
    pub oauth_provider: String,
    pub session_seconds: u64,
    /// How long a refresh-token family lives, whatever its use.
    pub refresh_seconds: u64,
    /// Console sign-in, when operators sign in here too (`url` without a trailing `/`).
    pub console: Option<wire::ConsoleSignIn>,
    /// The issuer's `audiences`: the MCP servers (resource URLs) its people may get tokens for.
    pub audiences: Vec<String>,
}

/// The audience of console sessions' tokens (Sluice's issuer): valid at the admin API only.
pub const CONSOLE_AUDIENCE: &str = "urn:sluice:console";

impl SignIn {
    /// The console role of a person whose role claim held `values`: the highest one mapped.
    pub fn console_role(&self, values: &[String]) -> Option<config_wire::Role> {
        use config_wire::Role;
        let console = self.console.as_ref()?;
        let rank = |r: &Role| match r {
            Role::Admin => 3,
            Role::Operator => 2,
            Role::Viewer => 1,
            Role::Dataplane => 0,
        };
        values
            .iter()
            .filter_map(|v| console.roles.get(v))
            .filter(|r| rank(r) > 0)
            .max_by_key(|r| rank(r))
            .copied()
    }
}

/// The one issuer people sign in at, when there is one: its OAuth provider exists, allows the
/// authorization code grant and is a client of this very issuer.
pub fn sign_in(
    issuers: &[config_wire::Issuer],
    providers: &std::collections::HashMap<
        String,
        std::sync::Arc<crate::config::oauth_provider::OAuthProvider>,
    >,
    jwt: &JwtVerifier,
    errors: &mut Vec<ConfigError>,
) -> Option<SignIn> {
    const MAX_SESSION_HOURS: u64 = 720;
    let mut found = None;
    for (i, w) in issuers.iter().enumerate() {
        let Some(s) = &w.sign_in else { continue };
        let at = format!("issuers[{i}].sign_in");
        let before = errors.len();
        if found.is_some() {
            errors.push(ConfigError::at(
                &at,
                "people sign in at one issuer only: another issuer has `sign_in`",
            ));
        }
        if !(1..=90).contains(&s.refresh_days) {
            errors.push(ConfigError::at(
                format!("{at}.refresh_days"),
                format!("{} is not 1 to 90 days", s.refresh_days),
            ));
        }
        if !(1..=MAX_SESSION_HOURS).contains(&s.session_hours) {
            errors.push(ConfigError::at(
                format!("{at}.session_hours"),
                format!("{} is not 1 to {MAX_SESSION_HOURS} hours", s.session_hours),
            ));
        }
        if let Err(problem) = sign_in_provider(providers.get(&s.oauth_provider), s, &w.issuer) {
            errors.push(ConfigError::at(format!("{at}.oauth_provider"), problem));
        }
        if let Some(console) = &s.console {
            check_console(console, &at, errors);
        }
        let index = jwt.issuers.iter().position(|t| t.name == w.name);
        if let (true, Some(index)) = (errors.len() == before, index) {
            found = Some(SignIn {
                issuer: w.name.clone(),
                index,
                oauth_provider: s.oauth_provider.clone(),
                session_seconds: s.session_hours * 3600,
                refresh_seconds: s.refresh_days * 24 * 3600,
                audiences: w
                    .audiences
                    .iter()
                    .map(|a| a.trim_end_matches('/').to_owned())
                    .collect(),
                console: s.console.clone().map(|c| wire::ConsoleSignIn {
                    url: c.url.trim_end_matches('/').to_owned(),
                    ..c
                }),
            });
        }
    }
    found
}

/// The OAuth provider people sign in through: it exists, allows the authorization code grant,
/// is a client of this very issuer (`issuer`) and has both endpoints.
fn sign_in_provider(
    provider: Option<&std::sync::Arc<crate::config::oauth_provider::OAuthProvider>>,
    s: &wire::SignIn,
    issuer: &str,
) -> Result<(), String> {
    use crate::config::oauth_provider::GrantType;
    let Some(p) = provider else {
        return Err(format!(
            "OAuth provider `{}` does not exist",
            s.oauth_provider
        ));
    };
    if !p.grant_types.contains(&GrantType::AuthorizationCode) {
        return Err(format!(
            "OAuth provider `{}` does not allow the authorization_code grant",
            p.name
        ));
    }
    if p.issuer.as_deref().map(|x| x.trim_end_matches('/')) != Some(issuer.trim_end_matches('/')) {
        return Err(format!("OAuth provider `{}` must have this issuer's `issuer` ({issuer}): its ID tokens are verified with this issuer's keys", p.name));
    }
    if p.authorization_endpoint.is_none() || p.token_endpoint.is_none() {
        return Err(format!(
            "OAuth provider `{}` needs an authorization and a token endpoint",
            p.name
        ));
    }
    Ok(())
}

/// Console sign-in names an http(s) console URL, a claim, and only console roles.
fn check_console(c: &wire::ConsoleSignIn, at: &str, errors: &mut Vec<ConfigError>) {
    if !is_http_url(&c.url) {
        errors.push(ConfigError::at(
            format!("{at}.console.url"),
            format!(
                "`{}` must be the http(s) URL browsers reach the admin listener at",
                c.url
            ),
        ));
    }
    if c.claim.is_empty() {
        errors.push(ConfigError::at(
            format!("{at}.console.claim"),
            "name the ID token claim that chooses the role",
        ));
    }
    if c.roles.is_empty() {
        errors.push(ConfigError::at(
            format!("{at}.console.roles"),
            "map at least one claim value to a role: nobody could sign in",
        ));
    }
    for (value, role) in &c.roles {
        if *role == config_wire::Role::Dataplane {
            errors.push(ConfigError::at(
                format!("{at}.console.roles.{value}"),
                "`dataplane` is no console role: use admin, operator or viewer",
            ));
        }
    }
}
