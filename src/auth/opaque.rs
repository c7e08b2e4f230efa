//! Opaque API tokens: checking one against the snapshot's token records. The format itself
//! (`sluice_<id>_<secret><check>`, generation, checksum) is in `token_format.rs`.

use std::sync::Arc;

pub use super::token_format::*;
use super::usage::LastUsed;
use super::Principal;
use crate::error::AuthFailure;
use crate::secrets::digest_eq;

#[derive(Debug)]
pub struct TokenRecord {
    pub id: String,
    /// SHA-256 of the token's secret part.
    pub digest: [u8; 32],
    pub expires_at: Option<u64>,
    pub revoked_at: Option<u64>,
    pub owner_enabled: bool,
    pub principal: Arc<Principal>,
    pub last_used: Arc<LastUsed>,
}

/// Checks an opaque token: checksum (no lookup for a typo), id lookup, constant-time digest
/// comparison, expiry, revocation, owner. Route scopes are checked by the caller.
pub fn verify(
    token: &str,
    index: &dyn super::CredentialIndex,
    now_unix: u64,
) -> Result<Arc<Principal>, AuthFailure> {
    let parsed = parse(token).ok_or(AuthFailure::Malformed)?;
    let record = index.token_record(parsed.id).ok_or(AuthFailure::Unknown)?;
    if !digest_eq(&secret_digest(parsed.secret), &record.digest) {
        return Err(AuthFailure::Unknown);
    }
    if record.revoked_at.is_some_and(|t| t <= now_unix) {
        return Err(AuthFailure::Revoked);
    }
    if record.expires_at.is_some_and(|t| t <= now_unix) {
        return Err(AuthFailure::Expired);
    }
    if !record.owner_enabled {
        return Err(AuthFailure::OwnerDisabled);
    }
    record.last_used.mark(now_unix);
    Ok(record.principal.clone())
}
