//! The admin API's OpenAPI document, generated: request schemas are derived (utoipa) from the
//! very types the handlers parse, operations come from one table naming each endpoint's
//! permission. `openapi.json` at the repository root is this document (`sluice openapi`
//! regenerates it; a test fails when the two differ).

use std::borrow::Cow;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ArrayBuilder, ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi,
    OpenApiBuilder, PathItem, PathsBuilder, Ref, RefOr, Required, Schema, ServerBuilder, Type,
};
use utoipa::ToSchema;

use super::api::{KeyCreate, KeyUpdate, SecretCreate, SecretUpdate, TokenCreate, TokenRotate};
use super::rbac::{DocVerb, Permission};
use super::state::SecretScope;
use crate::config::wire;

/// One endpoint of the admin API.
#[derive(Clone)]
pub(super) struct Operation {
    method: HttpMethod,
    path: Cow<'static, str>,
    /// The permission the handler checks (`None`: any authenticated caller, or public).
    permission: Option<Permission>,
    summary: Cow<'static, str>,
    /// Request body schema (a component name).
    body: Option<&'static str>,
    /// Success status.
    status: &'static str,
    /// The response lists items (`{"items": […]}`).
    list: bool,
}

const fn op(
    method: HttpMethod,
    path: &'static str,
    permission: Permission,
    summary: &'static str,
) -> Operation {
    operation_of(method, path, Some(permission), summary)
}

/// An endpoint that checks no permission (any authenticated caller, or public).
const fn unchecked(method: HttpMethod, path: &'static str, summary: &'static str) -> Operation {
    operation_of(method, path, None, summary)
}

const fn operation_of(
    method: HttpMethod,
    path: &'static str,
    permission: Option<Permission>,
    summary: &'static str,
) -> Operation {
    Operation {
        status: if matches!(method, HttpMethod::Post) {
            "201"
        } else {
            "200"
        },
        method,
        path: Cow::Borrowed(path),
        permission,
        summary: Cow::Borrowed(summary),
        body: None,
        list: false,
    }
}

impl Operation {
    const fn body(mut self, schema: &'static str) -> Operation {
        self.body = Some(schema);
        self
    }
    const fn list(mut self) -> Operation {
        self.list = true;
        self
    }
    const fn status(mut self, status: &'static str) -> Operation {
        self.status = status;
        self
    }
}

use HttpMethod::{Delete, Get, Patch, Post, Put};
use Permission::*;

/// What the document says of a whole-document kind (`api::docs`).
pub(super) struct DocSpec {
    pub path: &'static str,
    /// `{name}`, or `{*prefix}` (a wildcard in the router, a plain parameter here).
    pub item: &'static str,
    /// How the item's name is written in the URL, when it is not as is.
    pub item_note: &'static str,
    pub kind: &'static str,
    /// `a provider`, `providers`.
    pub one: &'static str,
    pub many: &'static str,
    pub schema: &'static str,
    pub permission: fn(DocVerb) -> Permission,
}

/// The five operations of a whole-document kind.
pub(super) fn doc_operations(d: DocSpec) -> Vec<Operation> {
    let item = format!("{}/{}", d.path, d.item.replace("{*", "{"));
    let dynamic = |o: Operation, path: &str, summary: String| Operation {
        path: Cow::Owned(path.to_owned()),
        summary: Cow::Owned(summary),
        ..o
    };
    let p = d.permission;
    vec![
        dynamic(
            op(Get, "", p(DocVerb::List), "").list(),
            d.path,
            format!(
                "List {} (the config file's, read-only, and the store's)",
                d.many
            ),
        ),
        dynamic(
            op(Post, "", p(DocVerb::Create), "").body(d.schema),
            d.path,
            format!("Create {}", d.one),
        ),
        dynamic(
            op(Get, "", p(DocVerb::Get), ""),
            &item,
            format!("Get a stored {}{}", d.kind, d.item_note),
        ),
        dynamic(
            op(Put, "", p(DocVerb::Update), "").body(d.schema),
            &item,
            format!("Replace a stored {} (its name is immutable)", d.kind),
        ),
        dynamic(
            op(Delete, "", p(DocVerb::Delete), ""),
            &item,
            format!("Delete a stored {}", d.kind),
        ),
    ]
}

/// Every endpoint under `/v1`: these, and each whole-document kind's (`api::docs::DOCS`).
fn operations() -> Vec<Operation> {
    let mut all: Vec<Operation> = Vec::new();
    for doc in super::api::docs::DOCS {
        all.extend((doc.operations)());
    }
    all.extend(FIXED.iter().cloned());
    all
}

