//! Validation and precomputation of the authentication part of a snapshot: token records
//! (indexed by id, principals prebuilt), owners, and trusted JWT issuers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use super::snapshot::BuildContext;
use super::{wire, ConfigError};
use crate::auth::jwt::{self, JwtVerifier, TrustedIssuer};
use crate::auth::opaque::TokenRecord;
use crate::auth::{opaque, CredentialKind, Principal};

/// Whether each owner is enabled; names must be unique.
fn owners_enabled<'a>(
    owners: &'a [wire::Owner],
    errors: &mut Vec<ConfigError>,
) -> HashMap<&'a str, bool> {
    let mut enabled = HashMap::new();
    for (i, o) in owners.iter().enumerate() {
        let wire::Owner {
            name,
            enabled: on,
            role: _,
        } = o;
        if name.is_empty() || enabled.insert(name.as_str(), *on).is_some() {
            errors.push(ConfigError::at(
                format!("owners[{i}].name"),
                format!("owner `{name}` is empty or repeated"),
            ));
        }
    }
    enabled
}

/// Token records by id, each with its principal built once.
pub fn tokens(
    tokens: &[wire::Token],
    owners: &[wire::Owner],
    ctx: &BuildContext,
    errors: &mut Vec<ConfigError>,
) -> HashMap<String, TokenRecord> {
    let enabled = owners_enabled(owners, errors);
    let mut out = HashMap::new();
    for (i, t) in tokens.iter().enumerate() {
        let at = format!("tokens[{i}]");
        let wire::Token {
            id,
            sha256,
            name,
            owner,
            scopes,
            expires_at,
            revoked_at,
        } = t;
        let id_ok = id.len() == opaque::ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !id_ok {
            errors.push(ConfigError::at(
                format!("{at}.id"),
                format!("`{id}` is not a token id: 12 letters or digits, as printed by `sluice token generate`"),
            ));
            continue;
        }
        let Some(digest) = parse_digest(sha256) else {
            errors.push(ConfigError::at(
                format!("{at}.sha256"),
                "expected `sha256:` and 64 hex digits (the SHA-256 of the token's secret, never the token)",
            ));
            continue;
        };
        let expires_at = time(expires_at.as_deref(), &format!("{at}.expires_at"), errors);
        let revoked_at = time(revoked_at.as_deref(), &format!("{at}.revoked_at"), errors);
        if out.contains_key(id.as_str()) {
            errors.push(ConfigError::at(
                format!("{at}.id"),
                format!("token id `{id}` is repeated"),
            ));
            continue;
        }
        let owner_enabled = owner
            .as_deref()
            .and_then(|o| enabled.get(o).copied())
            .unwrap_or(true);
        let principal = Arc::new(Principal {
            kind: CredentialKind::Opaque,
            id: name.clone().unwrap_or_else(|| id.clone()),
            owner: owner.clone(),
            scopes: scopes.clone(),
            issuer: None,
            claims: serde_json::Value::Null,
        });
        out.insert(
            id.clone(),
            TokenRecord {
                id: id.clone(),
                digest,
                expires_at,
                revoked_at,
                owner_enabled,
                principal,
                last_used: ctx.usage.get(id),
            },
        );
    }
    out
}

pub fn issuers(
    issuers: &[wire::Issuer],
    ctx: &BuildContext,
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
        let wire::Issuer {
            name,
            issuer,
            jwks_uri,
            audiences,
            algorithms,
            leeway_seconds,
            principal_claim,
        } = w;
        let before = errors.len();
        if name.is_empty() || !names.insert(name.as_str()) {
            errors.push(ConfigError::at(
                format!("{at}.name"),
                format!("issuer name `{name}` is empty or repeated"),
            ));
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
    JwtVerifier::new(built)
}

/// `issuer` (unique) and `jwks_uri` are http(s) URLs.
fn check_urls<'a>(
    w: &'a wire::Issuer,
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

fn time(value: Option<&str>, at: &str, errors: &mut Vec<ConfigError>) -> Option<u64> {
    let value = value?;
    match humantime::parse_rfc3339_weak(value) {
        Ok(t) => Some(
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        ),
        Err(e) => {
            errors.push(ConfigError::at(
                at,
                format!("`{value}` is not an RFC 3339 time (e.g. 2027-01-31T00:00:00Z): {e}"),
            ));
            None
        }
    }
}

pub fn parse_digest(value: &str) -> Option<[u8; 32]> {
    let hex_part = value.strip_prefix("sha256:").unwrap_or(value);
    let bytes = hex::decode(hex_part).ok()?;
    bytes.try_into().ok()
}
