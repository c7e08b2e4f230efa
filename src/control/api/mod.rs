//! The admin REST API (`/v1/…`, JSON) on the admin listener. Every endpoint names the
//! permission it checks (`rbac.rs`); callers authenticate with a Sluice token whose owner has a
//! role. Writes are validated whole before they are stored: the store's resources plus the
//! change must build a snapshot with the config file, or the change is refused with the
//! field-level errors and nothing is written.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::crypto::MasterKey;
use super::rbac::{self, Permission};
use super::state::{self, ControlState, SecretDoc, SecretScope};
use super::store::{Dump, Op, Resource, Store, StoreError};
use crate::clock::unix_now;
use crate::config::wire::{self, AuthPolicy, Role};
use crate::config::{Access, ConfigErrors, ConfigStore};

mod agents;
mod apps;
mod budgets;
mod connections;
pub(super) mod docs;
mod feed;
mod issuers;
mod limits;
mod mcp_servers;
mod oauth_clients;
mod oauth_providers;
mod owners;
mod providers;
mod routes;
mod secrets;
mod signing;
pub use signing::rotate_on_schedule;
mod tokens;
mod usage;

use feed::{snapshot, snapshot_key};
use providers::{create_key, delete_key, update_key};
pub(super) use providers::{KeyCreate, KeyUpdate};
use secrets::{create_secret, delete_secret, get_secret, list_secrets, update_secret};
pub(super) use secrets::{SecretCreate, SecretUpdate};
use tokens::{create_token, list_tokens, revoke_token, rotate_token};
pub(super) use tokens::{TokenCreate, TokenRotate};

/// Longest a `/v1/snapshot` long-poll waits for a newer revision.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(30);
/// How long a write waits for its revision to serve locally before answering.
const PUBLISH_WAIT: Duration = Duration::from_secs(2);

pub struct ControlPlane {
    pub store: Arc<dyn Store>,
    pub key: Arc<MasterKey>,
    pub config: Arc<ConfigStore>,
    /// The store revision last read by this process's follower.
    pub revision: tokio::sync::watch::Sender<u64>,
    /// Wakes the follower after a local write.
    pub changed: tokio::sync::Notify,
    /// The token vault (for data planes' `/v1/vault` and the connections endpoints).
    pub vault: Arc<super::vault::VaultWorker>,
    /// The audit file (and its rotations) `/v1/usage` reads.
    pub audit_file: std::path::PathBuf,
}

/// The caller's token (`Authorization: Bearer`).
fn bearer(headers: &HeaderMap) -> ApiResult<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "send Authorization: Bearer <Sluice token of an owner with a role>",
            )
        })
}

/// An API error: `{"error": {"code", "message", "field"?, "errors"?}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    errors: Vec<Value>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            errors: Vec::new(),
        }
    }

    fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    fn bad(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message).field(field)
    }

    fn invalid(errors: ConfigErrors) -> ApiError {
        let list: Vec<Value> = errors
            .0
            .iter()
            .map(|e| json!({"field": e.path, "message": e.message}))
            .collect();
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_configuration",
            format!(
                "the change would not build a valid configuration: {}",
                errors.0.first().map(|e| e.to_string()).unwrap_or_default()
            ),
        );
        e.field = errors.0.first().map(|e| e.path.clone());
        e.errors = list;
        e
    }

    fn internal(e: impl std::fmt::Display) -> ApiError {
        log::error!("admin API: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (see the log)",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", e.to_string()).field("name")
            }
            StoreError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            error["field"] = Value::String(field);
        }
        if !self.errors.is_empty() {
            error["errors"] = Value::Array(self.errors);
        }
        let mut resp = (self.status, Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(r#"Bearer realm="sluice-admin""#),
            );
        }
        resp
    }
}

type ApiResult<T> = Result<T, ApiError>;
type Cp = State<Arc<ControlPlane>>;

/// Parses a JSON body, naming the field at fault.
fn parse<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let mut err = ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message);
        if path != "." {
            err = err.field(path);
        }
        err
    })
}

pub(super) use crate::clock::rfc3339;

fn to_value<T: Serialize>(v: &T) -> ApiResult<Value> {
    serde_json::to_value(v).map_err(ApiError::internal)
}

