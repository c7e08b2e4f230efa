//! Secrets: write-only values, sealed under the master key.

use super::*;

fn check_secret_name(name: &str) -> ApiResult<()> {
    if crate::secrets::valid_name(name) {
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
pub(in crate::control) struct SecretCreate {
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
pub(in crate::control) struct SecretUpdate {
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

pub(super) async fn list_secrets(State(cp): Cp, headers: HeaderMap) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::SecretList)?;
    let items = cp
        .store
        .list(state::SECRET)
        .await?
        .iter()
        .map(secret_view)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn get_secret(
    State(cp): Cp,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::SecretGet)?;
    match cp.store.get(state::SECRET, &name).await? {
        Some(r) => Ok(Json(secret_view(&r)?)),
        None => Err(StoreError::NotFound {
            kind: state::SECRET.into(),
            name,
        }
        .into()),
    }
}

pub(super) fn check_value(value: &str) -> ApiResult<()> {
    if value.is_empty() || value.len() > 16 * 1024 {
        return Err(ApiError::bad("value", "must be 1 to 16384 bytes"));
    }
    Ok(())
}

pub(super) async fn create_secret(
    State(cp): Cp,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    cp.authorize(&headers, Permission::SecretCreate)?;
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

pub(super) async fn update_secret(
    State(cp): Cp,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::SecretUpdate)?;
    let req: SecretUpdate = parse(&body)?;
    let revision = cp
        .update_secret(&name, req.value.as_deref(), req.labels, req.scopes)
        .await?;
    Ok(Json(json!({"revision": revision, "name": name})))
}

impl ControlPlane {
    /// Changes a secret in place: a new value rotates it for every key that references it.
    pub(super) async fn update_secret(
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

pub(super) async fn delete_secret(
    State(cp): Cp,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::SecretDelete)?;
    let revision = cp
        .commit(vec![Op::Delete {
            kind: state::SECRET.into(),
            name,
        }])
        .await?;
    Ok(Json(json!({ "revision": revision })))
}
