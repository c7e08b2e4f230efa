//! A token record as written (YAML `tokens:`, the store, `sluice token generate`).

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

use crate::config::kind::Kind;
use crate::config::wire;

/// An opaque token record (what `sluice token generate` prints): never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// The 12-character id inside the token (`sluice_<id>_…`).
    pub id: String,
    /// `sha256:<64 hex>` of the token's secret part.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The owner's id when the control plane minted the token: the token acts for that owner
    /// only while it exists with this id (an owner deleted and created again under the same
    /// name does not take over its predecessor's tokens; they are refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// RFC 3339 time after which the token is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// RFC 3339 time from which the token is refused (revocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Whether the token may present its owner's connected accounts (vault grants) upstream.
    /// Tokens written in the file may; a token minted or rotated through the admin API for an
    /// owner by anyone but an admin may not, so no operator can act as a user upstream.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub grants: bool,
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

/// Longest lifetime a new token may be given: ten years (the admin API and `sluice token
/// generate` both refuse more).
pub const MAX_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);

impl Token {
    /// `expires_at` (RFC 3339) of a token that lives `lifetime` from now; `None` past
    /// [`MAX_LIFETIME`].
    pub fn expiry_after(lifetime: Duration) -> Option<String> {
        if lifetime > MAX_LIFETIME {
            return None;
        }
        SystemTime::now()
            .checked_add(lifetime)
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
    }

    /// A new opaque token (shown once) and its record: only the SHA-256 of its secret is kept.
    pub fn generate(
        name: Option<String>,
        owner: Option<String>,
        scopes: Vec<String>,
        expires_at: Option<String>,
    ) -> Result<(String, Token), getrandom::Error> {
        let (token, id, digest) = crate::auth::opaque::generate()?;
        let record = Token {
            id,
            sha256: format!("sha256:{}", hex::encode(digest)),
            name,
            owner,
            owner_id: None,
            scopes,
            expires_at,
            revoked_at: None,
            grants: true,
        };
        Ok((token, record))
    }
}

impl Kind for Token {
    const KIND: &'static str = "token";
    const LIST: &'static str = "tokens";
    fn name(&self) -> String {
        self.id.clone()
    }
    fn list(config: &wire::Config) -> &Vec<Self> {
        &config.tokens
    }
    fn list_mut(config: &mut wire::Config) -> &mut Vec<Self> {
        &mut config.tokens
    }
}
