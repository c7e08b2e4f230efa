//! OAuth apps of Sluice's issuer (client credentials), each subscribed to one agent
//! environment that takes `auth: oauth`: created with a secret shown once, regenerated (the old
//! secret refused at once), revoked (its tokens refused on every data plane at the next
//! revision).

use super::*;
use crate::control::issuer::{self, AppDoc};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppCreate {
    name: String,
}

/// An app as shown with its secret (once: at creation, provisioning or regeneration).
pub(super) fn with_secret(app: &AppDoc, secret: &str, cp: &ControlPlane) -> Value {
    let mut shown = app.shown();
    shown["client_secret"] = secret.into();
    shown["token_endpoint"] = format!("{}/oauth2/token", cp.vault.base_url).into();
    shown
}

fn secret_answer(app: &AppDoc, secret: &str, revision: u64, cp: &ControlPlane) -> Value {
    let mut shown = with_secret(app, secret, cp);
    shown["revision"] = revision.into();
    shown
}

/// Every stored app.
pub(super) async fn stored_apps(cp: &ControlPlane) -> ApiResult<Vec<AppDoc>> {
    Ok(cp
        .store
        .list(issuer::APP)
        .await?
        .into_iter()
        .filter_map(|r| serde_json::from_value::<AppDoc>(r.body).ok())
        .collect())
}

impl ControlPlane {
    /// Credentials of a `protected` agent environment (apps, their secrets, test tokens) need
    /// `agent_protected_credentials` besides the endpoint's own permission. Read from the agent
    /// as written (store, else file), so a disabled environment is protected too; an
    /// environment that cannot be found is treated as protected.
    pub(super) async fn may_mint_for(
        &self,
        caller: &Caller,
        agent: &str,
        env: &str,
    ) -> ApiResult<()> {
        use crate::config::kind::Kind;
        let stored = self
            .store
            .get(wire::Agent::KIND, agent)
            .await?
            .and_then(|r| serde_json::from_value::<wire::Agent>(r.body).ok());
        let written = match stored {
            Some(a) => Some(a),
            None => crate::config::read_file(self.config.file())
                .ok()
                .and_then(|(file, _)| file.agents.into_iter().find(|a| a.name == agent)),
        };
        let protected = written
            .and_then(|a| a.environments.into_iter().find(|e| e.name == env))
            .is_none_or(|e| e.protected);
        if protected {
            caller.require(Permission::AgentProtectedCredentials)?;
        }
        Ok(())
    }
}

async fn stored_app(cp: &ControlPlane, client_id: &str) -> ApiResult<AppDoc> {
    cp.store
        .get(issuer::APP, client_id)
        .await?
        .and_then(|r| serde_json::from_value(r.body).ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("app `{client_id}` does not exist"),
            )
        })
}

pub(super) async fn create_app(
    State(cp): Cp,
    headers: HeaderMap,
    Path((agent, env)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let caller = cp.authorize(&headers, Permission::AppCreate)?;
    cp.may_mint_for(&caller, &agent, &env).await?;
    let req: AppCreate = parse(&body)?;
    if req.name.is_empty() || req.name.len() > 64 {
        return Err(ApiError::bad("name", "an app name is 1 to 64 characters"));
    }
    if cp
        .config
        .snapshot()
        .oauth_environment(&agent, &env)
        .is_none()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_oauth",
            format!("agent `{agent}` has no enabled environment `{env}` with `auth: oauth`"),
        ));
    }
    let (doc, secret) = AppDoc::create(
        &agent,
        &env,
        req.name,
        caller.principal,
        &cp.key,
        unix_now(),
    )
    .map_err(ApiError::internal)?;
    let revision = cp
        .commit(vec![doc.store_op(true).map_err(ApiError::internal)?])
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(secret_answer(&doc, &secret, revision, &cp)),
    ))
}

pub(super) async fn list_apps(State(cp): Cp, headers: HeaderMap) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::AppList)?;
    let items: Vec<Value> = stored_apps(&cp).await?.iter().map(AppDoc::shown).collect();
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn regenerate_app(
    State(cp): Cp,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let caller = cp.authorize(&headers, Permission::AppRegenerate)?;
    let app = stored_app(&cp, &client_id).await?;
    cp.may_mint_for(&caller, &app.agent, &app.env).await?;
    let (app, secret) = app.with_new_secret(&cp.key).map_err(ApiError::internal)?;
    let revision = cp
        .commit(vec![app.store_op(false).map_err(ApiError::internal)?])
        .await?;
    Ok(Json(secret_answer(&app, &secret, revision, &cp)))
}

pub(super) async fn revoke_app(
    State(cp): Cp,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::AppRevoke)?;
    stored_app(&cp, &client_id).await?;
    let revision = cp
        .commit(vec![Op::Delete {
            kind: issuer::APP.into(),
            name: client_id.clone(),
        }])
        .await?;
    Ok(Json(
        json!({ "client_id": client_id, "revoked": true, "revision": revision }),
    ))
}
