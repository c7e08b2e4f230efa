//! The file-or-store resources (providers, issuers, routes, owners): one set of generic
//! handlers over the `Doc` trait.

use super::*;

/// A resource kind managed as a whole document.
pub(super) trait Doc: Serialize + DeserializeOwned + Send + 'static {
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

pub(super) async fn list_docs<T: Doc>(State(cp): Cp, headers: HeaderMap) -> ApiResult<Json<Value>> {
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

pub(super) async fn get_doc<T: Doc>(
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

pub(super) async fn create_doc<T: Doc>(
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

pub(super) async fn update_doc<T: Doc>(
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

pub(super) async fn delete_doc<T: Doc>(
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