/// The endpoints that are not whole-document kinds.
const FIXED: &[Operation] = &[
    op(Post, "/v1/providers/{name}/keys", KeyCreate, "Add a key; `value` is stored as a secret labelled managed-by: sluice").body("KeyCreate"),
    op(Patch, "/v1/providers/{name}/keys/{id}", KeyUpdate, "Change weight/enabled, or rotate the managed secret's value").body("KeyUpdate"),
    op(Delete, "/v1/providers/{name}/keys/{id}", KeyDelete, "Remove a key (and its managed secret)"),
    op(Get, "/v1/secrets", SecretList, "List secrets: metadata only, never values").list(),
    op(Post, "/v1/secrets", SecretCreate, "Create a secret (value encrypted at rest, write-only)").body("SecretCreate"),
    op(Get, "/v1/secrets/{name}", SecretGet, "A secret's metadata (its value is never returned)"),
    op(Patch, "/v1/secrets/{name}", SecretUpdate, "Change value (rotation in place), labels or scopes").body("SecretUpdate"),
    op(Delete, "/v1/secrets/{name}", SecretDelete, "Delete a secret"),
    op(Get, "/v1/tokens", TokenList, "List tokens (never the secret), with last_used_at").list(),
    op(Post, "/v1/tokens", TokenCreate, "Create a token: the plaintext is returned once").body("TokenCreate"),
    op(Post, "/v1/tokens/{id}/revoke", TokenRevoke, "Revoke a token").status("200"),
    op(Post, "/v1/tokens/{id}/rotate", TokenRotate, "New token; the old one keeps working for `grace`").body("TokenRotate"),
    op(Get, "/v1/snapshot", SnapshotRead, "Every stored resource at the newest revision, signed (`x-sluice-feed-signature`: Ed25519 over the body), with only the gateway's secrets sealed for the caller's token and revision (the dataplane role only; other callers get no secret; audited); 304 when nothing is newer than `after` within `wait` seconds (long-poll)"),
    op(Get, "/v1/oauth/connections", OauthConnectionList, "Users' OAuth connections (token-vault grants): metadata only, never a token; `?principal=` for one").list(),
    op(Delete, "/v1/oauth/connections/{provider}", OauthConnectionDelete, "Remove `?principal=`'s grant at this OAuth provider and revoke it upstream (RFC 7009, best effort)"),
    op(Post, "/v1/vault", VaultUse, "Data planes: a token-vault request (the user token to inject, consent links and states); the answer carries tokens, so only the dataplane role holds this").status("200"),
    op(Post, "/v1/agents/{name}/environments/{env}/test-token", AgentTestToken, "A 5-minute token of Sluice's issuer for an `auth: oauth` agent environment, with its invoke URL and a ready curl line (audited); a `protected` environment's also needs `agent_protected_credentials`").status("201"),
    op(Get, "/v1/issuer/keys", IssuerKeyList, "The built-in issuer's signing keys: public halves, which one signs now"),
    op(Post, "/v1/issuer/keys/rotate", IssuerKeyRotate, "A new signing key (optional body `{\"algorithm\": \"ES256\" | \"EdDSA\"}`, default `builtin_issuer.algorithm`): published at once, signing after `publish_delay_seconds`; keys that cannot have signed a live token are removed").status("201"),
    op(Post, "/v1/tls/reload", TlsReload, "Load this process's TLS listener certificates (`listeners.proxy_tls`) again from their files, as a file change or SIGHUP does: each listener's certificates now served, or why the new files do not load (the old ones keep serving: 422)").status("200"),
    op(Get, "/v1/apps", AppList, "OAuth apps of Sluice's issuer (never a secret)").list(),
    op(Post, "/v1/agents/{name}/environments/{env}/apps", AppCreate, "An OAuth app (client credentials) for an `auth: oauth` agent environment: the secret is returned once (a `protected` environment's also needs `agent_protected_credentials`)").status("201"),
    op(Post, "/v1/apps/{id}/regenerate", AppRegenerate, "A new secret, returned once; the old one is refused at once (a `protected` environment's app also needs `agent_protected_credentials`)").status("200"),
    op(Get, "/v1/oauth-clients", OauthClientList, "Clients of Sluice's authorization endpoint (MCP clients registered dynamically, or by metadata document once they got a token): name, redirect URIs, created, last used, expiry"),
    op(Post, "/v1/people/{principal}/sign-out", PersonSignOut, "Sign a person out everywhere (`jwt:{issuer}:{subject}`): the tokens, refresh tokens and browser sessions Sluice gave them until now are refused from the next revision; their next sign-in works").status("200"),
    op(Delete, "/v1/oauth-clients/{id}", OauthClientRevoke, "Revoke a client: forgotten, and its id refused from the next revision on (access and refresh tokens, new authorizations) for 30 days"),
    op(Delete, "/v1/apps/{id}", AppRevoke, "Revoke an app: its tokens are refused on every data plane at the next revision"),
    op(Get, "/v1/usage", UsageRead, "Requests, tokens and spend (micro-USD) per bucket, `?by=provider|model|principal&hours=24&bucket=3600`, from the audit records of the process serving the API"),
    unchecked(Get, "/v1/whoami", "The caller's principal and role"),
    unchecked(Get, "/v1/console/sign-in", "Whether operators sign in to the console at the company IdP, and where (no credential needed)"),
    unchecked(Post, "/v1/console/session", "The console trades the single-use code of a sign-in (`{\"code\": …}`) for an 8-hour token of the admin API; 403 when the person's claim values map to no role (no credential needed: the code is the proof)").status("200"),
    unchecked(Get, "/v1/openapi.json", "This document (no credential needed)"),
    unchecked(Get, "/v1/snapshot/key", "The public half of the revision feed's signing key (`ed25519:BASE64`), which data planes pin with `SLUICE_CONTROL_PLANE_KEY` (no credential needed)"),
];

