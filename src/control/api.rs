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
use super::rbac;
use super::state::{self, ControlState, SecretDoc, SecretScope};
use super::store::{Dump, Op, Resource, Store, StoreError};
use crate::clock::unix_now;
use crate::config::wire::{self, AuthPolicy, Role};
use crate::config::{Access, ConfigErrors, ConfigStore};

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

fn to_value<T: Serialize>(v: &T) -> ApiResult<Value> {
    serde_json::to_value(v).map_err(ApiError::internal)
}

/// Who is calling, once their token and role allow `permission`.
#[derive(Debug)]
pub struct Caller {
    pub principal: String,
    pub role: Role,
}

impl ControlPlane {
    pub fn authorize(&self, headers: &HeaderMap, permission: &str) -> ApiResult<Caller> {
        let caller = self.caller(headers)?;
        if !rbac::allows(caller.role, permission) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("role {:?} lacks the permission `{permission}`", caller.role)
                    .to_lowercase(),
            ));
        }
        Ok(caller)
    }

    /// The caller's identity and role, from their token.
    pub fn caller(&self, headers: &HeaderMap) -> ApiResult<Caller> {
        let token = bearer(headers)?;
        let snap = self.config.snapshot();
        let access = Access {
            auth: AuthPolicy::Token,
            ..Access::default()
        };
        let principal = futures_util::FutureExt::now_or_never(crate::auth::verify(
            token,
            &access,
            &snap,
            unix_now(),
        ))
        .unwrap_or(Err(crate::error::GatewayError::MissingCredential))
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string()))?;
        let role = principal
            .owner
            .as_ref()
            .and_then(|o| snap.owner_roles.get(o))
            .copied()
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "this token's owner has no admin role",
                )
            })?;
        Ok(Caller {
            principal: principal.id.clone(),
            role,
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
            // Never backwards: the follower may have published a newer one meanwhile.
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
            let (key, config) = (self.key.clone(), self.config.clone());
            super::offpath::run(move || {
                let (state, problems) = ControlState::open(dump, &key);
                for p in problems {
                    log::error!("control plane: {p}");
                }
                config.set_control(state)
            })
            .await
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            self.revision.send_replace(revision);
            crate::metrics::METRICS
                .control_revision
                .set(revision as i64);
        }
        Ok(revision)
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

/// A resource kind managed as a whole document.
trait Doc: Serialize + DeserializeOwned + Send + 'static {
    const KIND: &'static str;
    fn name(&self) -> String;
    /// From the name in the URL.
    fn url_name(raw: &str) -> String {
        raw.to_owned()
    }
    fn from_file(config: &wire::Config) -> Vec<Self>;
    fn check_name(name: &str) -> ApiResult<()> {
        let _ = name;
        Ok(())
    }
}

impl Doc for wire::Provider {
    const KIND: &'static str = state::PROVIDER;
    fn name(&self) -> String {
        self.name.clone()
    }
    fn from_file(config: &wire::Config) -> Vec<Self> {
        config.providers.clone()
    }
    fn check_name(name: &str) -> ApiResult<()> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && !name.starts_with('-')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(())
        } else {
            Err(ApiError::bad(
                "name",
                format!(
                    "`{name}` must be lowercase letters, digits and hyphens (e.g. `openai-eu`)"
                ),
            ))
        }
    }
}

impl Doc for wire::Issuer {
    const KIND: &'static str = state::ISSUER;
    fn name(&self) -> String {
        self.name.clone()
    }
    fn from_file(config: &wire::Config) -> Vec<Self> {
        config.issuers.clone()
    }
}

impl Doc for wire::Route {
    const KIND: &'static str = state::ROUTE;
    fn name(&self) -> String {
        self.prefix.clone()
    }
    fn url_name(raw: &str) -> String {
        format!("/{}", raw.trim_start_matches('/'))
    }
    fn from_file(config: &wire::Config) -> Vec<Self> {
        config.routes.clone()
    }
}

