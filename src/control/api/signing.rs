//! The built-in issuer's signing keys through the admin API: the public halves with the key
//! that signs now, and rotation.

use pingora::server::ShutdownWatch;

use super::*;
use crate::config::wire::SigningAlgorithm;
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

/// What a rotation may choose: the new key's algorithm (default: `builtin_issuer.algorithm`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    #[serde(default)]
    algorithm: Option<SigningAlgorithm>,
}

/// A new key, published now and signing after the publish delay; keys that cannot have signed
/// a live token are removed.
pub(super) async fn rotate_keys(
    State(cp): Cp,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let caller = cp.authorize(&headers, Permission::IssuerKeyRotate)?;
    let req: Rotate = if body.trim_ascii().is_empty() {
        Rotate::default()
    } else {
        parse(&body)?
    };
    let alg = req
        .algorithm
        .unwrap_or(cp.config.snapshot().signing.algorithm);
    let (revision, now) = rotate(&cp, alg).await?;
    log::info!(
        "issuer: signing keys rotated ({}) by {}",
        alg.as_str(),
        caller.principal
    );
    let keys = issuer::keys_of(&cp.store.list(issuer::SIGNING_KEY).await?);
    let mut answer = shown(&keys, now);
    answer["revision"] = revision.into();
    Ok((StatusCode::CREATED, Json(answer)))
}

async fn rotate(cp: &ControlPlane, alg: SigningAlgorithm) -> ApiResult<(u64, u64)> {
    let now = unix_now();
    let keys = issuer::keys_of(&cp.store.list(issuer::SIGNING_KEY).await?);
    let ops = issuer::rotation(&keys, &cp.key, now, alg).map_err(ApiError::internal)?;
    Ok((cp.commit(ops).await?, now))
}

/// The scheduled rotation: checked a few times per `builtin_issuer.rotate_after_seconds` (at
/// most hourly), rotating when the newest key is that old. Control-plane replicas race
/// harmlessly: the store takes one commit per revision, and the loser finds a young key at its
/// next check.
pub async fn rotate_on_schedule(cp: Arc<ControlPlane>, mut shutdown: ShutdownWatch) {
    loop {
        let settings = cp.config.snapshot().signing;
        let every = (settings.rotate_after_seconds / 4).clamp(1, 3600);
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(every)) => {}
            _ = shutdown.changed() => return,
        }
        let settings = cp.config.snapshot().signing;
        let keys = match cp.store.list(issuer::SIGNING_KEY).await {
            Ok(r) => issuer::keys_of(&r),
            Err(e) => {
                log::warn!("issuer: scheduled rotation: {e}");
                continue;
            }
        };
        if !issuer::rotation_due(&keys, unix_now(), settings.rotate_after_seconds) {
            continue;
        }
        match rotate(&cp, settings.algorithm).await {
            Ok((revision, _)) => log::info!(
                "issuer: signing keys rotated on schedule ({}), revision {revision}",
                settings.algorithm.as_str()
            ),
            Err(e) => log::warn!("issuer: scheduled rotation: {}", e.message),
        }
    }
}
