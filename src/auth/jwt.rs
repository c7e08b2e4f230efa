//! JWTs from trusted issuers. A token is pre-parsed without trusting it (header `alg`/`kid`,
//! claim `iss`) only to choose the issuer and key; the signature and every time/audience claim
//! are then checked by `jsonwebtoken`, whose keys are bound to one algorithm family so an RSA
//! public key can never verify an HMAC token. `alg: none` and `crit` headers are refused; key
//! URLs in the header (`jku`, `x5u`, `jwk`, `x5c`) are ignored — keys only come from the
//! issuer's configured JWKS. Verified tokens are cached by SHA-256 until their `exp`.

use jsonwebtoken::{Algorithm, Validation};
use moka::sync::Cache;
use prometheus::IntCounter;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use super::jwks::{IssuerKeys, Lookup};
pub use super::jwt_preparse::{looks_like_jwt, preparse, PreParsed, PreparseError};
use super::{CredentialKind, Identity, Principal};
use crate::error::AuthFailure;
use crate::metrics::METRICS;

/// The name of Sluice's own issuer among the trusted issuers: reserved (no configured issuer
/// may take it), and its tokens' principals are apps.
pub const BUILTIN_ISSUER: &str = "sluice";

/// The claim of Sluice's tokens for a signed-in person that names the issuer they signed in
/// at (the `issuers:` name): their principal is then `jwt:{that issuer}:{sub}`.
pub const SIGNED_IN_AT: &str = "sluice_idp";

/// The claim of Sluice's tokens for a signed-in person with when they were issued, in Unix
/// milliseconds (an operator's sign-out refuses what was issued before it, to the millisecond).
pub const ISSUED_MS: &str = "sluice_iat_ms";

/// Verified tokens kept at most (each a few hundred bytes).
const CACHE_CAPACITY: u64 = 100_000;

static CACHE_HIT: LazyLock<IntCounter> =
    LazyLock::new(|| METRICS.auth_cache.with_label_values(&["hit"]));
static CACHE_MISS: LazyLock<IntCounter> =
    LazyLock::new(|| METRICS.auth_cache.with_label_values(&["miss"]));

/// A trusted issuer as the hot path needs it.
#[derive(Debug)]
pub struct TrustedIssuer {
    pub name: String,
    pub issuer: String,
    pub principal_claim: String,
    /// One ready `Validation` per accepted algorithm.
    pub validations: Vec<(Algorithm, Validation)>,
    pub keys: Arc<IssuerKeys>,
}

#[derive(Clone)]
struct Cached {
    principal: Arc<Principal>,
    expires_at: u64,
    /// The key that verified the token, and the issuer's key-set generation then: once the
    /// issuer's JWKS no longer has that key, the token is not trusted from the cache.
    kid: Option<Arc<str>>,
    alg: Algorithm,
    generation: u64,
}

struct UntilExp;

impl moka::Expiry<[u8; 32], Cached> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Cached,
        _now: Instant,
    ) -> Option<Duration> {
        let now = crate::clock::unix_now();
        Some(Duration::from_secs(value.expires_at.saturating_sub(now)))
    }
}

/// All trusted issuers and the cache of verified tokens, for one snapshot.
pub struct JwtVerifier {
    pub issuers: Vec<TrustedIssuer>,
    by_iss: HashMap<String, usize>,
    cache: Cache<[u8; 32], Cached>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuers", &self.issuers)
            .finish_non_exhaustive()
    }
}

/// The principal of verified `claims`, namespaced by the issuer: a subject is only unique
/// within its issuer, and a claim such as `client_id` never makes a JWT caller into an owner.
fn principal_of(
    issuer: &TrustedIssuer,
    idx: usize,
    claims: serde_json::Value,
) -> Result<Principal, AuthFailure> {
    let subject = claims[issuer.principal_claim.as_str()]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or(AuthFailure::MissingClaim)?
        .to_owned();
    let builtin = issuer.name == BUILTIN_ISSUER;
    let identity = if builtin {
        let client_id = claims["client_id"]
            .as_str()
            .ok_or(AuthFailure::MissingClaim)?;
        match claims[SIGNED_IN_AT].as_str() {
            // A person signed in at a trusted issuer through Sluice's authorization endpoint:
            // the same principal as that issuer's own tokens for them.
            Some(at) if at != BUILTIN_ISSUER && super::valid_principal_name(at) => Identity::Jwt {
                issuer: at.to_owned(),
                subject: subject.clone(),
            },
            Some(_) => return Err(AuthFailure::MissingClaim),
            None => Identity::App {
                client_id: client_id.to_owned(),
                subject: subject.clone(),
            },
        }
    } else {
        Identity::Jwt {
            issuer: issuer.name.clone(),
            subject: subject.clone(),
        }
    };
    Ok(Principal {
        scopes: scopes(&claims),
        issuer: Some(idx),
        audience_bound: builtin,
        claims,
        ..Principal::new(CredentialKind::Jwt, identity, subject)
    })
}