impl Doc for wire::Owner {
    const KIND: &'static str = state::OWNER;
    fn name(&self) -> String {
        self.name.clone()
    }
    fn from_file(config: &wire::Config) -> Vec<Self> {
        config.owners.clone()
    }
}

fn with_source(mut v: Value, source: &str) -> Value {
    if let Value::Object(map) = &mut v {
        map.insert("source".into(), Value::String(source.into()));
    }
    v
}

async fn list_docs<T: Doc>(State(cp): Cp, headers: HeaderMap) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, &format!("{}_list", T::KIND))?;
    let mut items = Vec::new();
    if let Ok((file, _)) = crate::config::read_file(cp.config.file()) {
        for doc in T::from_file(&file) {
            items.push(with_source(to_value(&doc)?, "file"));
        }
    }
    for r in cp.store.list(T::KIND).await? {
        items.push(with_source(r.body, "store"));
    }
    Ok(Json(json!({ "items": items })))
}

async fn get_doc<T: Doc>(
    State(cp): Cp,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, &format!("{}_get", T::KIND))?;
    let name = T::url_name(&raw);
    match cp.store.get(T::KIND, &name).await? {
        Some(r) => Ok(Json(with_source(r.body, "store"))),
        None => Err(ApiError::from(StoreError::NotFound {
            kind: T::KIND.into(),
            name,
        })),
    }
}

async fn create_doc<T: Doc>(
    State(cp): Cp,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    cp.authorize(&headers, &format!("{}_create", T::KIND))?;
    let doc: T = parse(&body)?;
    let name = doc.name();
    T::check_name(&name)?;
    let value = to_value(&doc)?;
    let revision = cp
        .commit(vec![Op::Create {
            kind: T::KIND.into(),
            name,
            body: value.clone(),
        }])
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"revision": revision, "item": value})),
    ))
}

async fn update_doc<T: Doc>(
    State(cp): Cp,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, &format!("{}_update", T::KIND))?;
    let doc: T = parse(&body)?;
    let name = T::url_name(&raw);
    if doc.name() != name {
        return Err(ApiError::bad(
            "name",
            format!(
                "names are immutable: `{}` cannot become `{}` (create a new one)",
                name,
                doc.name()
            ),
        ));
    }
    let value = to_value(&doc)?;
    let revision = cp
        .commit(vec![Op::Update {
            kind: T::KIND.into(),
            name,
            body: value.clone(),
        }])
        .await?;
    Ok(Json(json!({"revision": revision, "item": value})))
}

async fn delete_doc<T: Doc>(
    State(cp): Cp,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, &format!("{}_delete", T::KIND))?;
    let revision = cp
        .commit(vec![Op::Delete {
            kind: T::KIND.into(),
            name: T::url_name(&raw),
        }])
        .await?;
    Ok(Json(json!({ "revision": revision })))
}

// ---------------------------------------------------------------------------------------------
// Secrets: write-only values.

fn check_secret_name(name: &str) -> ApiResult<()> {
    let ok = name.len() <= 128
        && name.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(
            "name",
            format!("`{name}` must be UPPER_SNAKE_CASE (e.g. OPENAI_KEY_2)"),
        ))
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretCreate {
    /// `UPPER_SNAKE_CASE`; immutable.
    #[schema(pattern = "^[A-Z][A-Z0-9_]*$")]
    name: String,
    /// Encrypted at rest; never returned.
    value: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default = "default_scopes")]
    scopes: Vec<SecretScope>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretUpdate {
    /// A new value rotates the secret for every key that references it.
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    scopes: Option<Vec<SecretScope>>,
}

fn default_scopes() -> Vec<SecretScope> {
    vec![SecretScope::Gateway]
}

/// What the API shows of a secret: never the value, never the ciphertext.
fn secret_view(r: &Resource) -> ApiResult<Value> {
    let doc: SecretDoc = serde_json::from_value(r.body.clone()).map_err(ApiError::internal)?;
    Ok(json!({
        "name": r.name,
        "labels": doc.labels,
        "scopes": doc.scopes,
        "version": doc.version,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    }))
}