/// Who is calling, once their token and role allow `permission`.
#[derive(Debug)]
pub struct Caller {
    pub principal: String,
    pub role: Option<Role>,
    /// Named permissions held besides the role's.
    pub permissions: Vec<String>,
}

impl Caller {
    /// Whether the caller's role or its named permissions include `permission`.
    pub fn may(&self, permission: Permission) -> bool {
        self.role.is_some_and(|r| rbac::allows(r, permission))
            || self.permissions.iter().any(|p| *p == permission.name())
    }

    /// 403 naming the permission, unless the caller holds it.
    pub fn require(&self, permission: Permission) -> ApiResult<()> {
        if self.may(permission) {
            return Ok(());
        }
        let who = match self.role {
            Some(r) => format!("role {r:?}").to_lowercase(),
            None => "this owner".to_owned(),
        };
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{who} lacks the permission `{permission}`"),
        ))
    }
}

impl ControlPlane {
    pub fn authorize(&self, headers: &HeaderMap, permission: Permission) -> ApiResult<Caller> {
        let caller = self.caller(headers)?;
        caller.require(permission)?;
        Ok(caller)
    }

    /// The caller's identity and role, from their token.
    pub fn caller(&self, headers: &HeaderMap) -> ApiResult<Caller> {
        let token = bearer(headers)?;
        let snap = self.config.snapshot();
        if crate::auth::jwt::looks_like_jwt(token) {
            return console_caller(token, &snap);
        }
        let access = Access {
            auth: AuthPolicy::Token,
            ..Access::default()
        };
        let principal = futures_util::FutureExt::now_or_never(crate::auth::verify(
            token,
            &access,
            &*snap,
            unix_now(),
        ))
        .unwrap_or(Err(crate::error::GatewayError::MissingCredential))
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string()))?;
        let access = principal
            .owner_name()
            .and_then(|o| snap.owners.get(o))
            .filter(|a| a.privileged())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "this token's owner has no admin role",
                )
            })?;
        Ok(Caller {
            principal: principal.key.to_string(),
            role: access.role,
            permissions: access.permissions.clone(),
        })
    }

    /// Validates `ops` against everything else and stores them; waits until the new revision
    /// serves here. The build that validated the change is the one published, unless another
    /// writer (a replica) committed in between: then the follower rebuilds from the store.
    pub async fn commit(&self, ops: Vec<Op>) -> ApiResult<u64> {
        let mut dump = self.store.dump().await?;
        apply_in_memory(&mut dump, &ops)?;
        dump.revision += 1;
        let expected = dump.revision;
        let (key, config) = (self.key.clone(), self.config.clone());
        let prepared = super::offpath::run(move || {
            let (candidate, problems) = ControlState::open(dump, &key);
            if let Some(p) = problems.first() {
                return Err(ApiError::internal(p));
            }
            config.prepare_control(candidate).map_err(ApiError::invalid)
        })
        .await
        .map_err(ApiError::internal)??;
        let revision = self.store.apply(&ops).await?;
        let published = revision == expected
            && matches!(
                self.config.publish(prepared),
                Some(crate::config::store::ReloadOutcome::Applied { .. })
            );
        if published {
            self.serving(revision);
        } else {
            self.changed.notify_one();
        }
        let mut rx = self.revision.subscribe();
        let _ = tokio::time::timeout(PUBLISH_WAIT, rx.wait_for(|r| *r >= revision)).await;
        Ok(revision)
    }

    /// Reads the store and publishes it here (the embedded data plane). Returns the revision.
    pub async fn refresh(&self) -> Result<u64, StoreError> {
        let dump = self.store.dump().await?;
        let revision = dump.revision;
        if revision != *self.revision.borrow()
            || self.config.snapshot().control_revision != revision
        {
            super::offpath::publish(self.config.clone(), self.key.clone(), dump)
                .await
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            self.serving(revision);
        }
        Ok(revision)
    }

    /// Announces that `revision` serves here (to long-polls and writers waiting for it), never
    /// going backwards: a newer one may have been published meanwhile.
    fn serving(&self, revision: u64) {
        self.revision.send_if_modified(|r| {
            let newer = *r < revision;
            if newer {
                *r = revision;
            }
            newer
        });
        crate::metrics::METRICS
            .control_revision
            .set(revision as i64);
    }
}

