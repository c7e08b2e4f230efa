//! The revision feed data planes follow: `/v1/snapshot` long-poll, secrets re-sealed for the caller.

use super::*;

#[derive(Deserialize)]
pub(super) struct SnapshotQuery {
    #[serde(default)]
    after: u64,
    /// Seconds to wait for a newer revision (long-poll), at most 30.
    #[serde(default)]
    wait: u64,
}

pub(super) async fn snapshot(
    State(cp): Cp,
    headers: HeaderMap,
    Query(q): Query<SnapshotQuery>,
) -> ApiResult<Response> {
    cp.authorize(&headers, Permission::SnapshotRead)?;
    let mut rx = cp.revision.subscribe();
    if *rx.borrow() <= q.after && q.wait > 0 {
        let wait = Duration::from_secs(q.wait).min(MAX_WAIT);
        let _ = tokio::time::timeout(wait, rx.wait_for(|r| *r > q.after)).await;
    }
    if *rx.borrow() <= q.after {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let mut dump = cp.store.dump().await?;
    reseal_for(&mut dump, &cp.key, &MasterKey::feed_key(bearer(&headers)?));
    Ok(Json(dump).into_response())
}

/// The feed carries only the gateway's secrets, re-sealed from the master key to the caller's
/// feed key (so a data plane never holds the master key); every other secret is left out, and
/// so is the (sealed) private half of the built-in issuer's signing keys.
fn reseal_for(dump: &mut Dump, master: &MasterKey, feed: &MasterKey) {
    dump.resources.retain_mut(|r| {
        if r.kind == crate::control::issuer::SIGNING_KEY || r.kind == crate::control::issuer::APP {
            if let Value::Object(body) = &mut r.body {
                body.remove("sealed");
            }
            return true;
        }
        if r.kind != state::SECRET {
            return true;
        }
        let resealed = serde_json::from_value::<SecretDoc>(r.body.clone())
            .map_err(anyhow::Error::from)
            .and_then(|mut doc| {
                if !doc.scopes.contains(&SecretScope::Gateway) {
                    return Ok(None);
                }
                let value = master.open(&r.name, &doc.sealed)?;
                doc.sealed = feed.seal(&r.name, value.expose())?;
                Ok(Some(serde_json::to_value(doc)?))
            });
        match resealed {
            Ok(Some(body)) => {
                r.body = body;
                true
            }
            Ok(None) => false,
            Err(e) => {
                log::error!("revision feed: secret `{}` left out: {e:#}", r.name);
                false
            }
        }
    });
}