async fn list_secrets(State(cp): Cp, headers: HeaderMap) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, "secret_list")?;
    let items = cp
        .store
        .list(state::SECRET)
        .await?
        .iter()
        .map(secret_view)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(json!({ "items": items })))
}

async fn get_secret(
    State(cp): Cp,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, "secret_get")?;
    match cp.store.get(state::SECRET, &name).await? {
        Some(r) => Ok(Json(secret_view(&r)?)),
        None => Err(StoreError::NotFound {
            kind: state::SECRET.into(),
            name,
        }
        .into()),
    }
}

fn check_value(value: &str) -> ApiResult<()> {
    if value.is_empty() || value.len() > 16 * 1024 {
        return Err(ApiError::bad("value", "must be 1 to 16384 bytes"));
    }
    Ok(())
}

async fn create_secret(
    State(cp): Cp,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    cp.authorize(&headers, "secret_create")?;
    let req: SecretCreate = parse(&body)?;
    check_secret_name(&req.name)?;
    check_value(&req.value)?;
    let doc = SecretDoc {
        labels: req.labels,
        scopes: req.scopes,
        sealed: cp
            .key
            .seal(&req.name, &req.value)
            .map_err(ApiError::internal)?,
        version: 1,
    };
    let revision = cp
        .commit(vec![Op::Create {
            kind: state::SECRET.into(),
            name: req.name.clone(),
            body: to_value(&doc)?,
        }])
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"revision": revision, "name": req.name})),
    ))
}

async fn update_secret(
    State(cp): Cp,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, "secret_update")?;
    let req: SecretUpdate = parse(&body)?;
    let revision = cp
        .update_secret(&name, req.value.as_deref(), req.labels, req.scopes)
        .await?;
    Ok(Json(json!({"revision": revision, "name": name})))
}

impl ControlPlane {
    /// Changes a secret in place: a new value rotates it for every key that references it.
    async fn update_secret(
        &self,
        name: &str,
        value: Option<&str>,
        labels: Option<BTreeMap<String, String>>,
        scopes: Option<Vec<SecretScope>>,
    ) -> ApiResult<u64> {
        let current = self.store.get(state::SECRET, name).await?.ok_or_else(|| {
            ApiError::from(StoreError::NotFound {
                kind: state::SECRET.into(),
                name: name.into(),
            })
        })?;
        let mut doc: SecretDoc =
            serde_json::from_value(current.body).map_err(ApiError::internal)?;
        if let Some(value) = value {
            check_value(value)?;
            doc.sealed = self.key.seal(name, value).map_err(ApiError::internal)?;
            doc.version += 1;
        }
        if let Some(labels) = labels {
            doc.labels = labels;
        }
        if let Some(scopes) = scopes {
            doc.scopes = scopes;
        }
        self.commit(vec![Op::Update {
            kind: state::SECRET.into(),
            name: name.into(),
            body: to_value(&doc)?,
        }])
        .await
    }
}

async fn delete_secret(
    State(cp): Cp,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, "secret_delete")?;
    let revision = cp
        .commit(vec![Op::Delete {
            kind: state::SECRET.into(),
            name,
        }])
        .await?;
    Ok(Json(json!({ "revision": revision })))
}

// ---------------------------------------------------------------------------------------------
// Provider keys: a value given here becomes a secret labelled `managed-by: sluice`.

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyCreate {
    id: String,
    /// The key itself (stored as a managed secret) …
    #[serde(default)]
    value: Option<String>,
    /// … or a reference (`secret:NAME`, `env:VAR`, `file:/path`).
    #[serde(default)]
    secret_ref: Option<String>,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default = "yes")]
    enabled: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyUpdate {
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    enabled: Option<bool>,
    /// Rotates the managed secret in place.
    #[serde(default)]
    value: Option<String>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

fn managed_secret_name(provider: &str, key: &str) -> String {
    format!("{provider}_{key}_KEY")
        .to_ascii_uppercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
}

impl ControlPlane {
    async fn stored_provider(&self, name: &str) -> ApiResult<wire::Provider> {
        let r = self.store.get(state::PROVIDER, name).await?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("provider `{name}` is not in the store (providers declared in the config file are changed in the file)"),
            )
        })?;
        serde_json::from_value(r.body).map_err(ApiError::internal)
    }
}