impl JwtVerifier {
    pub fn new(issuers: Vec<TrustedIssuer>) -> JwtVerifier {
        let by_iss = issuers
            .iter()
            .enumerate()
            .map(|(i, t)| (t.issuer.clone(), i))
            .collect();
        let cache = Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            .expire_after(UntilExp)
            .build();
        JwtVerifier {
            issuers,
            by_iss,
            cache,
        }
    }

    /// A token verified before and not expired since: a hash and a lookup, no signature check.
    /// `Err` carries the digest for the slow path.
    pub fn verify_cached(&self, token: &str, now_unix: u64) -> Result<Arc<Principal>, [u8; 32]> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        match self.cache.get(&digest) {
            Some(hit) if hit.expires_at > now_unix && self.key_still_there(&hit) => {
                Ok(hit.principal)
            }
            Some(_) => {
                self.cache.invalidate(&digest);
                Err(digest)
            }
            None => Err(digest),
        }
    }

    /// Whether the key that verified a cached token is still one of its issuer's keys: one
    /// atomic load while the key set is unchanged, a lookup by `kid` after a refresh.
    fn key_still_there(&self, hit: &Cached) -> bool {
        let Some(issuer) = hit.principal.issuer.and_then(|i| self.issuers.get(i)) else {
            return false;
        };
        hit.generation == issuer.keys.generation()
            || matches!(
                issuer.keys.find(hit.kid.as_deref(), hit.alg),
                Lookup::Found(_)
            )
    }

    pub async fn verify(&self, token: &str, now_unix: u64) -> Result<Arc<Principal>, AuthFailure> {
        let digest = match self.verify_cached(token, now_unix) {
            Ok(principal) => {
                CACHE_HIT.inc();
                return Ok(principal);
            }
            Err(digest) => digest,
        };
        CACHE_MISS.inc();
        let pre = preparse(token).map_err(preparse_failure)?;
        let idx = *self
            .by_iss
            .get(pre.iss.as_str())
            .ok_or(AuthFailure::UnknownIssuer)?;
        let issuer = &self.issuers[idx];
        let (alg, validation, key, generation) = issuer_key(issuer, &pre).await?;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, validation)
            .map_err(map_error)?;
        let claims = data.claims;
        let expires_at = claims["exp"].as_u64().ok_or(AuthFailure::MissingClaim)?;
        let principal = Arc::new(principal_of(issuer, idx, claims)?);
        self.cache.insert(
            digest,
            Cached {
                principal: principal.clone(),
                expires_at,
                kid: pre.kid.as_deref().map(Arc::from),
                alg,
                generation,
            },
        );
        Ok(principal)
    }
}

impl JwtVerifier {
    /// An OpenID Connect ID token of the issuer at `index` for the client `client_id`: its
    /// signature (the issuer's keys and algorithms), `iss`, `aud` and expiry. Never cached, and
    /// never a principal by itself (the caller checks its nonce).
    pub async fn verify_id_token(
        &self,
        index: usize,
        token: &str,
        client_id: &str,
        _now_unix: u64,
    ) -> Result<serde_json::Value, AuthFailure> {
        let issuer = self.issuers.get(index).ok_or(AuthFailure::UnknownIssuer)?;
        let pre = preparse(token).map_err(preparse_failure)?;
        if pre.iss != issuer.issuer {
            return Err(AuthFailure::UnknownIssuer);
        }
        let (_, validation, key, _) = issuer_key(issuer, &pre).await?;
        let mut validation = validation.clone();
        validation.set_audience(&[client_id]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation)
            .map_err(map_error)?;
        Ok(data.claims)
    }
}

fn preparse_failure(e: PreparseError) -> AuthFailure {
    match e {
        PreparseError::Malformed => AuthFailure::Malformed,
        PreparseError::AlgNone => AuthFailure::UnsupportedAlgorithm,
        PreparseError::MissingIssuer => AuthFailure::MissingClaim,
    }
}

/// The issuer's validation for the token's `alg` and the key its `kid` names (fetching the
/// issuer's keys again, within limits, for a key not seen yet), with the key set's generation.
async fn issuer_key<'a>(
    issuer: &'a TrustedIssuer,
    pre: &PreParsed,
) -> Result<(Algorithm, &'a Validation, Arc<super::jwks::KeyEntry>, u64), AuthFailure> {
    let (alg, validation) = issuer
        .validations
        .iter()
        .find(|(a, _)| alg_name(*a) == pre.alg)
        .ok_or(AuthFailure::UnsupportedAlgorithm)?;
    let mut generation = issuer.keys.generation();
    let key = match issuer.keys.find(pre.kid.as_deref(), *alg) {
        Lookup::Found(key) => key,
        Lookup::Incompatible => return Err(AuthFailure::UnsupportedAlgorithm),
        Lookup::Missing => {
            // One refetch per issuer at a time, at most every few seconds: a burst of
            // made-up kids cannot turn into a burst of fetches.
            if !issuer.keys.refetch_for_unknown_key().await {
                return Err(AuthFailure::UnknownKey);
            }
            generation = issuer.keys.generation();
            match issuer.keys.find(pre.kid.as_deref(), *alg) {
                Lookup::Found(key) => key,
                Lookup::Incompatible => return Err(AuthFailure::UnsupportedAlgorithm),
                Lookup::Missing => return Err(AuthFailure::UnknownKey),
            }
        }
    };
    Ok((*alg, validation, key, generation))
}

