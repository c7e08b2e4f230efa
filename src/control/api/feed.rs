//! The revision feed data planes follow: `/v1/snapshot` long-poll, signed by the control plane
//! (Ed25519, `x-sluice-feed-signature`; data planes pin `/v1/snapshot/key`), gateway secrets
//! re-sealed for the calling data plane and bound to the revision. Other callers (an admin
//! reading the feed) get no secret at all; every answer with a body is audited.

use super::*;

#[derive(Deserialize)]
pub(super) struct SnapshotQuery {
    #[serde(default)]
    after: u64,
    /// Seconds to wait for a newer revision (long-poll), at most 30.
    #[serde(default)]
    wait: u64,
    /// The data plane's random nonce for this request, covered by the answer's signature
    /// (a 304 is signed too): no answer can be replayed.
    #[serde(default)]
    nonce: Option<String>,
}

pub(super) async fn snapshot(
    State(cp): Cp,
    headers: HeaderMap,
    Query(q): Query<SnapshotQuery>,
) -> ApiResult<Response> {
    let caller = cp.authorize(&headers, Permission::SnapshotRead)?;
    let mut rx = cp.revision.subscribe();
    if *rx.borrow() <= q.after && q.wait > 0 {
        let wait = Duration::from_secs(q.wait).min(MAX_WAIT);
        let _ = tokio::time::timeout(wait, rx.wait_for(|r| *r > q.after)).await;
    }
    let signer = cp.key.feed_signer().map_err(ApiError::internal)?;
    let nonce = q.nonce.as_deref().filter(|n| valid_nonce(n));
    let sign = |status: u16, body: &[u8]| {
        let message = match nonce {
            Some(n) => crate::control::crypto::feed_message(n, status, body),
            None => body.to_vec(),
        };
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            signer.sign(&message),
        )
    };
    let signature = axum::http::HeaderName::from_static(crate::control::crypto::FEED_SIGNATURE);
    if *rx.borrow() <= q.after {
        let signed = nonce.map(|_| sign(304, q.after.to_string().as_bytes()));
        let mut answer = StatusCode::NOT_MODIFIED.into_response();
        if let Some(v) = signed.and_then(|v| axum::http::HeaderValue::from_str(&v).ok()) {
            answer.headers_mut().insert(signature, v);
        }
        return Ok(answer);
    }
    let mut dump = cp.store.dump().await?;
    // Only a data plane gets secrets: an admin asking would otherwise read "write-only"
    // secrets in plaintext by opening them with the key its own token derives.
    let feed = (caller.role == Some(Role::Dataplane))
        .then(|| bearer(&headers).map(MasterKey::feed_key))
        .transpose()?;
    let secrets = reseal_for(&mut dump, &cp.key, feed.as_ref());
    log::info!(
        "revision feed: revision {} read by {} ({secrets} secrets)",
        dump.revision,
        caller.principal
    );
    cp.vault.audit_record(&json!({
        "ts": unix_now(),
        "event": "feed.read",
        "principal": caller.principal,
        "role": caller.role,
        "revision": dump.revision,
        "secrets": secrets,
    }));
    let body = serde_json::to_vec(&dump).map_err(ApiError::internal)?;
    let signed = sign(200, &body);
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/json".to_owned(),
            ),
            (signature, signed),
        ],
        body,
    )
        .into_response())
}

/// A nonce as data planes send it: 16 to 64 letters and digits.
fn valid_nonce(nonce: &str) -> bool {
    (16..=64).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The public half of the feed's signing key (`ed25519:BASE64`), for data planes to pin with
/// `--control-plane-key` / `SLUICE_CONTROL_PLANE_KEY`. Public: it proves nothing by itself.
pub(super) async fn snapshot_key(State(cp): Cp) -> ApiResult<Response> {
    let signer = cp.key.feed_signer().map_err(ApiError::internal)?;
    Ok(Json(json!({
        "algorithm": "Ed25519",
        "public_key": crate::control::crypto::feed_public_key(&signer),
    }))
    .into_response())
}

/// The feed carries only the gateway's secrets, re-sealed from the master key to the caller's
/// feed key (so a data plane never holds the master key) and bound to the revision; with no
/// feed key (not a data plane) no secret at all. Every other secret is left out, and so is the
/// (sealed) private half of the built-in issuer's signing keys. Returns the secrets sent.
fn reseal_for(dump: &mut Dump, master: &MasterKey, feed: Option<&MasterKey>) -> usize {
    let revision = dump.revision;
    let mut sent = 0;
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
                let Some(feed) = feed.filter(|_| doc.scopes.contains(&SecretScope::Gateway)) else {
                    return Ok(None);
                };
                let value = master.open(&r.name, &doc.sealed)?;
                doc.sealed = feed.seal(&feed.secret_aad(&r.name, revision), value.expose())?;
                Ok(Some(serde_json::to_value(doc)?))
            });
        match resealed {
            Ok(Some(body)) => {
                r.body = body;
                sent += 1;
                true
            }
            Ok(None) => false,
            Err(e) => {
                log::error!("revision feed: secret `{}` left out: {e:#}", r.name);
                false
            }
        }
    });
    sent
}
