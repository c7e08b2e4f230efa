//! Providers through the admin API (whole documents, `Doc`) and their keys: a key's value
//! given here becomes a secret labelled `managed-by: sluice`.

use super::docs::Doc;
use super::secrets::check_value;
use super::*;

impl Doc for wire::Provider {
    const PATH: &'static str = "/v1/providers";
    const ONE: &'static str = "a provider";
    const MANY: &'static str = "providers";
    const SCHEMA: &'static str = "Provider";
    fn check_name(name: &str) -> ApiResult<()> {
        super::docs::lowercase_name(name, "openai-eu")
    }
    fn oauth_providers(&self) -> Vec<(&'static str, String)> {
        self.oauth_provider
            .iter()
            .map(|o| ("oauth_provider", o.clone()))
            .collect()
    }
    const BINDING_FIELD: &'static str = "base_url";
    /// A provider with users' grants (`credentials: oauth`) sends them to its base URL.
    fn credential_binding(&self) -> Option<Value> {
        let user_grants = self.credentials == crate::config::CredentialMode::OAuth
            || self.oauth_provider.is_some();
        user_grants.then(|| {
            let fingerprint = json!({
                "kind": self.kind,
                "base_url": self.base_url,
                "intercept_hosts": self.intercept_hosts,
                "credentials": self.credentials,
                "oauth_provider": self.oauth_provider,
                "ca_file": self.ca_file,
            });
            fingerprint
        })
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::control) struct KeyCreate {
    id: String,
    /// The key itself (stored as a managed secret) …
    #[serde(default)]
    value: Option<String>,
    /// … or a reference to a stored secret (`secret:NAME`).
    #[serde(default)]
    secret_ref: Option<String>,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default = "yes")]
    enabled: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::control) struct KeyUpdate {
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

impl ControlPlane {
    /// A new secret for a key given by value, labelled `managed-by: sluice` (it goes with the
    /// key). Returns the store operation and the secret's name.
    fn managed_secret(&self, provider: &str, key: &str, value: &str) -> ApiResult<(Op, String)> {
        check_value(value)?;
        let name = managed_secret_name(provider, key);
        let doc = SecretDoc {
            labels: BTreeMap::from([
                ("managed-by".to_owned(), "sluice".to_owned()),
                ("provider".to_owned(), provider.to_owned()),
                ("key".to_owned(), key.to_owned()),
            ]),
            scopes: vec![SecretScope::Gateway],
            sealed: self.key.seal(&name, value).map_err(ApiError::internal)?,
            version: 1,
        };
        let op = Op::Create {
            kind: state::SECRET.into(),
            name: name.clone(),
            body: to_value(&doc)?,
        };
        Ok((op, name))
    }
}

pub(super) async fn create_key(
    State(cp): Cp,
    headers: HeaderMap,
    Path(provider): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    cp.authorize(&headers, Permission::KeyCreate)?;
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
            let (op, name) = cp.managed_secret(&provider, &req.id, &value)?;
            ops.push(op);
            format!("secret:{name}")
        }
        (None, Some(r)) if r.starts_with("secret:") => r,
        (None, Some(_)) => {
            return Err(ApiError::bad(
                "secret_ref",
                "through the admin API a key is a `value` or a `secret:NAME` reference; `env:` and `file:` references belong in the config file",
            ))
        }
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

pub(super) async fn update_key(
    State(cp): Cp,
    headers: HeaderMap,
    Path((provider, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::KeyUpdate)?;
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

pub(super) async fn delete_key(
    State(cp): Cp,
    headers: HeaderMap,
    Path((provider, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::KeyDelete)?;
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