/// `scope` (space-separated string) or `scp` (array or string).
fn scopes(claims: &serde_json::Value) -> Vec<String> {
    let split = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    match (&claims["scope"], &claims["scp"]) {
        (serde_json::Value::String(s), _) => split(s),
        (_, serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        (_, serde_json::Value::String(s)) => split(s),
        _ => Vec::new(),
    }
}

fn map_error(e: jsonwebtoken::errors::Error) -> AuthFailure {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthFailure::Expired,
        ErrorKind::ImmatureSignature => AuthFailure::NotYetValid,
        ErrorKind::InvalidAudience => AuthFailure::WrongAudience,
        ErrorKind::InvalidIssuer => AuthFailure::UnknownIssuer,
        ErrorKind::InvalidSignature => AuthFailure::BadSignature,
        ErrorKind::MissingRequiredClaim(_) => AuthFailure::MissingClaim,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthFailure::UnsupportedAlgorithm
        }
        _ => AuthFailure::Malformed,
    }
}

/// Asymmetric algorithms only: a shared-secret algorithm would make the JWKS's public keys
/// (or any `oct` key in it) a signing key for anyone.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "RS384" => Some(Algorithm::RS384),
        "RS512" => Some(Algorithm::RS512),
        "PS256" => Some(Algorithm::PS256),
        "PS384" => Some(Algorithm::PS384),
        "PS512" => Some(Algorithm::PS512),
        "ES256" => Some(Algorithm::ES256),
        "ES384" => Some(Algorithm::ES384),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        _ => "unsupported",
    }
}

/// The `Validation` for one issuer and algorithm: issuer, audiences, leeway on `exp` and `nbf`.
pub fn validation(alg: Algorithm, issuer: &str, audiences: &[String], leeway: u64) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = leeway;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.set_issuer(&[issuer]);
    v.set_audience(audiences);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use proptest::prelude::*;

    fn enc(v: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn preparse_reads_alg_kid_iss_and_refuses_none_and_crit() {
        let t = format!(
            "{}.{}.sig",
            enc(&serde_json::json!({"alg":"RS256","kid":"k1","jku":"https://evil"})),
            enc(&serde_json::json!({"iss":"https://idp"}))
        );
        assert_eq!(
            preparse(&t),
            Ok(PreParsed {
                alg: "RS256".into(),
                kid: Some("k1".into()),
                iss: "https://idp".into()
            })
        );
        let none = format!(
            "{}.{}.",
            enc(&serde_json::json!({"alg":"none"})),
            enc(&serde_json::json!({"iss":"x"}))
        );
        assert_eq!(preparse(&none), Err(PreparseError::AlgNone));
        let crit = format!(
            "{}.{}.s",
            enc(&serde_json::json!({"alg":"RS256","crit":["b64"]})),
            enc(&serde_json::json!({"iss":"x"}))
        );
        assert_eq!(preparse(&crit), Err(PreparseError::Malformed));
        let no_iss = format!(
            "{}.{}.s",
            enc(&serde_json::json!({"alg":"RS256"})),
            enc(&serde_json::json!({}))
        );
        assert_eq!(preparse(&no_iss), Err(PreparseError::MissingIssuer));
        assert_eq!(preparse("a.b"), Err(PreparseError::Malformed));
        assert!(!looks_like_jwt("sluice_abc"));
    }

    #[test]
    fn only_asymmetric_algorithms_are_accepted() {
        assert!(parse_algorithm("HS256").is_none());
        assert!(parse_algorithm("none").is_none());
        assert_eq!(parse_algorithm("EdDSA"), Some(Algorithm::EdDSA));
    }

    #[test]
    fn scopes_from_scope_or_scp() {
        assert_eq!(scopes(&serde_json::json!({"scope": "a b"})), vec!["a", "b"]);
        assert_eq!(
            scopes(&serde_json::json!({"scp": ["a", "c"]})),
            vec!["a", "c"]
        );
        assert!(scopes(&serde_json::json!({})).is_empty());
    }

    proptest! {
        #[test]
        fn preparse_never_panics(s in "[A-Za-z0-9_.-]{0,300}") {
            let _ = preparse(&s);
        }
    }
}