async fn create_key(
    State(cp): Cp,
    headers: HeaderMap,
    Path(provider): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    cp.authorize(&headers, "key_create")?;
    let req: KeyCreate = parse(&body)?;
    if req.id.is_empty()
        || req.id.len() > 63
        || !req
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ApiError::bad(
            "id",
            "must be 1–63 letters, digits, `-` or `_`",
        ));
    }
    let mut p = cp.stored_provider(&provider).await?;
    if p.keys.iter().any(|k| k.id == req.id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            format!("provider `{provider}` already has a key `{}`", req.id),
        )
        .field("id"));
    }
    let mut ops = Vec::new();
    let secret_ref = match (req.value, req.secret_ref) {
        (Some(value), None) => {
            check_value(&value)?;
            let name = managed_secret_name(&provider, &req.id);
            let doc = SecretDoc {
                labels: BTreeMap::from([
                    ("managed-by".to_owned(), "sluice".to_owned()),
                    ("provider".to_owned(), provider.clone()),
                    ("key".to_owned(), req.id.clone()),
                ]),
                scopes: vec![SecretScope::Gateway],
                sealed: cp.key.seal(&name, &value).map_err(ApiError::internal)?,
                version: 1,
            };
            ops.push(Op::Create {
                kind: state::SECRET.into(),
                name: name.clone(),
                body: to_value(&doc)?,
            });
            format!("secret:{name}")
        }
        (None, Some(r)) => r,
        _ => {
            return Err(ApiError::bad(
                "value",
                "give exactly one of `value` and `secret_ref`",
            ))
        }
    };
    p.keys.push(wire::Key {
        id: req.id.clone(),
        secret_ref: secret_ref.clone(),
        weight: req.weight,
        enabled: req.enabled,
        optional: false,
    });
    ops.push(Op::Update {
        kind: state::PROVIDER.into(),
        name: provider.clone(),
        body: to_value(&p)?,
    });
    let revision = cp.commit(ops).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"revision": revision, "provider": provider, "id": req.id, "secret_ref": secret_ref}),
        ),
    ))
}

async fn update_key(
    State(cp): Cp,
    headers: HeaderMap,
    Path((provider, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, "key_update")?;
    let req: KeyUpdate = parse(&body)?;
    let mut p = cp.stored_provider(&provider).await?;
    let key = p.keys.iter_mut().find(|k| k.id == id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("provider `{provider}` has no key `{id}`"),
        )
    })?;
    if let Some(value) = &req.value {
        let Some(secret) = key.secret_ref.strip_prefix("secret:").map(str::to_owned) else {
            return Err(ApiError::bad(
                "value",
                "this key's secret is not in the store; change it where it lives",
            ));
        };
        if req.weight.is_none() && req.enabled.is_none() {
            let revision = cp.update_secret(&secret, Some(value), None, None).await?;
            return Ok(Json(json!({ "revision": revision })));
        }
        cp.update_secret(&secret, Some(value), None, None).await?;
    }
    if let Some(w) = req.weight {
        key.weight = w;
    }
    if let Some(e) = req.enabled {
        key.enabled = e;
    }
    let revision = cp
        .commit(vec![Op::Update {
            kind: state::PROVIDER.into(),
            name: provider,
            body: to_value(&p)?,
        }])
        .await?;
    Ok(Json(json!({ "revision": revision })))
}

async fn delete_key(
    State(cp): Cp,
    headers: HeaderMap,
    Path((provider, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, "key_delete")?;
    let mut p = cp.stored_provider(&provider).await?;
    let Some(pos) = p.keys.iter().position(|k| k.id == id) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("provider `{provider}` has no key `{id}`"),
        ));
    };
    let removed = p.keys.remove(pos);
    let mut ops = vec![Op::Update {
        kind: state::PROVIDER.into(),
        name: provider.clone(),
        body: to_value(&p)?,
    }];
    // A managed secret goes with its key.
    if let Some(name) = removed.secret_ref.strip_prefix("secret:") {
        if let Some(r) = cp.store.get(state::SECRET, name).await? {
            let managed = serde_json::from_value::<SecretDoc>(r.body)
                .is_ok_and(|d| d.labels.get("managed-by").map(String::as_str) == Some("sluice"));
            if managed {
                ops.push(Op::Delete {
                    kind: state::SECRET.into(),
                    name: name.to_owned(),
                });
            }
        }
    }
    let revision = cp.commit(ops).await?;
    Ok(Json(json!({ "revision": revision })))
}

