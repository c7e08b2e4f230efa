//! Reading a JWT's header (`alg`, `kid`) and `iss` claim before anything about it is trusted,
//! to choose the issuer and key. Bounded work, never panics; no dependency on the rest of
//! Sluice so the fuzz targets can build it alone.

use base64::Engine;
use serde::Deserialize;

/// Longest token accepted (a JWT with many claims is a few KiB).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreparseError {
    Malformed,
    /// `alg: none` (any case).
    AlgNone,
    MissingIssuer,
}

/// Three dot-separated base64url parts, the first two non-empty.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let b64 = |x: &str| {
        x.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    !h.is_empty() && !p.is_empty() && b64(h) && b64(p) && b64(s)
}

/// What is read from a token before its signature is checked, to pick the issuer and key.
#[derive(Debug, PartialEq, Eq)]
pub struct PreParsed {
    pub alg: String,
    pub kid: Option<String>,
    pub iss: String,
}

#[derive(Deserialize)]
struct HeaderProbe {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ClaimsProbe {
    #[serde(default)]
    iss: Option<String>,
}

/// Reads `alg`, `kid` and `iss` from an untrusted token. Bounded work; never panics.
pub fn preparse(token: &str) -> Result<PreParsed, PreparseError> {
    if token.len() > MAX_TOKEN_LEN || !looks_like_jwt(token) {
        return Err(PreparseError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
        return Err(PreparseError::Malformed);
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.decode(header).map_err(|_| PreparseError::Malformed)?;
    let header: HeaderProbe =
        serde_json::from_slice(&header).map_err(|_| PreparseError::Malformed)?;
    if header.alg.eq_ignore_ascii_case("none") {
        return Err(PreparseError::AlgNone);
    }
    if header.crit.is_some() {
        // RFC 7515 §4.1.11: extensions we do not understand must not be ignored.
        return Err(PreparseError::Malformed);
    }
    let payload = b64.decode(payload).map_err(|_| PreparseError::Malformed)?;
    let claims: ClaimsProbe =
        serde_json::from_slice(&payload).map_err(|_| PreparseError::Malformed)?;
    let iss = claims.iss.ok_or(PreparseError::MissingIssuer)?;
    Ok(PreParsed {
        alg: header.alg,
        kid: header.kid,
        iss,
    })
}
