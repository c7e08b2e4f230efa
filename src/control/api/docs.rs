//! The file-or-store resources (providers, issuers, routes, owners): one set of generic
//! handlers over the `Doc` trait, and the registry (`DOCS`) that mounts them and documents them.
//! A new whole-document kind is its `Kind` (config), its `Doc` here and one line in `DOCS`.

use super::*;
use crate::config::kind::Kind;
use crate::control::openapi::{self, Operation};
use crate::control::rbac::DocVerb;

/// A resource kind managed as a whole document through the admin API.
pub(in crate::control) trait Doc: Kind + utoipa::ToSchema {
    /// The collection (`/v1/providers`); items are at `PATH/ITEM`.
    const PATH: &'static str;
    /// The item's path segment: `{name}`, or `{*prefix}` for names that hold slashes.
    const ITEM: &'static str = "{name}";
    /// How the name is written in the URL, when not as is (for the documentation).
    const ITEM_NOTE: &'static str = "";
    /// One of them, with its article, and several, for the API's documentation.
    const ONE: &'static str;
    const MANY: &'static str;
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
    /// Adds what the API shows besides the document itself (read-only fields).
    fn annotate(item: &mut Value, cp: &ControlPlane) {
        let _ = (item, cp);
    }
    /// The OAuth providers this document makes use of, with the field naming each: writing a
    /// new one needs `oauth_provider_attach` besides the kind's own permission.
    fn oauth_providers(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// Everything that decides where this document sends users' grants or `mcp`-scoped
    /// secrets (URL, provider, secret reference, injection header), or which of its
    /// credentials are protected; `None` when there is nothing of the kind. Any change to it
    /// (appearing, changing, going) needs `BINDING_PERMISSION`: re-pointing a URL is as good
    /// as attaching the provider to one's own server.
    fn credential_binding(&self) -> Option<Value> {
        None
    }
    /// The field a refused change of `credential_binding` names, and the permission it needs.
    const BINDING_FIELD: &'static str = "oauth_provider";
    const BINDING_PERMISSION: Permission = Permission::OauthProviderAttach;
    /// Other stored resources that change with this document (an agent's provisioned OAuth
    /// apps): the operations committed with it, and what the answer shows of them under
    /// `provisioned` (a secret shown once). `new` is `None` when the document is deleted.
    fn companions(
        name: &str,
        new: Option<&Self>,
        cp: &ControlPlane,
    ) -> impl std::future::Future<Output = ApiResult<(Vec<Op>, Value)>> + Send {
        let _ = (name, new, cp);
        async move { Ok((Vec::new(), Value::Null)) }
    }
    /// Completes and checks a document written through the API before it is validated with
    /// the rest and committed (discovery, references to stored secrets); as is by default.
    fn prepare(
        doc: Self,
        cp: &ControlPlane,
    ) -> impl std::future::Future<Output = ApiResult<Self>> + Send {
        let _ = cp;
        async move { Ok(doc) }
    }
}

/// The rule for names that appear in URLs, metrics and logs (providers, OAuth providers):
/// lowercase letters, digits and hyphens; 400 naming `name` otherwise.
pub(super) fn lowercase_name(name: &str, example: &str) -> ApiResult<()> {
    if crate::config::name::valid(name) {
        return Ok(());
    }
    Err(ApiError::bad(
        "name",
        crate::config::name::problem("resource", name, example),
    ))
}

/// A registered `Doc`, its type erased.
pub(in crate::control) struct DocEntry {
    pub kind: &'static str,
    pub routes: fn(Router<Arc<ControlPlane>>) -> Router<Arc<ControlPlane>>,
    pub operations: fn() -> Vec<Operation>,
    /// Adds the kind's schema to the OpenAPI components.
    pub schema: fn(utoipa::openapi::ComponentsBuilder) -> utoipa::openapi::ComponentsBuilder,
}

const fn entry<T: Doc>() -> DocEntry {
    DocEntry {
        kind: T::KIND,
        routes: routes::<T>,
        operations: operations::<T>,
        schema: |c| c.schema_from::<T>(),
    }
}

/// Every whole-document kind of the admin API.
pub(in crate::control) const DOCS: &[DocEntry] = &[
    entry::<wire::Provider>(),
    entry::<wire::Issuer>(),
    entry::<wire::Route>(),
    entry::<wire::Owner>(),
    entry::<wire::OAuthProvider>(),
    entry::<wire::McpServer>(),
    entry::<wire::Agent>(),
    entry::<wire::Limit>(),
    entry::<wire::Budget>(),
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
        many: T::MANY,
        schema: T::SCHEMA,
        permission: |verb| Permission::doc::<T>(verb),
    })
}

/// A stored document as the API shows it: its body, where it comes from, and its times.
fn stored_item(r: Resource) -> Value {
    let mut v = with_source(r.body, "store");
    if let Value::Object(map) = &mut v {
        map.insert(
            "created_at".into(),
            rfc3339(r.created_at.max(0) as u64).into(),
        );
        map.insert(
            "updated_at".into(),
            rfc3339(r.updated_at.max(0) as u64).into(),
        );
    }
    v
}