// ---------------------------------------------------------------------------------------------
// Tokens.

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenCreate {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    /// `30d`, `12h`, …
    #[serde(default)]
    #[schema(example = "30d")]
    expires_in: Option<String>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenRotate {
    /// How long the old token keeps working (`1h`; default 0: at once).
    #[serde(default)]
    #[schema(example = "1h")]
    grace: Option<String>,
}

fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

fn duration(field: &str, text: &str) -> ApiResult<Duration> {
    humantime::parse_duration(text).map_err(|e| {
        ApiError::bad(
            field,
            format!("`{text}` is not a duration like 30d or 12h: {e}"),
        )
    })
}

fn new_token(
    name: Option<String>,
    owner: Option<String>,
    scopes: Vec<String>,
    expires_at: Option<String>,
) -> ApiResult<(String, wire::Token)> {
    let (token, id, digest) = crate::auth::opaque::generate().map_err(ApiError::internal)?;
    Ok((
        token,
        wire::Token {
            id,
            sha256: format!("sha256:{}", hex::encode(digest)),
            name,
            owner,
            scopes,
            expires_at,
            revoked_at: None,
        },
    ))
}

async fn list_tokens(State(cp): Cp, headers: HeaderMap) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, "token_list")?;
    let used = cp.store.tokens_last_used().await?;
    let live = cp.config.usage.snapshot();
    let mut items = Vec::new();
    for r in cp.store.list(state::TOKEN).await? {
        let t: wire::Token = serde_json::from_value(r.body).map_err(ApiError::internal)?;
        let last = used.get(&t.id).copied().max(live.get(&t.id).copied());
        items.push(json!({
            "id": t.id, "name": t.name, "owner": t.owner, "scopes": t.scopes,
            "expires_at": t.expires_at, "revoked_at": t.revoked_at,
            "created_at": rfc3339(r.created_at.max(0) as u64),
            "last_used_at": last.filter(|l| *l > 0).map(rfc3339),
        }));
    }
    Ok(Json(json!({ "items": items })))
}

async fn create_token(
    State(cp): Cp,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    cp.authorize(&headers, "token_create")?;
    let req: TokenCreate = parse(&body)?;
    let expires_at = match &req.expires_in {
        Some(t) => Some(rfc3339(unix_now() + duration("expires_in", t)?.as_secs())),
        None => None,
    };
    let (token, record) = new_token(req.name, req.owner, req.scopes, expires_at)?;
    let revision = cp
        .commit(vec![Op::Create {
            kind: state::TOKEN.into(),
            name: record.id.clone(),
            body: to_value(&record)?,
        }])
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"revision": revision, "token": token, "id": record.id, "expires_at": record.expires_at,
            "note": "the token is shown once: store it now"}),
        ),
    ))
}

impl ControlPlane {
    async fn stored_token(&self, id: &str) -> ApiResult<wire::Token> {
        let r = self.store.get(state::TOKEN, id).await?.ok_or_else(|| {
            ApiError::from(StoreError::NotFound {
                kind: state::TOKEN.into(),
                name: id.into(),
            })
        })?;
        serde_json::from_value(r.body).map_err(ApiError::internal)
    }
}

async fn revoke_token(
    State(cp): Cp,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, "token_revoke")?;
    let mut t = cp.stored_token(&id).await?;
    if t.revoked_at.is_none() {
        t.revoked_at = Some(rfc3339(unix_now()));
    }
    let revision = cp
        .commit(vec![Op::Update {
            kind: state::TOKEN.into(),
            name: id.clone(),
            body: to_value(&t)?,
        }])
        .await?;
    Ok(Json(
        json!({"revision": revision, "id": id, "revoked_at": t.revoked_at}),
    ))
}

