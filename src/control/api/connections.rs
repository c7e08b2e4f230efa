//! Users' OAuth connections (the token vault's grants) for operators, and the vault endpoint
//! data planes reach it through. Grants are metadata here: tokens never leave the vault except
//! to a data plane's `/v1/vault` call, which injects them upstream.

use super::*;
use crate::vault::{Answer, Failure, Request};

#[derive(Deserialize)]
pub(super) struct ConnectionsQuery {
    /// One principal's (`owner:alice`, `jwt:corp:1234`); everyone's when absent.
    principal: Option<String>,
}

pub(super) async fn list_connections(
    State(cp): Cp,
    headers: HeaderMap,
    Query(q): Query<ConnectionsQuery>,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::OauthConnectionList)?;
    match cp
        .vault
        .handle(Request::Connections {
            principal: q.principal,
        })
        .await
    {
        Ok(Answer::Connections { connections }) => Ok(Json(json!({ "data": connections }))),
        Ok(_) => Err(ApiError::internal("unexpected vault answer")),
        Err(f) => Err(vault_error(f)),
    }
}

pub(super) async fn delete_connection(
    State(cp): Cp,
    headers: HeaderMap,
    Path(provider): Path<String>,
    Query(q): Query<ConnectionsQuery>,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::OauthConnectionDelete)?;
    let principal = q.principal.ok_or_else(|| {
        ApiError::bad(
            "principal",
            "name the principal whose connection to remove (?principal=owner:alice)",
        )
    })?;
    match cp
        .vault
        .handle(Request::Disconnect {
            principal,
            provider,
        })
        .await
    {
        Ok(Answer::Disconnected { revoked }) => {
            Ok(Json(json!({"disconnected": true, "revoked": revoked})))
        }
        Ok(_) => Err(ApiError::internal("unexpected vault answer")),
        Err(f) => Err(vault_error(f)),
    }
}

/// A data plane's vault request (it never holds the master key or the grants).
pub(super) async fn vault(
    State(cp): Cp,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::VaultUse)?;
    let request: Request = parse(&body)?;
    let reply = cp.vault.handle(request).await;
    to_value(&reply).map(Json)
}

fn vault_error(f: Failure) -> ApiError {
    match f {
        Failure::NotFound => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such connection")
        }
        other => ApiError::new(
            StatusCode::from_u16(other.status()).unwrap_or(StatusCode::BAD_GATEWAY),
            other.reason(),
            other.to_string(),
        ),
    }
}
