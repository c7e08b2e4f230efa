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
            credential: None,
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
            credential: None,
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
    if let Err(f) = proven_by_its_credential(&cp, &request).await {
        return to_value(&Err::<Answer, Failure>(f)).map(Json);
    }
    let reply = cp.vault.handle(request).await;
    to_value(&reply).map(Json)
}

/// What a data plane asks for one user (their grant, a connect link, their connections, a
/// disconnect) must come with that user's own Sluice credential, verified here against this
/// control plane's configuration: a stolen dataplane token alone reaches nobody's grant.
/// Still reachable with a dataplane token alone, because no user is behind them: MCP servers'
/// service tokens, the MCP session key, and the built-in issuer's endpoints (which check the
/// app's own secret).
async fn proven_by_its_credential(cp: &ControlPlane, request: &Request) -> Result<(), Failure> {
    let (claimed, credential) = match request {
        // The JWT to exchange is the credential that proves the user, never another one.
        Request::Token {
            subject_token: Some(subject),
            credential,
            ..
        } if credential.as_deref().is_none_or(|c| {
            !bool::from(subtle::ConstantTimeEq::ct_eq(
                c.as_bytes(),
                subject.as_bytes(),
            ))
        }) =>
        {
            return Err(Failure::OAuth {
                error: "access_denied".into(),
                description: "the subject token is the user's own credential only".into(),
                status: 403,
            })
        }
        Request::Token {
            who, credential, ..
        }
        | Request::Link {
            who, credential, ..
        } => (Some(who.key.as_str()), credential),
        Request::Disconnect {
            principal,
            credential,
            ..
        } => (Some(principal.as_str()), credential),
        Request::Connections {
            principal,
            credential,
        } => (principal.as_deref(), credential),
        Request::ViewLink { .. }
        | Request::Begin { .. }
        | Request::Callback { .. }
        | Request::ServiceToken { .. }
        | Request::SessionKey
        | Request::AppToken { .. }
        | Request::Introspect { .. }
        | Request::Revoke { .. }
        | Request::Register { .. }
        | Request::Authorize { .. }
        | Request::SignedIn { .. }
        | Request::ViewAuthorization { .. }
        | Request::Approve { .. }
        | Request::UserToken { .. }
        | Request::RevokeUserToken { .. }
        | Request::SignIn { .. }
        | Request::ConsoleSession { .. } => return Ok(()),
    };
    let unproven = || Failure::OAuth {
        error: "access_denied".into(),
        description: "a user's grant is served for that user's own credential only".into(),
        status: 403,
    };
    let credential = credential.as_deref().ok_or_else(unproven)?;
    let snap = cp.config.snapshot();
    let principal = grant_holder(credential, &snap).await.ok_or_else(unproven)?;
    if !principal.grants {
        return Err(Failure::GrantsWithheld);
    }
    match claimed {
        Some(key) if *principal.key == *key => Ok(()),
        _ => Err(unproven()),
    }
}

/// Who a credential proves, admitted as the OAuth user endpoints admit it: any kind, never a
/// token of Sluice's own issuer (but a person's token for an MCP server, which their grants
/// are used at).
async fn grant_holder(
    credential: &str,
    snap: &crate::config::Snapshot,
) -> Option<std::sync::Arc<crate::auth::Principal>> {
    let principal = crate::auth::identify(credential, snap, unix_now())
        .await
        .ok()?;
    let for_mcp = principal.audience_bound
        && principal.app().is_none()
        && snap
            .mcp_servers
            .values()
            .any(|s| crate::auth::names_audience(&principal.claims["aud"], &s.resource));
    let admitted =
        for_mcp || crate::auth::authorize(&principal, &crate::auth::Access::default()).is_ok();
    admitted.then_some(principal)
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
