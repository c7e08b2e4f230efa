//! Clients of Sluice's authorization endpoint (MCP clients registered by RFC 7591, or named by
//! a Client ID Metadata Document and recorded at their first token): listed, and revoked — the
//! record removed, and the client id refused from the next revision on (its access tokens, its
//! refresh tokens, new authorizations), for as long as a refresh-token family can live.

use super::*;
use crate::control::issuer;

/// How long a revoked client id stays refused: a refresh-token family's lifetime.
const REVOKED_SECONDS: u64 = 30 * 24 * 3600;

/// `GET /v1/oauth-clients`.
pub(super) async fn list_clients(State(cp): Cp, headers: HeaderMap) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::OauthClientList)?;
    let rows = cp.store.clients().await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).unwrap_or_default();
            json!({
                "client_id": r.id,
                "client_name": body["client_name"],
                "redirect_uris": body["redirect_uris"],
                "metadata_document": body["document"].as_bool().unwrap_or(false),
                "created_at": crate::clock::rfc3339(r.created_at),
                "last_used_at": r.last_used_at.map(crate::clock::rfc3339),
                "expires_at": crate::clock::rfc3339(r.expires_at),
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// `POST /v1/people/{principal}/sign-out`: a person signed in through Sluice (`jwt:…`) is
/// signed out everywhere: every token, refresh token and browser session Sluice gave them
/// until now is refused from the next revision on (their next sign-in works again).
pub(super) async fn sign_out(
    State(cp): Cp,
    headers: HeaderMap,
    Path(principal): Path<String>,
) -> ApiResult<Json<Value>> {
    let caller = cp.authorize(&headers, Permission::PersonSignOut)?;
    if !principal.starts_with("jwt:") || principal.len() > 512 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "name a person as audit records do: `jwt:{issuer}:{subject}`",
        ));
    }
    let now = unix_now();
    let kind = issuer::REVOKED.to_owned();
    let name = format!("{}{principal}", crate::config::stored::SIGNED_OUT_PREFIX);
    let body =
        json!({ "exp": now + REVOKED_SECONDS * 3 + 3600, "since_ms": crate::clock::unix_now_ms() });
    // Signed out before: the entry moves to now.
    let ops = match cp.store.get(&kind, &name).await? {
        Some(_) => vec![Op::Update { kind, name, body }],
        None => vec![Op::Create { kind, name, body }],
    };
    let revision = cp.commit(ops).await?;
    log::info!(
        "admin: {} signed {principal} out everywhere",
        caller.principal
    );
    Ok(Json(
        json!({ "principal": principal, "signed_out_at": crate::clock::rfc3339(now), "revision": revision }),
    ))
}

/// `DELETE /v1/oauth-clients/{id}`: also for a metadata document's client that never got a
/// token (its id is refused all the same).
pub(super) async fn revoke_client(
    State(cp): Cp,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let caller = cp.authorize(&headers, Permission::OauthClientRevoke)?;
    let known = cp.store.delete_client(&client_id).await?;
    if !known && !client_id.starts_with("https://") {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no client `{client_id}`"),
        ));
    }
    let op = Op::Create {
        kind: issuer::REVOKED.into(),
        name: crate::config::revoked_client_key(&client_id),
        body: json!({ "exp": unix_now() + REVOKED_SECONDS, "client_id": client_id }),
    };
    let revision = match cp.commit(vec![op]).await {
        Ok(revision) => revision,
        // Revoked before: still revoked.
        Err(e) if e.status == StatusCode::CONFLICT => cp.config.snapshot().control_revision,
        Err(e) => return Err(e),
    };
    log::info!(
        "admin: {} revoked OAuth client {client_id}",
        caller.principal
    );
    Ok(Json(
        json!({ "client_id": client_id, "revoked": true, "revision": revision }),
    ))
}
