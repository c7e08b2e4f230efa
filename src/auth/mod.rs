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

use http::{HeaderMap, HeaderName};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::error::{AuthFailure, BadRequest, Forbidden, GatewayError};

/// Which Sluice credentials a route (or the forward proxy) accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuthPolicy {
    /// No Sluice credential; any client reaching the listener may use the route.
    None,
    /// Opaque Sluice tokens only (`sluice_…`); `static` is accepted as another name for it.
    #[serde(alias = "static")]
    Token,
    /// JWTs from a trusted issuer only.
    Jwt,
    /// An opaque token or a JWT.
    #[default]
    Any,
}

/// Who may use a route (or the forward proxy).
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub auth: AuthPolicy,
    pub scopes: Vec<String>,
    /// Indices into `jwt.issuers`; `None` accepts every issuer.
    pub issuers: Option<Vec<usize>>,
    pub required_claims: BTreeMap<String, String>,
}

/// What verifying a credential needs from the configuration; the snapshot provides it, so
/// this layer does not depend on the configuration's shape.
pub trait CredentialIndex: Sync {
    /// The opaque token record with this id.
    fn token_record(&self, id: &str) -> Option<&opaque::TokenRecord>;
    /// Trusted issuers and the verified-JWT cache.
    fn jwt_verifier(&self) -> &jwt::JwtVerifier;
}

pub const SLUICE_TOKEN_HEADER: &str = "x-sluice-token";
static SLUICE_TOKEN: HeaderName = HeaderName::from_static(SLUICE_TOKEN_HEADER);
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Headers that carry a client credential of some provider (or of Sluice): never forwarded as
/// is. Header names built at compile time: a lookup with one skips parsing the name.
pub static CREDENTIAL_HEADERS: [HeaderName; 5] = [
    http::header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
    HeaderName::from_static("x-goog-api-key"),
    http::header::PROXY_AUTHORIZATION,
];

/// Refuses a request that sends any credential header twice: proxies, SDKs and upstreams
/// disagree on which of two values counts (the first, the last, both joined), so a second
/// value could carry a Sluice credential past the check or a client key past the strip.
pub fn single_credentials(headers: &HeaderMap) -> Result<(), GatewayError> {
    // Almost every request repeats no header at all: one comparison instead of six lookups.
    if headers.len() == headers.keys_len() {
        return Ok(());
    }
    let twice = |name: &HeaderName| {
        let mut values = headers.get_all(name).iter();
        values.next().is_some() && values.next().is_some()
    };
    if twice(&SLUICE_TOKEN) || CREDENTIAL_HEADERS.iter().any(twice) {
        return Err(GatewayError::BadRequest(BadRequest::DuplicateCredential));
    }
    Ok(())
}

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
    single_credentials(headers)?;
    let sluice_header = header_str(headers, &SLUICE_TOKEN);
    let bearer = header_str(headers, &http::header::AUTHORIZATION)
        .map(strip_bearer)
        .filter(|t| !t.is_empty());
    let api_key = header_str(headers, &X_API_KEY);
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

/// Authenticates a request under `access` (a route's or the forward proxy's) and checks its
/// scopes, issuers and claims.
pub async fn authenticate(
    headers: &HeaderMap,
    access: &Access,
    index: &dyn CredentialIndex,
    now_unix: u64,
) -> Result<Authenticated, GatewayError> {
    let (token, client_provider_key) = presented(headers, access.auth)?;
    let Some(token) = token else {
        return Ok(Authenticated {
            principal: Principal::anonymous(),
            client_provider_key,
        });
    };
    let principal = verify(token, access, index, now_unix).await?;
    Ok(Authenticated {
        principal,
        client_provider_key,
    })
}

/// Verifies one Sluice credential (opaque token or JWT) and authorizes it under `access`.
pub async fn verify(
    token: &str,
    access: &Access,
    index: &dyn CredentialIndex,
    now_unix: u64,
) -> Result<Arc<Principal>, GatewayError> {
    let principal = if token.starts_with(opaque::PREFIX) {
        if access.auth == AuthPolicy::Jwt {
            return Err(GatewayError::Forbidden(Forbidden::CredentialKind));
        }
        opaque::verify(token, index, now_unix).map_err(GatewayError::InvalidCredential)?
    } else if jwt::looks_like_jwt(token) {
        if access.auth == AuthPolicy::Token {
            return Err(GatewayError::Forbidden(Forbidden::CredentialKind));
        }
        index
            .jwt_verifier()
            .verify(token, now_unix)
            .await
            .map_err(GatewayError::InvalidCredential)?
    } else {
        return Err(GatewayError::InvalidCredential(AuthFailure::Malformed));
    };
    authorize(&principal, access)?;
    Ok(principal)
}

/// Whether a header value is a Sluice credential rather than a provider key (so it is never
/// passed upstream as the client's own key).
pub fn is_sluice_credential(value: &str) -> bool {
    let value = strip_bearer(value.trim());
    value.starts_with(opaque::PREFIX) || jwt::looks_like_jwt(value)
}

/// The token in a `Proxy-Authorization` header: `Basic base64(user:TOKEN)` (the user is
/// ignored) or `Bearer TOKEN`.
pub fn proxy_credential(value: &str) -> Option<String> {
    use base64::Engine;
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_owned());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    (!password.is_empty()).then(|| password.to_owned())
}

/// Route-level checks on an authenticated principal: 403s, and the 401 of a token for another
/// audience.
pub fn authorize(principal: &Principal, access: &Access) -> Result<(), GatewayError> {
    if let (Some(allowed), Some(issuer)) = (&access.issuers, principal.issuer) {
        if !allowed.contains(&issuer) {
            return Err(GatewayError::Forbidden(Forbidden::IssuerNotAllowed));
        }
    }
    // Claims first: a token for another audience is refused as such, whatever its scopes.
    for (claim, want) in &access.required_claims {
        let ok = match &principal.claims[claim.as_str()] {
            serde_json::Value::String(v) => v == want,
            serde_json::Value::Array(values) => values.iter().any(|v| v.as_str() == Some(want)),
            serde_json::Value::Bool(b) => want.parse::<bool>().ok() == Some(*b),
            serde_json::Value::Number(n) => n
                .as_f64()
                .is_some_and(|n| want.parse::<f64>().ok() == Some(n)),
            serde_json::Value::Null | serde_json::Value::Object(_) => false,
        };
        // A token for another audience is not a token for this resource at all (RFC 6750
        // `invalid_token`, and what MCP clients expect): 401, so the client gets a new one.
        if !ok && claim == "aud" {
            return Err(GatewayError::InvalidCredential(AuthFailure::WrongAudience));
        }
        if !ok {
            return Err(GatewayError::Forbidden(Forbidden::ClaimMismatch));
        }
    }
    if !access
        .scopes
        .iter()
        .all(|s| principal.scopes.iter().any(|have| have == s))
    {
        return Err(GatewayError::Forbidden(Forbidden::MissingScope));
    }
    Ok(())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The token of `Bearer TOKEN` (any case), or the value as is.
pub fn strip_bearer(value: &str) -> &str {
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
