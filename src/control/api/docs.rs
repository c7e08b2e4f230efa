//! The file-or-store resources (providers, issuers, routes, owners): one set of generic
//! handlers over the `Doc` trait.

use super::*;
use crate::control::rbac::DocPermissions;

/// A resource kind managed as a whole document.
pub(super) trait Doc: Serialize + DeserializeOwned + Send + 'static {
    const KIND: &'static str;
    const PERMISSIONS: DocPermissions;
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
    const PERMISSIONS: DocPermissions = DocPermissions {
        list: Permission::ProviderList,
        get: Permission::ProviderGet,
        create: Permission::ProviderCreate,
        update: Permission::ProviderUpdate,
        delete: Permission::ProviderDelete,
    };
    fn name(&self) -> String {
        self.name.clone()
    }
    fn from_file(config: &wire::Config) -> Vec<Self> {
        config.providers.clone()
    }
    fn check_name(name: &str) -> ApiResult<()> {
        if crate::config::provider::valid_name(name) {
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
    const PERMISSIONS: DocPermissions = DocPermissions {
        list: Permission::IssuerList,
        get: Permission::IssuerGet,
        create: Permission::IssuerCreate,
        update: Permission::IssuerUpdate,
        delete: Permission::IssuerDelete,
    };
    fn name(&self) -> String {
        self.name.clone()
    }
    fn from_file(config: &wire::Config) -> Vec<Self> {
        config.issuers.clone()
    }
}

impl Doc for wire::Route {
    const KIND: &'static str = state::ROUTE;
    const PERMISSIONS: DocPermissions = DocPermissions {
        list: Permission::RouteList,
        get: Permission::RouteGet,
        create: Permission::RouteCreate,
        update: Permission::RouteUpdate,
        delete: Permission::RouteDelete,
    };
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
    const PERMISSIONS: DocPermissions = DocPermissions {
        list: Permission::OwnerList,
        get: Permission::OwnerGet,
        create: Permission::OwnerCreate,
        update: Permission::OwnerUpdate,
        delete: Permission::OwnerDelete,
    };
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
    cp.authorize(&headers, T::PERMISSIONS.list)?;
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
    cp.authorize(&headers, T::PERMISSIONS.get)?;
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
    cp.authorize(&headers, T::PERMISSIONS.create)?;
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
    cp.authorize(&headers, T::PERMISSIONS.update)?;
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
    cp.authorize(&headers, T::PERMISSIONS.delete)?;
    let revision = cp
        .commit(vec![Op::Delete {
            kind: T::KIND.into(),
            name: T::url_name(&raw),
        }])
        .await?;
    Ok(Json(json!({ "revision": revision })))
}
