//! Protected-resource metadata (RFC 9728) on the proxy listener: of the gateway at the root,
//! of each MCP server (`/mcp/{name}`) and of each agent environment that takes tokens of
//! Sluice's issuer (`/agents/{agent}/{env}`, the same document for any path below it, which is
//! where clients look first). 401s of those resources point here (`resource_metadata`), so an
//! OAuth client finds the authorization server and the `resource` to ask a token for.

use pingora_proxy::Session;
use serde_json::{json, Value};

use super::respond::{write_page, Page};
use crate::config::{Route, Snapshot};

pub const PREFIX: &str = "/.well-known/oauth-protected-resource";

/// The metadata URL of the resource served at `path` (a route's or MCP server's prefix).
pub fn url_of(snap: &Snapshot, path: &str) -> String {
    format!("{}{PREFIX}{path}", snap.public_base_url)
}

/// For a refusal on `path`: the metadata URL when an agent environment taking tokens of
/// Sluice's issuer serves it (its challenge then names it).
pub fn for_refusal(snap: &Snapshot, path: &str) -> Option<String> {
    let (route, _) = oauth_route(snap, path)?;
    Some(url_of(snap, &route.prefix))
}

/// Answers a request under `PREFIX`; returns the status written.
pub async fn serve(session: &mut Session, snap: &Snapshot, request_id: &str) -> u16 {
    let path = session.req_header().uri.path().to_owned();
    let rest = path[PREFIX.len()..].trim_end_matches('/');
    let (status, doc) = match document(snap, rest) {
        Some(doc) => (200, doc),
        None => (404, json!({"error": "not_found"})),
    };
    let page = Page {
        status,
        content_type: "application/json",
        body: doc.to_string(),
        headers: Vec::new(),
    };
    write_page(session, page, request_id).await
}

fn document(snap: &Snapshot, resource_path: &str) -> Option<Value> {
    let trusted = || -> Vec<&str> { snap.jwt.issuers.iter().map(|t| t.issuer.as_str()).collect() };
    if resource_path.is_empty() {
        return Some(json!({
            "resource": snap.public_base_url,
            "authorization_servers": trusted(),
            "bearer_methods_supported": ["header"],
        }));
    }
    let mcp = super::mcp::PREFIX.trim_end_matches('/');
    if let Some(name) = resource_path
        .strip_prefix(mcp)
        .and_then(|n| n.strip_prefix('/'))
    {
        let server = snap.mcp_servers.get(name)?;
        // With sign-in, Sluice itself first (clients take the first); its issuer issues
        // tokens for MCP servers only then. The trusted issuers' own tokens work too.
        let sluice = snap.sign_in.is_some() && snap.builtin_issuer.is_some();
        let servers: Vec<&str> = sluice
            .then_some(snap.public_base_url.as_str())
            .into_iter()
            .chain(
                snap.jwt
                    .issuers
                    .iter()
                    .filter(|t| t.name != crate::auth::jwt::BUILTIN_ISSUER)
                    .map(|t| t.issuer.as_str()),
            )
            .collect();
        return Some(json!({
            "resource": server.resource,
            "resource_name": server.display_name,
            "authorization_servers": servers,
            "scopes_supported": server.access.scopes,
            "bearer_methods_supported": ["header"],
        }));
    }
    // An agent environment with `auth: oauth`: its audience is the resource, Sluice's issuer
    // its only authorization server.
    let (route, audience) = oauth_route(snap, resource_path)?;
    snap.builtin_issuer?;
    Some(json!({
        "resource": audience,
        "resource_name": route.provider.name,
        "authorization_servers": [snap.public_base_url],
        "scopes_supported": route.access.scopes,
        "bearer_methods_supported": ["header"],
    }))
}

/// The route serving `path` when it takes tokens for one audience (an `auth: oauth` agent
/// environment), with that audience.
fn oauth_route<'a>(snap: &'a Snapshot, path: &str) -> Option<(&'a Route, &'a str)> {
    let (_, route) = snap.route(path)?;
    Some((route, route.audience()?))
}
