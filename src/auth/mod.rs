//! Authentication: which Sluice credential a request carries and who it belongs to. Pure
//! functions from request headers and the snapshot to a [`Principal`] — no Pingora session here.
//!
//! Header precedence: `X-Sluice-Token` (then `Authorization`/`x-api-key` hold the client's own
//! provider key, for BYOK) → `Authorization: Bearer` → `x-api-key`. Two different Sluice
//! credentials on one request are refused, never guessed between.

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::config::{AuthPolicy, Snapshot};
use crate::error::GatewayError;
use crate::secrets::digest_eq;

pub const SLUICE_TOKEN_HEADER: &str = "x-sluice-token";

/// Who is making the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The credential's id (a static token's `id`), or `anonymous` on `auth: none` routes.
    pub id: String,
    pub owner: Option<String>,
}

/// The outcome of the authentication step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub principal: Principal,
    /// The client also sent its own provider key (`Authorization`/`x-api-key` not used by Sluice).
    pub client_provider_key: bool,
}

/// Authenticates a request for a route with `policy`.
pub fn authenticate(
    headers: &HeaderMap,
    policy: AuthPolicy,
    snap: &Snapshot,
) -> Result<Authenticated, GatewayError> {
    let sluice_header = header_str(headers, SLUICE_TOKEN_HEADER);
    let bearer = header_str(headers, "authorization")
        .map(strip_bearer)
        .filter(|t| !t.is_empty());
    let api_key = header_str(headers, "x-api-key");
    match policy {
        AuthPolicy::None => Ok(Authenticated {
            principal: Principal {
                id: "anonymous".to_owned(),
                owner: None,
            },
            client_provider_key: bearer.is_some() || api_key.is_some(),
        }),
        AuthPolicy::Static => {
            let (token, client_provider_key) = match (sluice_header, bearer, api_key) {
                (Some(t), b, k) => (t, b.is_some() || k.is_some()),
                (None, Some(b), Some(k)) if b != k => {
                    return Err(GatewayError::ConflictingCredentials)
                }
                (None, Some(t), _) | (None, None, Some(t)) => (t, false),
                (None, None, None) => return Err(GatewayError::MissingCredential),
            };
            let principal = check_static(token, snap).ok_or(GatewayError::InvalidCredential)?;
            Ok(Authenticated {
                principal,
                client_provider_key,
            })
        }
    }
}

/// Compares the token's SHA-256 with every static token in constant time (no early exit, so the
/// time taken does not depend on which record, if any, matched).
pub fn check_static(token: &str, snap: &Snapshot) -> Option<Principal> {
    if token.is_empty() {
        return None;
    }
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut found = None;
    for record in &snap.tokens {
        if digest_eq(&digest, &record.digest) && found.is_none() {
            found = Some(record);
        }
    }
    found.map(|r| Principal {
        id: r.id.clone(),
        owner: r.owner.clone(),
    })
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
