//! Opaque token records: indexed by id, each principal built once. The record as written is
//! `wire`.

pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use crate::auth::opaque::{self, TokenRecord};
use crate::auth::{CredentialKind, Identity, Principal};
use crate::config::wire as config_wire;
use crate::config::{BuildContext, ConfigError};

/// Token records by id, each with its principal built once.
pub fn build_all(
    tokens: &[config_wire::Token],
    owners: &[config_wire::Owner],
    ctx: &BuildContext,
    errors: &mut Vec<ConfigError>,
) -> HashMap<String, TokenRecord> {
    let owners = super::owner::index(owners, errors);
    let mut out = HashMap::new();
    for (i, t) in tokens.iter().enumerate() {
        let at = format!("tokens[{i}]");
        let config_wire::Token {
            id,
            sha256,
            owner,
            expires_at,
            revoked_at,
            // The principal's parts: `principal_of`.
            name: _,
            owner_id: _,
            scopes: _,
            grants: _,
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
        if let Some(o) = owner
            .as_deref()
            .filter(|o| !crate::auth::valid_principal_name(o))
        {
            errors.push(ConfigError::at(
                format!("{at}.owner"),
                format!("`{o}` is not an owner name: 1 to 128 letters, digits and `-_.@+`"),
            ));
            continue;
        }
        let (principal, owner_enabled) =
            principal_of(t, owner.as_deref().and_then(|o| owners.get(o)));
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

/// A token's principal (its owner, else the token itself by id: never its name, which anyone
/// may repeat; rotating a token keeps the owner's grants and counters), and whether its owner
/// lets it in. A token the control plane minted names its owner by id too: it is refused once
/// that owner is gone, even if another of the same name exists.
fn principal_of(
    t: &config_wire::Token,
    found: Option<&&config_wire::Owner>,
) -> (Arc<Principal>, bool) {
    let same_owner = match &t.owner_id {
        Some(uid) => found.is_some_and(|o| o.id.as_ref() == Some(uid)),
        None => true,
    };
    let owner_enabled = same_owner && found.is_none_or(|o| o.enabled);
    let identity = match &t.owner {
        Some(name) => Identity::Owner {
            name: name.clone(),
            uid: t
                .owner_id
                .clone()
                .or_else(|| found.and_then(|o| o.id.clone())),
        },
        None => Identity::Token { id: t.id.clone() },
    };
    let shown = t
        .name
        .as_ref()
        .or(t.owner.as_ref())
        .unwrap_or(&t.id)
        .clone();
    let principal = Principal {
        grants: t.grants,
        token_id: Some(t.id.clone()),
        credential: Identity::Token { id: t.id.clone() }
            .render()
            .into_boxed_str(),
        scopes: t.scopes.clone(),
        ..Principal::new(CredentialKind::Opaque, identity, shown)
    };
    (Arc::new(principal), owner_enabled)
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