const DESCRIPTION: &str = "Control plane of the Sluice AI gateway. Each operation's `x-permission` names the permission it checks; roles: admin (all), operator (keys, secrets, tokens; reads the rest), viewer (reads), dataplane (snapshot_read, vault_use); an owner's `permissions` adds named ones (a custom role). Creating or updating a resource so that it references an OAuth provider (a provider's `oauth_provider`) also checks `oauth_provider_attach`. Errors are `{\"error\": {\"code\", \"message\", \"field\"?, \"errors\"?}}`.";

/// The document.
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for o in operations() {
        paths = paths.path(
            o.path.as_ref(),
            PathItem::new(o.method.clone(), operation(&o)),
        );
    }
    let error = ResponseBuilder::new()
        .description("Error")
        .content("application/json", json_of(Ref::from_schema_name("Error")))
        .build();
    let mut components = ComponentsBuilder::new()
        .schema_from::<wire::Key>()
        .schema_from::<crate::config::oauth_provider::GrantType>()
        .schema_from::<crate::config::oauth_provider::AuthMethod>()
        .schema_from::<wire::ProviderKind>()
        .schema_from::<wire::CredentialMode>()
        .schema_from::<wire::AuthPolicy>()
        .schema_from::<crate::config::route::fallback::wire::Fallback>()
        .schema_from::<crate::config::route::fallback::wire::FallbackTarget>()
        .schema_from::<crate::config::route::fallback::wire::FallbackOn>()
        .schema_from::<wire::Role>()
        .schema_from::<crate::config::issuer::wire::SignIn>()
        .schema_from::<crate::config::issuer::wire::ConsoleSignIn>()
        .schema_from::<crate::config::mcp_server::wire::McpAuth>()
        .schema_from::<crate::config::mcp_server::wire::McpTimeouts>()
        .schema_from::<crate::config::mcp_server::wire::TokenInjection>()
        .schema_from::<crate::config::mcp_server::policy::WireRule>()
        .schema_from::<crate::config::mcp_server::policy::Lists>()
        .schema_from::<crate::config::agent::wire::Environment>()
        .schema_from::<crate::config::agent::wire::AgentAuth>()
        .schema_from::<crate::config::agent::wire::Operation>()
        .schema_from::<wire::Affinity>()
        .schema_from::<crate::limits::spec::Endpoint>()
        .schema_from::<crate::limits::spec::Per>()
        .schema_from::<crate::budgets::spec::Period>()
        .schema_from::<SecretScope>()
        .schema_from::<KeyCreate>()
        .schema_from::<KeyUpdate>()
        .schema_from::<SecretCreate>()
        .schema_from::<SecretUpdate>()
        .schema_from::<TokenCreate>()
        .schema_from::<TokenRotate>()
        .schema_from::<Error>()
        .schema_from::<ErrorDetail>()
        .schema_from::<FieldError>()
        .response("Error", error)
        .security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A Sluice token whose owner has a role"))
                    .build(),
            ),
        );
    for doc in super::api::docs::DOCS {
        components = (doc.schema)(components);
    }
    let components = components.build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Sluice admin API")
                .version("1")
                .description(Some(DESCRIPTION)),
        )
        .servers(Some([ServerBuilder::new()
            .url("http://127.0.0.1:9090")
            .build()]))
        .paths(paths)
        .components(Some(components))
        .build()
}

