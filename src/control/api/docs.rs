//! The file-or-store resources (providers, issuers, routes, owners): one set of generic
//! handlers over the `Doc` trait, and the registry (`DOCS`) that mounts them and documents them.
//! A new whole-document kind is its `Kind` (config), its `Doc` here and one line in `DOCS`.

use super::*;
use crate::config::kind::Kind;
use crate::control::openapi::{self, Operation};
use crate::control::rbac::DocPermissions;

/// A resource kind managed as a whole document through the admin API.
pub(in crate::control) trait Doc: Kind {
    const PERMISSIONS: DocPermissions;
    /// The collection (`/v1/providers`); items are at `PATH/ITEM`.
    const PATH: &'static str;
    /// The item's path segment: `{name}`, or `{*prefix}` for names that hold slashes.
    const ITEM: &'static str = "{name}";
    /// How the name is written in the URL, when not as is (for the documentation).
    const ITEM_NOTE: &'static str = "";
    /// One of them, with its article, for the API's documentation (`a provider`).
    const ONE: &'static str;
    /// Its schema in the OpenAPI document.
    const SCHEMA: &'static str;
    /// From the name in the URL.
    fn url_name(raw: &str) -> String {
        raw.to_owned()
    }
    fn check_name(name: &str) -> ApiResult<()> {
        let _ = name;
        Ok(())
    }
}

/// A registered `Doc`, its type erased.
pub(in crate::control) struct DocEntry {
    pub routes: fn(Router<Arc<ControlPlane>>) -> Router<Arc<ControlPlane>>,
    pub operations: fn() -> Vec<Operation>,
}

const fn entry<T: Doc>() -> DocEntry {
    DocEntry {
        routes: routes::<T>,
        operations: operations::<T>,
    }
}

/// Every whole-document kind of the admin API.
pub(in crate::control) const DOCS: &[DocEntry] = &[
    entry::<wire::Provider>(),
    entry::<wire::Issuer>(),
    entry::<wire::Route>(),
    entry::<wire::Owner>(),
];

fn routes<T: Doc>(router: Router<Arc<ControlPlane>>) -> Router<Arc<ControlPlane>> {
    router
        .route(T::PATH, get(list_docs::<T>).post(create_doc::<T>))
        .route(
            &format!("{}/{}", T::PATH, T::ITEM),
            get(get_doc::<T>)
                .put(update_doc::<T>)
                .delete(delete_doc::<T>),
        )
}

fn operations<T: Doc>() -> Vec<Operation> {
    openapi::doc_operations(openapi::DocSpec {
        path: T::PATH,
        item: T::ITEM,
        item_note: T::ITEM_NOTE,
        kind: T::KIND,
        one: T::ONE,
        schema: T::SCHEMA,
        permissions: T::PERMISSIONS,
    })
}

impl Doc for wire::Provider {
    const PERMISSIONS: DocPermissions = DocPermissions {
        list: Permission::ProviderList,
        get: Permission::ProviderGet,
        create: Permission::ProviderCreate,
        update: Permission::ProviderUpdate,
        delete: Permission::ProviderDelete,
    };
    const PATH: &'static str = "/v1/providers";
    const ONE: &'static str = "a provider";
    const SCHEMA: &'static str = "Provider";
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
    const PERMISSIONS: DocPermissions = DocPermissions {
        list: Permission::IssuerList,
        get: Permission::IssuerGet,
        create: Permission::IssuerCreate,
        update: Permission::IssuerUpdate,
        delete: Permission::IssuerDelete,
    };
    const PATH: &'static str = "/v1/issuers";
    const ONE: &'static str = "an issuer";
    const SCHEMA: &'static str = "Issuer";
}

impl Doc for wire::Route {
    const PERMISSIONS: DocPermissions = DocPermissions {
        list: Permission::RouteList,
        get: Permission::RouteGet,
        create: Permission::RouteCreate,
        update: Permission::RouteUpdate,
        delete: Permission::RouteDelete,
    };
    const PATH: &'static str = "/v1/routes";
    const ITEM: &'static str = "{*prefix}";
    const ITEM_NOTE: &'static str = " (prefix without its leading slash)";
    const ONE: &'static str = "a route";
    const SCHEMA: &'static str = "Route";
    fn url_name(raw: &str) -> String {
        format!("/{}", raw.trim_start_matches('/'))
    }
}

impl Doc for wire::Owner {
    const PERMISSIONS: DocPermissions = DocPermissions {
        list: Permission::OwnerList,
        get: Permission::OwnerGet,
        create: Permission::OwnerCreate,
        update: Permission::OwnerUpdate,
        delete: Permission::OwnerDelete,
    };
    const PATH: &'static str = "/v1/owners";
    const ONE: &'static str = "an owner";
    const SCHEMA: &'static str = "Owner";
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
        for doc in T::list(&file) {
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
