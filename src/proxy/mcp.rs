//! The MCP gateway: `/mcp/{name}` on the proxy listener fronts an upstream MCP server over
//! Streamable HTTP (POST, GET streams, DELETE), streamed both ways by Pingora like any response.
//!
//! In order: find the server → authenticate the client under the server's policy (a JWT must be
//! for this resource: its `aud` names the server's public URL, no token passthrough) → check
//! that a presented session belongs to this principal → the upstream credential (the user's
//! grant or exchanged token from the vault, a static service token, or none). Sluice's own
//! refusals are JSON-RPC error objects; "connect first" is answered in the protocol's terms.
//!
//! Sessions: the upstream's `Mcp-Session-Id` is handed to the client as `ID.FTAG`, where the
//! tag is an HMAC (keyed per deployment) over the principal, the server, the id and F (`u` when
//! the client declared URL elicitation at `initialize`, else `n`). Any node can check it; another
//! principal presenting the id gets 404, as for an unknown session.

use hmac::{Hmac, Mac};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use serde_json::{json, Value};
use std::sync::Arc;

use super::respond::{write_page, Page};
use crate::auth::{self, CredentialKind, Principal};
use crate::clock::unix_now;
use crate::config::mcp_server::policy::Applied;
use crate::config::mcp_server::McpAuth;
use crate::config::{McpServer, Snapshot};
use crate::error::GatewayError;
use crate::metrics::METRICS;
use crate::vault::{Failure, Vault, Who};

pub const PREFIX: &str = "/mcp/";
static SESSION: http::HeaderName = http::HeaderName::from_static("mcp-session-id");
/// Largest request body (a JSON-RPC message or batch) taken: longer ones get 413.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
const KEEP_FOR_AUDIT: usize = 64 * 1024;
/// JSON-RPC: the URL-elicitation-required error of MCP 2025-11-25.
const URL_ELICITATION_REQUIRED: i64 = -32042;
/// Server-defined: authorization needed (when the client cannot take URL elicitation).
const AUTHORIZATION_REQUIRED: i64 = -32001;

/// An admitted MCP request.
#[derive(Debug)]
pub struct McpCtx {
    pub server: Arc<McpServer>,
    /// The credential to inject upstream.
    pub token: Option<Arc<str>>,
    /// The upstream's session id (the client's, unwrapped).
    pub upstream_session: Option<String>,
    /// The principal's vault key: what session tags bind to.
    pub who: String,
    pub session_key: [u8; 32],
    /// The start of the request body: its JSON-RPC method, tool and (at `initialize`) the
    /// client's capabilities.
    pub body: Vec<u8>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The JSON-RPC error code the upstream answered with, if any (for the audit record).
    pub rpc_error: RpcErrorScan,
    /// What the limits naming this server took, given back when the request (or the GET
    /// stream) ends.
    pub grant: crate::limits::Grant,
    /// A GET stream's place among the principal's open streams on this server.
    pub stream: Option<super::mcp_caps::StreamSlot>,
    /// The server's per-tool policy as it applies to this principal.
    pub policy: Option<Applied>,
    /// What the policy decided (`allowed`, `refused`), for the audit record.
    pub decision: Option<&'static str>,
    /// The answers to list requests to filter.
    pub lists: Option<Box<super::mcp_policy::ListFilter>>,
    /// The body was read whole before going upstream (`body` and `bytes_in` hold it already).
    pub body_kept: bool,
}