/// The document as the JSON kept in the repository (pretty, trailing newline).
pub fn json() -> String {
    match document().to_pretty_json() {
        Ok(s) => s + "\n",
        Err(e) => format!("{{\"error\": \"{e}\"}}\n"),
    }
}

fn json_of(schema: impl Into<RefOr<Schema>>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

/// The revision feed's long-poll parameters and its 304.
fn feed_parameters(mut b: OperationBuilder) -> OperationBuilder {
    let wait = format!(
        "Seconds to wait for a newer revision (default 0, at most {})",
        super::api::MAX_WAIT.as_secs()
    );
    for (name, what) in [
        ("after", "The revision the caller has (default 0)"),
        ("wait", wait.as_str()),
    ] {
        b = b.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(what))
                .schema(Some(ObjectBuilder::new().schema_type(Type::Integer))),
        );
    }
    b.response(
        "304",
        ResponseBuilder::new().description("Nothing newer than `after`"),
    )
}

fn operation(o: &Operation) -> utoipa::openapi::path::Operation {
    let id = o
        .permission
        .map(|p| p.name().into_owned())
        .unwrap_or_else(|| o.path.trim_start_matches("/v1/").replace(['.', '/'], "_"));
    let success: RefOr<Schema> = if o.list {
        ObjectBuilder::new()
            .property(
                "items",
                ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::Object)),
            )
            .required("items")
            .into()
    } else {
        ObjectBuilder::new().schema_type(Type::Object).into()
    };
    let mut b = OperationBuilder::new()
        .operation_id(Some(id))
        .summary(Some(o.summary.as_ref()))
        .response(
            o.status,
            ResponseBuilder::new()
                .description("OK")
                .content("application/json", json_of(success)),
        );
    for segment in o.path.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            b = b.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
    }
    if o.path == "/v1/snapshot" {
        b = feed_parameters(b);
    }
    if let Some(schema) = o.body {
        b = b.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content("application/json", json_of(Ref::from_schema_name(schema)))
                .build(),
        ));
    }
    if o.path != "/v1/openapi.json" && o.path != "/v1/snapshot/key" {
        b = b.security(SecurityRequirement::new("token", Vec::<String>::new()));
        for status in ["400", "401", "403", "404", "409", "422"] {
            b = b.response(status, Ref::from_response_name("Error"));
        }
    }
    if let Some(p) = o.permission {
        b = b.extensions(Some(
            ExtensionsBuilder::new()
                .add("x-permission", p.name().into_owned())
                .build(),
        ));
    }
    b.build()
}

// The error body, for the document only (the API builds it in `api::ApiError`).

/// An API error.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Error {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// `unauthenticated`, `forbidden`, `invalid_body`, `invalid_field`, `invalid_configuration`,
    /// `not_found`, `already_exists`, `internal`.
    code: String,
    message: String,
    /// The offending field (`name`, `keys[0].secret_ref`, `store:provider/p9.keys[0].secret_ref`).
    field: Option<String>,
    /// Every problem, when the change would not build a valid configuration.
    errors: Option<Vec<FieldError>>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct FieldError {
    field: String,
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_copy_is_current() {
        let repo: serde_json::Value =
            serde_json::from_str(include_str!("../../openapi.json")).expect("openapi.json");
        let generated: serde_json::Value = serde_json::from_str(&json()).expect("generated");
        assert!(
            repo == generated,
            "openapi.json is stale: run `cargo run -- openapi > openapi.json`"
        );
    }

    #[test]
    fn every_schema_referred_to_is_defined() {
        let doc = json();
        let parsed: serde_json::Value = serde_json::from_str(&doc).expect("generated");
        let defined = &parsed["components"]["schemas"];
        let mut missing: Vec<&str> = doc
            .split("\"#/components/schemas/")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|name| defined.get(*name).is_none())
            .collect();
        missing.sort_unstable();
        missing.dedup();
        assert!(
            missing.is_empty(),
            "referred to, never defined: {missing:?}"
        );
    }

    #[test]
    fn every_permission_is_known_and_used_once() {
        let mut seen = std::collections::HashSet::new();
        for o in operations().iter().filter_map(|o| o.permission) {
            assert!(seen.insert(o), "{o} twice");
        }
        // Sub-resource checks (attach, protected environments) are made inside other
        // endpoints.
        use crate::control::rbac::Class;
        for p in Permission::all()
            .iter()
            .filter(|p| !matches!(p.class(), Class::Attach | Class::Protected))
        {
            assert!(seen.contains(p), "{p} has no endpoint");
        }
    }
}