fn with_source(mut v: Value, source: &str) -> Value {
    if let Value::Object(map) = &mut v {
        map.insert("source".into(), Value::String(source.into()));
    }
    v
}

pub(super) async fn list_docs<T: Doc>(State(cp): Cp, headers: HeaderMap) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::doc::<T>(DocVerb::List))?;
    let mut items = Vec::new();
    if let Ok((file, _)) = crate::config::read_file(cp.config.file()) {
        for doc in T::list(&file) {
            items.push(with_source(to_value(&doc)?, "file"));
        }
    }
    for r in cp.store.list(T::KIND).await? {
        items.push(stored_item(r));
    }
    for item in &mut items {
        T::annotate(item, &cp);
    }
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn get_doc<T: Doc>(
    State(cp): Cp,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::doc::<T>(DocVerb::Get))?;
    let name = T::url_name(&raw);
    match cp.store.get(T::KIND, &name).await? {
        Some(r) => {
            let mut item = stored_item(r);
            T::annotate(&mut item, &cp);
            Ok(Json(item))
        }
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
    let caller = cp.authorize(&headers, Permission::doc::<T>(DocVerb::Create))?;
    let doc: T = parse(&body)?;
    let name = doc.name();
    T::check_name(&name)?;
    check_attach(&cp, &caller, &doc, (&[], None)).await?;
    let doc = T::prepare(doc, &cp).await?;
    let value = to_value(&doc)?;
    let (mut ops, provisioned) = T::companions(&name, Some(&doc), &cp).await?;
    ops.insert(
        0,
        Op::Create {
            kind: T::KIND.into(),
            name,
            body: value.clone(),
        },
    );
    let revision = cp.commit(ops).await?;
    Ok((
        StatusCode::CREATED,
        Json(answer(revision, Some(value), provisioned)),
    ))
}

pub(super) async fn update_doc<T: Doc>(
    State(cp): Cp,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let caller = cp.authorize(&headers, Permission::doc::<T>(DocVerb::Update))?;
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
    let stored = match cp.store.get(T::KIND, &name).await? {
        Some(r) => serde_json::from_value::<T>(r.body).ok(),
        None => None,
    };
    let before = stored
        .as_ref()
        .map(|d| d.oauth_providers())
        .unwrap_or_default();
    let bound = stored.as_ref().and_then(|d| d.credential_binding());
    check_attach(&cp, &caller, &doc, (&before, bound.as_ref())).await?;
    let doc = T::prepare(doc, &cp).await?;
    let value = to_value(&doc)?;
    let (mut ops, provisioned) = T::companions(&name, Some(&doc), &cp).await?;
    ops.insert(
        0,
        Op::Update {
            kind: T::KIND.into(),
            name,
            body: value.clone(),
        },
    );
    let revision = cp.commit(ops).await?;
    Ok(Json(answer(revision, Some(value), provisioned)))
}

/// A write's answer: the revision, the document, and its companions' news when there are any.
fn answer(revision: u64, item: Option<Value>, provisioned: Value) -> Value {
    let mut answer = json!({ "revision": revision });
    if let Some(item) = item {
        answer["item"] = item;
    }
    if !provisioned.is_null() {
        answer["provisioned"] = provisioned;
    }
    answer
}

/// A reference to an OAuth provider the document did not hold before, or any change to where
/// it sends users' grants or `mcp` secrets, needs `oauth_provider_attach`; the provider must
/// exist (in the store or the file).
async fn check_attach<T: Doc>(
    cp: &ControlPlane,
    caller: &Caller,
    doc: &T,
    (before, bound): (&[(&'static str, String)], Option<&Value>),
) -> ApiResult<()> {
    for (field, name) in doc.oauth_providers() {
        if before.iter().any(|(_, b)| *b == name) {
            continue;
        }
        caller
            .require(Permission::OauthProviderAttach)
            .map_err(|e| e.field(field))?;
        let stored = cp
            .store
            .get(wire::OAuthProvider::KIND, &name)
            .await?
            .is_some();
        if !stored && !cp.config.snapshot().oauth_providers.contains_key(&name) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_oauth_provider",
                format!(
                    "no OAuth provider named `{name}`: create it first (POST /v1/oauth-providers)"
                ),
            )
            .field(field));
        }
    }
    if doc.credential_binding().as_ref() != bound {
        caller
            .require(T::BINDING_PERMISSION)
            .map_err(|e| e.field(T::BINDING_FIELD))?;
    }
    Ok(())
}

pub(super) async fn delete_doc<T: Doc>(
    State(cp): Cp,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::doc::<T>(DocVerb::Delete))?;
    let name = T::url_name(&raw);
    let (mut ops, provisioned) = T::companions(&name, None, &cp).await?;
    ops.insert(
        0,
        Op::Delete {
            kind: T::KIND.into(),
            name,
        },
    );
    let revision = cp.commit(ops).await?;
    Ok(Json(answer(revision, None, provisioned)))
}