impl McpCtx {
    /// Keeps the start of the request body for the audit record and counts it.
    pub fn keep_for_audit(&mut self, chunk: &[u8]) {
        self.bytes_in += chunk.len() as u64;
        let room = KEEP_FOR_AUDIT.saturating_sub(self.body.len());
        self.body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
}

/// What answering an MCP request here needs: the status written.
pub enum Outcome {
    Admitted(Box<McpCtx>),
    Answered(u16),
}

/// Admits or answers a request under `/mcp/`.
pub async fn admit(
    session: &mut Session,
    snap: &Snapshot,
    vault: &Vault,
    (request_id, source): (&str, Option<std::net::IpAddr>),
) -> Outcome {
    let server = match server_for(session.req_header(), snap) {
        Ok(s) => s,
        Err(r) => return Outcome::Answered(r.write(session, request_id).await),
    };
    let principal = match authenticate(session.req_header(), &server, snap).await {
        Ok(p) => p,
        Err(e) => return Outcome::Answered(refuse_auth(session, &server, e, request_id).await),
    };
    let who = Who::of(&principal)
        .map(|w| w.key)
        .unwrap_or_else(|| "anonymous".into());
    let session_key = match vault.session_key().await {
        Ok(k) => *k,
        Err(f) => return Outcome::Answered(unavailable(session, &f, request_id).await),
    };
    let (upstream_session, elicits) =
        match session_of(session.req_header(), &session_key, &who, &server) {
            Ok(found) => found,
            Err(r) => return Outcome::Answered(r.write(session, request_id).await),
        };
    // The caps before the vault: a refused request costs no token lookup.
    let (grant, stream) =
        match super::mcp_caps::take(session, snap, &server, &principal, (&who, source)).await {
            Ok(taken) => taken,
            Err(r) => return Outcome::Answered(r.write(session, request_id).await),
        };
    if !server.members.is_empty() {
        let call = super::mcp_group::Call {
            group: server,
            principal,
            who,
            session_key,
            sessions: upstream_session,
            elicits,
            request_id,
            source,
        };
        let status = super::mcp_group::serve(session, snap, vault, call).await;
        drop((grant, stream));
        return Outcome::Answered(status);
    }
    let token = match credential(&server, snap, vault, &principal, session.req_header()).await {
        Ok(t) => t,
        Err(f) if f.connect_url().is_some() => {
            let link_to_model = server.links_in_tool_results;
            return Outcome::Answered(
                connect_first(session, &f, (elicits, link_to_model), request_id).await,
            );
        }
        Err(f) => {
            let body = rpc_error(Value::Null, -32603, &f.to_string(), None);
            return Outcome::Answered(write(session, f.status(), body, &[], request_id).await);
        }
    };
    Outcome::Admitted(Box::new(McpCtx {
        token,
        upstream_session,
        who,
        session_key,
        body: Vec::new(),
        bytes_in: 0,
        bytes_out: 0,
        rpc_error: RpcErrorScan::default(),
        grant,
        stream,
        policy: server.policy.as_ref().map(|p| p.applied(&principal)),
        decision: None,
        lists: None,
        body_kept: false,
        server,
    }))
}

/// A refusal decided from the request head alone, as a JSON-RPC error.
pub(super) struct Refused {
    status: u16,
    code: i64,
    message: String,
    pub(super) headers: Vec<(&'static str, String)>,
}

impl Refused {
    pub(super) fn new(status: u16, code: i64, message: impl Into<String>) -> Refused {
        Refused {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// The status and the JSON-RPC error answering request `id`.
    pub(super) fn rpc(&self, id: Value) -> (u16, Value) {
        (self.status, rpc_error(id, self.code, &self.message, None))
    }

    async fn write(self, session: &mut Session, request_id: &str) -> u16 {
        let body = rpc_error(Value::Null, self.code, &self.message, None);
        write(session, self.status, body, &self.headers, request_id).await
    }
}

/// The enabled server the path names, for a method and a body size it takes.
fn server_for(req: &RequestHeader, snap: &Snapshot) -> Result<Arc<McpServer>, Refused> {
    let name = &req.uri.path()[PREFIX.len()..];
    let server = snap
        .mcp_servers
        .get(name)
        .filter(|s| s.enabled)
        .cloned()
        .ok_or_else(|| Refused::new(404, -32601, format!("no MCP server named `{name}`")))?;
    if !matches!(req.method.as_str(), "POST" | "GET" | "DELETE") {
        let mut r = Refused::new(
            405,
            -32600,
            "MCP Streamable HTTP takes POST, GET and DELETE",
        );
        r.headers.push(("allow", "POST, GET, DELETE".to_owned()));
        return Err(r);
    }
    let declared = super::steps::declared_length(req);
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        let message = format!("the request body is larger than {MAX_BODY} bytes");
        return Err(Refused::new(413, -32600, message));
    }
    Ok(server)
}

/// The upstream session id and URL-elicitation flag of a presented session, which must be
/// this principal's at this server (404 otherwise, as for an unknown session).
fn session_of(
    req: &RequestHeader,
    key: &[u8; 32],
    who: &str,
    server: &McpServer,
) -> Result<(Option<String>, bool), Refused> {
    let Some(id) = presented_session(req) else {
        return Ok((None, false));
    };
    match unwrap_session(key, who, &server.name, &id) {
        Some((upstream, elicits)) => Ok((Some(upstream), elicits)),
        None => Err(Refused::new(
            404,
            -32600,
            "unknown session (or not yours): initialize again",
        )),
    }
}

/// The client's principal under the server's policy; a JWT must name this resource.
async fn authenticate(
    req: &RequestHeader,
    server: &McpServer,
    snap: &Snapshot,
) -> Result<Arc<Principal>, GatewayError> {
    let authed = auth::authenticate((&req.headers, None), &server.access, snap, unix_now()).await?;
    if authed.principal.kind == CredentialKind::Jwt
        && !auth::names_audience(&authed.principal.claims["aud"], &server.resource)
    {
        return Err(GatewayError::InvalidCredential(
            crate::error::AuthFailure::WrongAudience,
        ));
    }
    Ok(authed.principal)
}

/// The upstream credential by the server's `auth`.
pub(super) async fn credential(
    server: &McpServer,
    snap: &Snapshot,
    vault: &Vault,
    principal: &Principal,
    req: &RequestHeader,
) -> Result<Option<Arc<str>>, Failure> {
    match server.auth {
        McpAuth::None => Ok(None),
        McpAuth::Secret => vault
            .service_token(&server.name, snap.revision)
            .await
            .map(Some),
        McpAuth::OauthProvider => {
            let provider = server.oauth_provider.as_deref().unwrap_or_default();
            let subject = super::steps::presented_credential(req, None);
            super::oauth::user_token(vault, snap, principal, provider, subject.as_deref())
                .await
                .map(Some)
        }
    }
}

/// 401 pointing at the protected-resource metadata (RFC 9728), 403 `insufficient_scope`.
async fn refuse_auth(
    session: &mut Session,
    server: &McpServer,
    e: GatewayError,
    request_id: &str,
) -> u16 {
    METRICS.rejected.with_label_values(&[e.reason()]).inc();
    let scope = if server.access.scopes.is_empty() {
        String::new()
    } else {
        format!(", scope=\"{}\"", server.access.scopes.join(" "))
    };
    let metadata = &server.metadata_url;
    let (status, challenge) = match e.status() {
        403 if matches!(
            e,
            GatewayError::Forbidden(crate::error::Forbidden::MissingScope)
        ) =>
        {
            (
                403,
                format!(
                    "Bearer error=\"insufficient_scope\"{scope}, resource_metadata=\"{metadata}\""
                ),
            )
        }
        403 => (403, String::new()),
        400 => (400, String::new()),
        _ => {
            let error = match e {
                GatewayError::MissingCredential => String::new(),
                _ => ", error=\"invalid_token\"".to_owned(),
            };
            (
                401,
                format!("Bearer resource_metadata=\"{metadata}\"{scope}{error}"),
            )
        }
    };
    // The refusal's reason, named as on every other entry point.
    let mut headers = vec![("x-sluice-error", e.reason().to_owned())];
    if !challenge.is_empty() {
        headers.push(("www-authenticate", challenge));
    }
    let body = rpc_error(Value::Null, -32001, &e.to_string(), None);
    write(session, status, body, &headers, request_id).await
}

async fn unavailable(session: &mut Session, f: &Failure, request_id: &str) -> u16 {
    let body = rpc_error(Value::Null, -32603, &f.to_string(), None);
    write(session, 503, body, &[], request_id).await
}

/// The user has no usable grant: each JSON-RPC request in the body gets the link to connect —
/// a URL-elicitation error when the client can take one, otherwise a tool result with
/// `isError` for `tools/call` (the model sees it and can tell the user) and an error for the rest.
/// `elicits`: the session declared URL elicitation; `link_to_model`: the server lets the link
/// into `tools/call` results (which enter the model's context).
async fn connect_first(
    session: &mut Session,
    f: &Failure,
    (elicits, link_to_model): (bool, bool),
    request_id: &str,
) -> u16 {
    METRICS.rejected.with_label_values(&[f.reason()]).inc();
    let url = f.connect_url().unwrap_or_default().to_owned();
    let body = read_body(session).await.unwrap_or_default();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (batch, items) = match parsed {
        Value::Array(items) => (true, items),
        other => (false, vec![other]),
    };
    let mut answers = Vec::new();
    for item in &items {
        let (Some(id), Some(method)) = (item.get("id"), item["method"].as_str()) else {
            continue;
        };
        let declared = elicits || declares_url_elicitation(item);
        let message = format!("{f} (then retry)");
        answers.push(if declared {
            let elicitation = json!({"mode": "url", "elicitationId": request_id, "url": url, "message": message});
            rpc_error(id.clone(), URL_ELICITATION_REQUIRED, &message, Some(json!({"elicitations": [elicitation]})))
        } else if method == "tools/call" {
            let text = if link_to_model {
                format!("Authorization needed: open {url} to connect your account, then call this tool again.")
            } else {
                format!(
                    "Authorization needed: the user's account at `{}` is not connected. Ask the user to connect it (`sluice oauth connect {}`), then call this tool again.",
                    f.provider().unwrap_or_default(),
                    f.provider().unwrap_or_default()
                )
            };
            json!({"jsonrpc": "2.0", "id": id, "result": {
                "content": [{"type": "text", "text": text}],
                "isError": true,
            }})
        } else if link_to_model || method == "initialize" {
            // `initialize` fails the connection, which the client shows the user, not a model.
            rpc_error(id.clone(), AUTHORIZATION_REQUIRED, &message, Some(json!({"connect_url": url})))
        } else {
            // Other answers (a resource, a prompt) may reach the model like a tool result.
            let provider = f.provider().unwrap_or_default();
            let message = format!("the user's account at `{provider}` is not connected: ask the user to connect it (`sluice oauth connect {provider}`), then retry");
            rpc_error(id.clone(), AUTHORIZATION_REQUIRED, &message, None)
        });
    }
    if answers.is_empty() {
        // Notifications or responses only: nothing to answer, and nothing went upstream.
        let body = rpc_error(
            Value::Null,
            AUTHORIZATION_REQUIRED,
            &f.to_string(),
            Some(json!({"connect_url": url})),
        );
        return write(session, 401, body, &[], request_id).await;
    }
    let body = if batch {
        Value::Array(answers)
    } else {
        answers.remove(0)
    };
    write(session, 200, body, &[], request_id).await
}

/// `initialize` params that declare URL-mode elicitation (`capabilities.elicitation.url`).
fn declares_url_elicitation(item: &Value) -> bool {
    item["method"] == "initialize"
        && item["params"]["capabilities"]["elicitation"]["url"].is_object()
}

/// The peer of an MCP server, with its own timeouts: a tool may run for minutes and a GET
/// stream idle for hours.
pub(super) async fn peer(
    server: &crate::config::McpServer,
    retries: usize,
) -> pingora::Result<Box<pingora::upstreams::peer::HttpPeer>> {
    let Some(upstream) = &server.upstream else {
        return Err(pingora::Error::explain(
            pingora::ErrorType::InternalError,
            "a group has no upstream of its own",
        ));
    };
    let addr = upstream.addr(retries).await.map_err(|e| {
        pingora::Error::because(pingora::ErrorType::ConnectError, "MCP upstream address", e)
            .into_up()
    })?;
    let mut peer = upstream.peer(addr);
    peer.options.connection_timeout = Some(server.connect_timeout);
    peer.options.total_connection_timeout = Some(server.connect_timeout * 2);
    peer.options.read_timeout = Some(server.idle_timeout);
    peer.options.write_timeout = Some(server.idle_timeout);
    Ok(Box::new(peer))
}

/// Rewrites the request head for the upstream MCP endpoint.
pub fn rewrite(upstream: &mut RequestHeader, mcp: &McpCtx) -> pingora::Result<()> {
    let server = &mcp.server;
    let Some(target_upstream) = &server.upstream else {
        return Err(pingora::Error::explain(
            pingora::ErrorType::InternalError,
            "a group has no upstream of its own",
        ));
    };
    let mut target = if target_upstream.base_path.is_empty() {
        "/".to_owned()
    } else {
        target_upstream.base_path.clone()
    };
    if let Some(q) = upstream.uri.query() {
        target.push('?');
        target.push_str(q);
    }
    let uri = http::Uri::try_from(target).map_err(|e| {
        pingora::Error::because(
            pingora::ErrorType::InvalidHTTPHeader,
            "MCP upstream path",
            e,
        )
    })?;
    upstream.set_uri(uri);
    upstream.insert_header(http::header::HOST, target_upstream.authority.as_str())?;
    super::steps::strip_client_credentials(upstream);
    if mcp.policy.is_some() {
        // Resuming a stream replays its events on the GET stream, which is relayed unfiltered:
        // a list answer cut short on its POST would come back there whole.
        upstream.remove_header("last-event-id");
        // Answers the policy filters must be readable: not compressed.
        upstream.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
    }
    if mcp.body_kept {
        // Sluice read the body (and said `100 Continue` itself): it goes with the head.
        upstream.remove_header(&http::header::EXPECT);
    }
    match &mcp.upstream_session {
        Some(id) => upstream.insert_header(SESSION.clone(), id.as_str())?,
        None => {
            upstream.remove_header(&SESSION);
        }
    }
    if let Some(token) = &mcp.token {
        let mut value = http::HeaderValue::try_from(format!("{}{token}", server.inject_prefix))
            .map_err(|e| {
                pingora::Error::because(pingora::ErrorType::InvalidHTTPHeader, "MCP credential", e)
            })?;
        value.set_sensitive(true);
        upstream.insert_header(server.inject_header.clone(), value)?;
    }
    Ok(())
}

/// The upstream's session id goes to the client bound to this principal; the upstream's own
/// authorization challenge does not (the client authenticates to Sluice, not to it).
pub fn on_response(resp: &mut ResponseHeader, mcp: &McpCtx) -> pingora::Result<()> {
    let issued = resp
        .headers
        .get(&SESSION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(id) = issued {
        let elicits = serde_json::from_slice::<Value>(&mcp.body)
            .ok()
            .is_some_and(|v| match v {
                Value::Array(items) => items.iter().any(declares_url_elicitation),
                one => declares_url_elicitation(&one),
            });
        let wrapped = wrap_session(&mcp.session_key, &mcp.who, &mcp.server.name, &id, elicits);
        resp.insert_header(SESSION.clone(), wrapped)?;
    }
    resp.remove_header(&http::header::WWW_AUTHENTICATE);
    Ok(())
}

/// Keeps the start of the request body (audit, `initialize` capabilities); never holds it back.
/// A body past `MAX_BODY` ends the request (413).
pub fn on_request_body(mcp: &mut McpCtx, chunk: &[u8]) -> pingora::Result<()> {
    if mcp.body_kept {
        return Ok(());
    }
    mcp.keep_for_audit(chunk);
    if mcp.bytes_in > MAX_BODY as u64 {
        return pingora::Error::e_explain(
            pingora::ErrorType::HTTPStatus(413),
            "MCP request body too large",
        );
    }
    Ok(())
}

/// Finds the first JSON-RPC error code in an answer as it streams past (JSON or SSE), without
/// holding the answer: `"error"` `:` `{` `"code"` `:` NUMBER, whitespace allowed, the pattern
/// possibly split across chunks (the last bytes of a chunk are kept for the next).
#[derive(Debug, Default)]
pub struct RpcErrorScan {
    pub code: Option<i64>,
    tail: [u8; RpcErrorScan::KEEP],
    tail_len: usize,
}

impl RpcErrorScan {
    /// Longer than the pattern with its usual whitespace and the longest code.
    const KEEP: usize = 32;

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.code.is_some() {
            return;
        }
        if self.tail_len > 0 {
            // The seam: the end of the last chunk and the start of this one.
            let mut seam = [0u8; 2 * RpcErrorScan::KEEP];
            let head = &chunk[..chunk.len().min(Self::KEEP)];
            seam[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            seam[self.tail_len..self.tail_len + head.len()].copy_from_slice(head);
            self.code = first_code(&seam[..self.tail_len + head.len()]);
        }
        if self.code.is_none() {
            self.code = first_code(chunk);
        }
        let end = &chunk[chunk.len().saturating_sub(Self::KEEP)..];
        self.tail[..end.len()].copy_from_slice(end);
        self.tail_len = end.len();
    }
}

fn first_code(bytes: &[u8]) -> Option<i64> {
    memchr::memmem::find_iter(bytes, b"\"error\"").find_map(|at| error_code(&bytes[at + 7..]))
}

/// The code after `"error"`: `: { "code" : -32601`.
fn error_code(rest: &[u8]) -> Option<i64> {
    fn skip(s: &[u8]) -> &[u8] {
        let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
        &s[n..]
    }
    let rest = skip(rest).strip_prefix(b":")?;
    let rest = skip(rest).strip_prefix(b"{")?;
    let rest = skip(rest).strip_prefix(b"\"code\"")?;
    let rest = skip(skip(rest).strip_prefix(b":")?);
    let len = rest
        .iter()
        .enumerate()
        .take_while(|(i, b)| b.is_ascii_digit() || (*i == 0 && **b == b'-'))
        .count();
    // A number cut by the end of the chunk is not taken (the tail brings it back whole).
    if len == rest.len() {
        return None;
    }
    std::str::from_utf8(&rest[..len]).ok()?.parse().ok()
}

/// A JSON-RPC error answer when proxying failed (upstream down: 502; body too large: 413).
pub async fn write_rpc_error(session: &mut Session, status: u16, message: &str, request_id: &str) {
    write(
        session,
        status,
        rpc_failure(status, message),
        &[],
        request_id,
    )
    .await;
}

/// The body of `write_rpc_error`, for answers written outside a Pingora session.
pub fn rpc_error_body(status: u16, message: &str) -> String {
    rpc_failure(status, message).to_string()
}

fn rpc_failure(status: u16, message: &str) -> Value {
    let code = if status == 413 { -32600 } else { -32603 };
    rpc_error(Value::Null, code, message, None)
}

type HmacSha256 = Hmac<sha2::Sha256>;

fn session_tag(key: &[u8; 32], who: &str, server: &str, id: &str, flag: char) -> String {
    use base64::Engine;
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return String::new();
    };
    for part in [who, server, id] {
        mac.update(part.as_bytes());
        mac.update(b"\0");
    }
    mac.update(&[flag as u8]);
    let tag = mac.finalize().into_bytes();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag[..16])
}

pub fn wrap_session(key: &[u8; 32], who: &str, server: &str, id: &str, elicits: bool) -> String {
    let flag = if elicits { 'u' } else { 'n' };
    format!("{id}.{flag}{}", session_tag(key, who, server, id, flag))
}

/// The upstream id and the URL-elicitation flag of a session id this principal was given.
pub fn unwrap_session(
    key: &[u8; 32],
    who: &str,
    server: &str,
    presented: &str,
) -> Option<(String, bool)> {
    let (id, rest) = presented.rsplit_once('.')?;
    let mut chars = rest.chars();
    let flag = chars.next().filter(|f| matches!(f, 'u' | 'n'))?;
    let want = session_tag(key, who, server, id, flag);
    let ok: bool = subtle::ConstantTimeEq::ct_eq(chars.as_str().as_bytes(), want.as_bytes()).into();
    ok.then(|| (id.to_owned(), flag == 'u'))
}

fn presented_session(req: &RequestHeader) -> Option<String> {
    req.headers
        .get(&SESSION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub(super) fn rpc_error(id: Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(d) = data {
        error["data"] = d;
    }
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

pub(super) async fn read_body(session: &mut Session) -> Option<Vec<u8>> {
    super::respond::read_body(session, MAX_BODY).await.ok()
}

/// A JSON answer (a JSON-RPC error, a metadata document).
pub(super) async fn write(
    session: &mut Session,
    status: u16,
    body: Value,
    headers: &[(&'static str, String)],
    request_id: &str,
) -> u16 {
    let page = Page {
        status,
        content_type: "application/json",
        body: body.to_string(),
        headers: headers.to_vec(),
    };
    write_page(session, page, request_id).await
}

/// The JSON-RPC method of a request body for metrics (a fixed set) and the tool called.
pub fn method_and_tool(body: &[u8]) -> (&'static str, Option<String>) {
    const KNOWN: &[&str] = &[
        "initialize",
        "notifications/initialized",
        "ping",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "notifications/cancelled",
    ];
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(_)) => ("batch", None),
        Ok(v) => {
            let method = v["method"].as_str().unwrap_or("");
            let known = KNOWN.iter().find(|m| **m == method).copied();
            let tool = (method == "tools/call")
                .then(|| {
                    v["params"]["name"]
                        .as_str()
                        .map(|t| t.chars().take(128).collect())
                })
                .flatten();
            (
                known.unwrap_or(if method.is_empty() {
                    "response"
                } else {
                    "other"
                }),
                tool,
            )
        }
        Err(_) => ("unparsed", None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_bound_to_their_principal_and_server() {
        let key = [7u8; 32];
        let id = wrap_session(&key, "owner:alice", "tools", "abc-123", true);
        assert_eq!(
            unwrap_session(&key, "owner:alice", "tools", &id),
            Some(("abc-123".to_owned(), true))
        );
        assert_eq!(unwrap_session(&key, "owner:bob", "tools", &id), None);
        assert_eq!(unwrap_session(&key, "owner:alice", "other", &id), None);
        assert_eq!(
            unwrap_session(&[8u8; 32], "owner:alice", "tools", &id),
            None
        );
        // The flag is under the tag: flipping it does not pass.
        let flipped = id.replace(".u", ".n");
        assert_eq!(unwrap_session(&key, "owner:alice", "tools", &flipped), None);
        assert_eq!(
            unwrap_session(&key, "owner:alice", "tools", "abc-123"),
            None
        );
    }

    #[test]
    fn json_rpc_error_codes_are_found_across_chunks() {
        let answer = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"error\": { \"code\" : -32601, \"message\":\"Method not found\"}}\n\n";
        for cut in 0..answer.len() {
            let mut scan = RpcErrorScan::default();
            scan.feed(&answer[..cut]);
            scan.feed(&answer[cut..]);
            assert_eq!(scan.code, Some(-32601), "cut at {cut}");
        }
        let mut scan = RpcErrorScan::default();
        scan.feed(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"error"}],"isError":true}}"#);
        assert_eq!(
            scan.code, None,
            "a tool's own failure is a result, not a JSON-RPC error"
        );
    }

    #[test]
    fn methods_are_a_bounded_set() {
        let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
        assert_eq!(method_and_tool(call), ("tools/call", Some("echo".into())));
        assert_eq!(method_and_tool(br#"{"method":"x/custom"}"#).0, "other");
        assert_eq!(method_and_tool(b"[1]").0, "batch");
        assert_eq!(method_and_tool(b"{nope").0, "unparsed");
        let init = json!({"method": "initialize", "params": {"capabilities": {"elicitation": {"url": {}}}}});
        assert!(declares_url_elicitation(&init));
        assert!(!declares_url_elicitation(
            &json!({"method": "initialize", "params": {"capabilities": {"elicitation": {}}}})
        ));
    }
}
