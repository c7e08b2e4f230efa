//! Authentication: which Sluice credential a request carries, who it belongs to, and whether it
//! may use the route. Functions of request headers and the snapshot — no Pingora session here.
//!
//! Header precedence: `X-Sluice-Token` (then `Authorization`/`x-api-key` hold the client's own
//! provider key, for BYOK) → `Authorization: Bearer` → `x-api-key`. Two different Sluice
//! credentials on one request are refused, never guessed between.

pub mod jwks;
pub mod jwt;
pub mod jwt_preparse;
pub mod opaque;
pub mod token_format;
pub mod usage;

use http::HeaderMap;
use std::sync::Arc;

use crate::config::{AuthPolicy, Route, Snapshot};
use crate::error::{AuthFailure, Forbidden, GatewayError};

pub const SLUICE_TOKEN_HEADER: &str = "x-sluice-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// `auth: none` routes.
    Anonymous,
    Opaque,
    Jwt,
}

impl CredentialKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            CredentialKind::Anonymous => "anonymous",
            CredentialKind::Opaque => "opaque",
            CredentialKind::Jwt => "jwt",
        }
    }
}

/// Who is making the request. Built once per token record or verified JWT and shared.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub kind: CredentialKind,
    /// Opaque token id, the JWT's principal claim, or `anonymous`.
    pub id: String,
    pub owner: Option<String>,
    pub scopes: Vec<String>,
    /// Index of the JWT's issuer in `Snapshot::issuers`.
    pub issuer: Option<usize>,
    /// A JWT's claims (for `required_claims`); `Null` otherwise.
    pub claims: serde_json::Value,
}

impl Principal {
    pub fn anonymous() -> Arc<Principal> {
        static ANONYMOUS: std::sync::OnceLock<Arc<Principal>> = std::sync::OnceLock::new();
        ANONYMOUS
            .get_or_init(|| {
                Arc::new(Principal {
                    kind: CredentialKind::Anonymous,
                    id: "anonymous".to_owned(),
                    owner: None,
                    scopes: Vec::new(),
                    issuer: None,
                    claims: serde_json::Value::Null,
                })
            })
            .clone()
    }
}

/// The outcome of the authentication step.
#[derive(Debug, Clone, PartialEq)]
pub struct Authenticated {
    pub principal: Arc<Principal>,
    /// The client also sent its own provider key (`Authorization`/`x-api-key` not used by Sluice).
    pub client_provider_key: bool,
}

/// The Sluice credential a request carries (none on `auth: none` routes) and whether the client
/// also sent its own provider key.
pub fn presented(
    headers: &HeaderMap,
    policy: AuthPolicy,
) -> Result<(Option<&str>, bool), GatewayError> {
    let sluice_header = header_str(headers, SLUICE_TOKEN_HEADER);
    let bearer = header_str(headers, "authorization")
        .map(strip_bearer)
        .filter(|t| !t.is_empty());
    let api_key = header_str(headers, "x-api-key");
    if policy == AuthPolicy::None {
        return Ok((None, bearer.is_some() || api_key.is_some()));
    }
    match (sluice_header, bearer, api_key) {
        (Some(t), b, k) => Ok((Some(t), b.is_some() || k.is_some())),
        (None, Some(b), Some(k)) if b != k => Err(GatewayError::ConflictingCredentials),
        (None, Some(t), _) | (None, None, Some(t)) => Ok((Some(t), false)),
        (None, None, None) => Err(GatewayError::MissingCredential),
    }
}

/// Authenticates a request for `route` and checks the route's scopes, issuers and claims.
pub async fn authenticate(
    headers: &HeaderMap,
    route: &Route,
    snap: &Snapshot,
    now_unix: u64,
) -> Result<Authenticated, GatewayError> {
    let (token, client_provider_key) = presented(headers, route.auth)?;
    let Some(token) = token else {
        return Ok(Authenticated {
            principal: Principal::anonymous(),
            client_provider_key,
        });
    };
    let principal = if token.starts_with(opaque::PREFIX) {
        if route.auth == AuthPolicy::Jwt {
            return Err(GatewayError::Forbidden(Forbidden::CredentialKind));
        }
        opaque::verify(token, snap, now_unix).map_err(GatewayError::InvalidCredential)?
    } else if jwt::looks_like_jwt(token) {
        if route.auth == AuthPolicy::Token {
            return Err(GatewayError::Forbidden(Forbidden::CredentialKind));
        }
        snap.jwt
            .verify(token, now_unix)
            .await
            .map_err(GatewayError::InvalidCredential)?
    } else {
        return Err(GatewayError::InvalidCredential(AuthFailure::Malformed));
    };
    authorize(&principal, route)?;
    Ok(Authenticated {
        principal,
        client_provider_key,
    })
}

/// Route-level checks on an authenticated principal (403s).
pub fn authorize(principal: &Principal, route: &Route) -> Result<(), GatewayError> {
    if let (Some(allowed), Some(issuer)) = (&route.issuers, principal.issuer) {
        if !allowed.contains(&issuer) {
            return Err(GatewayError::Forbidden(Forbidden::IssuerNotAllowed));
        }
    }
    if !route
        .scopes
        .iter()
        .all(|s| principal.scopes.iter().any(|have| have == s))
    {
        return Err(GatewayError::Forbidden(Forbidden::MissingScope));
    }
    for (claim, want) in &route.required_claims {
        let ok = match &principal.claims[claim.as_str()] {
            serde_json::Value::String(v) => v == want,
            serde_json::Value::Array(values) => values.iter().any(|v| v.as_str() == Some(want)),
            serde_json::Value::Bool(b) => want.parse::<bool>().ok() == Some(*b),
            serde_json::Value::Number(n) => n
                .as_f64()
                .is_some_and(|n| want.parse::<f64>().ok() == Some(n)),
            serde_json::Value::Null | serde_json::Value::Object(_) => false,
        };
        if !ok {
            return Err(GatewayError::Forbidden(Forbidden::ClaimMismatch));
        }
    }
    Ok(())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn strip_bearer(value: &str) -> &str {
    if value.eq_ignore_ascii_case("bearer") {
        return "";
    }
    match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    }
}

#[cfg(test)]
mod tests;