/// `ops` applied to a copy of the store's content, with the store's conflict rules.
fn apply_in_memory(dump: &mut Dump, ops: &[Op]) -> Result<(), StoreError> {
    for op in ops {
        let find = |d: &Dump, kind: &str, name: &str| {
            d.resources
                .iter()
                .position(|r| r.kind == kind && r.name == name)
        };
        match op {
            Op::Create { kind, name, body } => {
                if find(dump, kind, name).is_some() {
                    return Err(StoreError::Conflict {
                        kind: kind.clone(),
                        name: name.clone(),
                    });
                }
                dump.resources.push(Resource {
                    kind: kind.clone(),
                    name: name.clone(),
                    body: body.clone(),
                    created_at: 0,
                    updated_at: 0,
                });
            }
            Op::Update { kind, name, body } => match find(dump, kind, name) {
                Some(i) => dump.resources[i].body = body.clone(),
                None => {
                    return Err(StoreError::NotFound {
                        kind: kind.clone(),
                        name: name.clone(),
                    })
                }
            },
            Op::Delete { kind, name } => match find(dump, kind, name) {
                Some(i) => {
                    dump.resources.remove(i);
                }
                None => {
                    return Err(StoreError::NotFound {
                        kind: kind.clone(),
                        name: name.clone(),
                    })
                }
            },
        }
    }
    Ok(())
}

async fn whoami(State(cp): Cp, headers: HeaderMap) -> ApiResult<Json<Value>> {
    // Any role may ask who it is.
    let caller = cp.caller(&headers)?;
    // Everything the caller may do, its role's and its named permissions (the console shows
    // only what this allows; the API checks each call anyway).
    let allowed: Vec<String> = Permission::all()
        .into_iter()
        .filter(|p| caller.may(*p))
        .map(|p| p.name().into_owned())
        .collect();
    Ok(Json(
        json!({"principal": caller.principal, "role": caller.role, "permissions": caller.permissions, "allowed": allowed}),
    ))
}

/// `POST /v1/tls/reload`: this process's TLS listeners load their certificate files again.
async fn tls_reload(State(cp): Cp, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let caller = cp.authorize(&headers, Permission::TlsReload)?;
    let results = crate::tls::reload_listeners();
    if results.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this process serves no TLS listener (listeners.proxy_tls)",
        ));
    }
    let mut listeners = Vec::new();
    for (listener, result) in results {
        match result {
            Ok(certs) => {
                let certificates: Vec<Value> = certs
                    .iter()
                    .map(|(name, expires)| json!({"name": name, "expires_at": expires}))
                    .collect();
                listeners.push(json!({"listener": listener, "certificates": certificates}));
            }
            Err(e) => {
                log::warn!("TLS reload by {} failed: {e:#}", caller.principal);
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "certificates_not_loaded",
                    format!("{listener}: {e:#}; the previous certificates keep serving"),
                ));
            }
        }
    }
    log::info!("TLS certificates reloaded by {}", caller.principal);
    Ok(Json(json!({ "listeners": listeners })))
}

async fn openapi() -> Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get_or_init(super::openapi::json).as_str(),
    )
        .into_response()
}

/// An operator signed in to the console at the company IdP: a token of Sluice's issuer for the
/// console audience, whose role is what the person's claim values map to now.
fn console_caller(token: &str, snap: &crate::config::Snapshot) -> ApiResult<Caller> {
    let unauthenticated = |e: String| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", e);
    let access = Access {
        auth: AuthPolicy::Jwt,
        app_audience: Some(crate::config::issuer::CONSOLE_AUDIENCE.to_owned()),
        ..Access::default()
    };
    // Sluice's own keys come with the configuration: verifying never waits on a fetch (a
    // token of another issuer is refused, not fetched for).
    let principal = futures_util::FutureExt::now_or_never(crate::auth::verify(
        token,
        &access,
        snap,
        unix_now(),
    ))
    .unwrap_or(Err(crate::error::GatewayError::MissingCredential))
    .map_err(|e| unauthenticated(e.to_string()))?;
    if !principal.audience_bound || principal.app().is_some() {
        return Err(unauthenticated("not a console session token".into()));
    }
    let values: Vec<String> = principal.claims[crate::control::vault::console::CONSOLE_GROUPS]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let role = snap
        .sign_in
        .as_ref()
        .and_then(|s| s.console_role(&values))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "no console role maps to this person's claim values any more",
            )
        })?;
    Ok(Caller {
        principal: principal.key.to_string(),
        role: Some(role),
        permissions: Vec::new(),
    })
}

