//! The built-in issuer's signing keys through the admin API: the public halves with the key
//! that signs now, and rotation.

use super::*;
use crate::control::issuer::{self, KeyDoc};

fn shown(keys: &[KeyDoc], now: u64) -> Value {
    let signing = issuer::signing(keys, now).map(|k| k.kid.clone());
    let items: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({
                "kid": k.kid,
                "alg": k.alg,
                "created_at": rfc3339(k.created_at),
                "signing": signing.as_deref() == Some(k.kid.as_str()),
                "jwk": k.jwk,
            })
        })
        .collect();
    json!({ "items": items, "publish_delay_seconds": issuer::PUBLISH_DELAY_SECONDS })
}

pub(super) async fn list_keys(State(cp): Cp, headers: HeaderMap) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::IssuerKeyList)?;
    let keys = issuer::keys_of(&cp.store.list(issuer::SIGNING_KEY).await?);
    Ok(Json(shown(&keys, unix_now())))
}

/// A new key, published now and signing after the publish delay; keys that cannot have signed
/// a live token are removed.
pub(super) async fn rotate_keys(
    State(cp): Cp,
    headers: HeaderMap,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let caller = cp.authorize(&headers, Permission::IssuerKeyRotate)?;
    let now = unix_now();
    let keys = issuer::keys_of(&cp.store.list(issuer::SIGNING_KEY).await?);
    let ops = issuer::rotation(&keys, &cp.key, now).map_err(ApiError::internal)?;
    let revision = cp.commit(ops).await?;
    log::info!("issuer: signing keys rotated by {}", caller.principal);
    let keys = issuer::keys_of(&cp.store.list(issuer::SIGNING_KEY).await?);
    let mut answer = shown(&keys, now);
    answer["revision"] = revision.into();
    Ok((StatusCode::CREATED, Json(answer)))
}