async fn rotate_token(
    State(cp): Cp,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    cp.authorize(&headers, "token_rotate")?;
    let req: TokenRotate = if body.is_empty() {
        TokenRotate::default()
    } else {
        parse(&body)?
    };
    let grace = match &req.grace {
        Some(g) => duration("grace", g)?,
        None => Duration::ZERO,
    };
    let mut old = cp.stored_token(&id).await?;
    let (token, record) = new_token(
        old.name.clone(),
        old.owner.clone(),
        old.scopes.clone(),
        old.expires_at.clone(),
    )?;
    let until = rfc3339(unix_now() + grace.as_secs());
    old.expires_at = Some(match &old.expires_at {
        Some(e) if e < &until => e.clone(),
        _ => until,
    });
    let revision = cp
        .commit(vec![
            Op::Update {
                kind: state::TOKEN.into(),
                name: id.clone(),
                body: to_value(&old)?,
            },
            Op::Create {
                kind: state::TOKEN.into(),
                name: record.id.clone(),
                body: to_value(&record)?,
            },
        ])
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"revision": revision, "token": token, "id": record.id, "replaces": id,
            "old_expires_at": old.expires_at, "note": "the token is shown once: store it now"}),
        ),
    ))
}

// ---------------------------------------------------------------------------------------------
// Revision feed.

#[derive(Deserialize)]
struct SnapshotQuery {
    #[serde(default)]
    after: u64,
    /// Seconds to wait for a newer revision (long-poll), at most 30.
    #[serde(default)]
    wait: u64,
}

async fn snapshot(
    State(cp): Cp,
    headers: HeaderMap,
    Query(q): Query<SnapshotQuery>,
) -> ApiResult<Response> {
    cp.authorize(&headers, "snapshot_read")?;
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
/// feed key (so a data plane never holds the master key); every other secret is left out.
fn reseal_for(dump: &mut Dump, master: &MasterKey, feed: &MasterKey) {
    dump.resources.retain_mut(|r| {
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

async fn whoami(State(cp): Cp, headers: HeaderMap) -> ApiResult<Json<Value>> {
    // Any role may ask who it is.
    let caller = cp.caller(&headers)?;
    Ok(Json(
        json!({"principal": caller.principal, "role": caller.role}),
    ))
}

async fn openapi() -> Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get_or_init(super::openapi::json).as_str(),
    )
        .into_response()
}

/// The `/v1` routes.
pub fn router(cp: Arc<ControlPlane>) -> Router {
    use wire::{Issuer, Owner, Provider, Route};
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/whoami", get(whoami))
        .route("/v1/snapshot", get(snapshot))
        .route(
            "/v1/providers",
            get(list_docs::<Provider>).post(create_doc::<Provider>),
        )
        .route(
            "/v1/providers/{name}",
            get(get_doc::<Provider>)
                .put(update_doc::<Provider>)
                .delete(delete_doc::<Provider>),
        )
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
        .route(
            "/v1/issuers",
            get(list_docs::<Issuer>).post(create_doc::<Issuer>),
        )
        .route(
            "/v1/issuers/{name}",
            get(get_doc::<Issuer>)
                .put(update_doc::<Issuer>)
                .delete(delete_doc::<Issuer>),
        )
        .route(
            "/v1/routes",
            get(list_docs::<Route>).post(create_doc::<Route>),
        )
        .route(
            "/v1/routes/{*prefix}",
            get(get_doc::<Route>)
                .put(update_doc::<Route>)
                .delete(delete_doc::<Route>),
        )
        .route(
            "/v1/owners",
            get(list_docs::<Owner>).post(create_doc::<Owner>),
        )
        .route(
            "/v1/owners/{name}",
            get(get_doc::<Owner>)
                .put(update_doc::<Owner>)
                .delete(delete_doc::<Owner>),
        )
        .with_state(cp)
}