/// `GET /v1/console/sign-in`: whether the console offers sign-in at the company IdP.
async fn console_sign_in(State(cp): Cp) -> Json<Value> {
    let snap = cp.config.snapshot();
    let doc = match &snap.sign_in {
        Some(s) if s.console.is_some() => json!({
            "enabled": true,
            "issuer": s.issuer,
            "url": format!("{}/oauth2/signin?next=console", snap.public_base_url),
        }),
        _ => json!({ "enabled": false }),
    };
    Json(doc)
}

/// `POST /v1/console/session` `{"code": …}`: the console's token for a sign-in's code.
async fn console_session(State(cp): Cp, body: Bytes) -> ApiResult<Json<Value>> {
    let doc: Value = parse(&body)?;
    let code = doc["code"].as_str().unwrap_or_default().to_owned();
    let state = doc["state"].as_str().unwrap_or_default().to_owned();
    match cp
        .vault
        .handle(crate::vault::Request::ConsoleSession { code, state })
        .await
    {
        Ok(crate::vault::Answer::Issued {
            access_token,
            expires_in,
            scope,
        }) => Ok(Json(
            json!({"token": access_token, "expires_in": expires_in, "role": scope}),
        )),
        Ok(_) => Err(ApiError::internal("unexpected answer")),
        Err(f) => Err(ApiError::new(
            StatusCode::from_u16(f.status()).unwrap_or(StatusCode::BAD_REQUEST),
            f.reason(),
            f.to_string(),
        )),
    }
}

/// The `/v1` routes.
pub fn router(cp: Arc<ControlPlane>) -> Router {
    let mut router = Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/whoami", get(whoami))
        .route("/v1/console/sign-in", get(console_sign_in))
        .route("/v1/console/session", post(console_session))
        .route("/v1/usage", get(usage::usage))
        .route("/v1/snapshot", get(snapshot))
        .route("/v1/snapshot/key", get(snapshot_key))
        .route("/v1/providers/{name}/keys", post(create_key))
        .route(
            "/v1/providers/{name}/keys/{id}",
            axum::routing::patch(update_key).delete(delete_key),
        )
        .route("/v1/secrets", get(list_secrets).post(create_secret))
        .route(
            "/v1/secrets/{name}",
            get(get_secret).patch(update_secret).delete(delete_secret),
        )
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}/revoke", post(revoke_token))
        .route("/v1/tokens/{id}/rotate", post(rotate_token))
        .route("/v1/oauth/connections", get(connections::list_connections))
        .route(
            "/v1/oauth/connections/{provider}",
            axum::routing::delete(connections::delete_connection),
        )
        .route("/v1/vault", post(connections::vault))
        .route(
            "/v1/agents/{name}/environments/{env}/test-token",
            post(agents::test_token),
        )
        .route("/v1/issuer/keys", get(signing::list_keys))
        .route("/v1/apps", get(apps::list_apps))
        .route("/v1/apps/{id}", axum::routing::delete(apps::revoke_app))
        .route("/v1/apps/{id}/regenerate", post(apps::regenerate_app))
        .route(
            "/v1/agents/{name}/environments/{env}/apps",
            post(apps::create_app),
        )
        .route("/v1/issuer/keys/rotate", post(signing::rotate_keys))
        .route("/v1/oauth-clients", get(oauth_clients::list_clients))
        .route(
            "/v1/people/{principal}/sign-out",
            post(oauth_clients::sign_out),
        )
        .route(
            "/v1/oauth-clients/{id}",
            axum::routing::delete(oauth_clients::revoke_client),
        )
        .route("/v1/tls/reload", post(tls_reload));
    for doc in docs::DOCS {
        router = (doc.routes)(router);
    }
    router.with_state(cp)
}
