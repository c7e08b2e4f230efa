//! MCP groups: `/mcp/{group}` is one endpoint federating several MCP servers (`members`), each
//! reached with its own upstream auth (the person's grant, a service secret, none). Sluice is
//! the MCP server the client talks to and an MCP client of each member:
//!
//! - `initialize` goes to every member; the group's session (handed out HMAC-tagged to the
//!   principal, as any session) holds each member's session id. A member that does not answer
//!   (down, or its account not connected) is left out: the group does not fail with it.
//! - `tools/list` and `prompts/list` are every answering member's, named `{member}__{name}`,
//!   each member's own policy and then the group's applied; a member down is missing.
//! - `tools/call` and `prompts/get` go to the member the name says, with the name it knows;
//!   its answer (JSON, or SSE with its progress notifications) is relayed as it comes.
//! - `ping` is answered here; notifications go to every member; `DELETE` ends every member's
//!   session; the GET stream merges every member's. A member's own requests to the client
//!   (elicitation, sampling) carry an id naming the member, so the client's answer goes back
//!   to it alone. Resources are not federated (their URIs are the members' own).

use bytes::Bytes;
use futures_util::future::join_all;
use pingora::http::ResponseHeader;
use pingora_proxy::Session;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

mod member;

use super::mcp::{rpc_error, wrap_session, write};
use crate::auth::Principal;
use crate::config::mcp_server::policy::Kind;
use crate::config::{McpServer, Snapshot};
use crate::vault::Vault;
use member::{
    fan_out, final_message, forward_events, incoming_answer, is_sse, outgoing_event, send, Events,
    Member,
};

/// Between a member's name and its tool's or prompt's.
pub const SEPARATOR: &str = "__";
/// What one group list may read from all its members together (pages included).
const LIST_BUDGET: usize = 16 * 1024 * 1024;
/// List pages followed per member.
const MAX_PAGES: usize = 20;
/// An admitted request to a group.
pub struct Call<'a> {
    pub group: Arc<McpServer>,
    pub principal: Arc<Principal>,
    /// The principal's key (what sessions bind to).
    pub who: String,
    pub session_key: [u8; 32],
    /// The group session's payload (each member's session id), when one was presented.
    pub sessions: Option<String>,
    pub elicits: bool,
    pub request_id: &'a str,
    /// The client's address (limits naming a member count its calls through the group).
    pub source: Option<std::net::IpAddr>,
}

/// Answers a request to a group; returns the status written.
pub async fn serve(session: &mut Session, snap: &Snapshot, vault: &Vault, call: Call<'_>) -> u16 {
    let method = session.req_header().method.clone();
    let protocol = session
        .req_header()
        .headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let sessions: BTreeMap<String, String> = call
        .sessions
        .as_deref()
        .and_then(decode_sessions)
        .unwrap_or_default();
    let reached = members(snap, vault, &call, &sessions, session).await;
    let members = &reached.members;
    let id = call.request_id;
    match method.as_str() {
        "DELETE" => {
            let ends = members.iter().filter(|m| m.session.is_some());
            join_all(ends.map(|m| {
                let sent = send(m, reqwest::Method::DELETE, None, protocol.as_deref());
                tokio::time::timeout(fan_out(m), sent)
            }))
            .await;
            write(session, 200, json!({}), &[], id).await
        }
        "POST" => post(session, (&call, snap), &reached, protocol.as_deref()).await,
        _ => stream(session, members, protocol.as_deref(), id).await,
    }
}

/// The group's server-to-client stream: every member's GET stream merged, event by event
/// (their event ids dropped: a merged stream is not resumable). Ends when the client goes or
/// every member's stream has ended; 405 when no member offers one.
async fn stream(
    session: &mut Session,
    members: &[Member],
    protocol: Option<&str>,
    id: &str,
) -> u16 {
    let opened = join_all(
        members
            .iter()
            .filter(|m| m.session.is_some())
            .map(|m| async move {
                match send(m, reqwest::Method::GET, None, protocol).await {
                    Ok(resp) if resp.status().is_success() && is_sse(&resp) => {
                        Some((m.server.name.clone(), resp))
                    }
                    _ => None,
                }
            }),
    )
    .await;
    let streams: Vec<(String, reqwest::Response)> = opened.into_iter().flatten().collect();
    if streams.is_empty() {
        let body = rpc_error(
            Value::Null,
            -32600,
            "no member of this group offers a server-to-client stream",
            None,
        );
        return write(
            session,
            405,
            body,
            &[("allow", "POST, DELETE".to_owned())],
            id,
        )
        .await;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    for (member, resp) in streams {
        tokio::spawn(forward_events(resp, member, tx.clone()));
    }
    drop(tx);
    let result = async {
        let mut head = ResponseHeader::build(200, Some(3))?;
        head.insert_header(http::header::CONTENT_TYPE, "text/event-stream")?;
        head.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        head.insert_header("x-request-id", id)?;
        session.write_response_header(Box::new(head), false).await?;
        while let Some(event) = rx.recv().await {
            session.write_response_body(Some(event), false).await?;
        }
        session.write_response_body(Some(Bytes::new()), true).await
    }
    .await;
    if let Err(e) = result {
        log::debug!("group: the merged stream ended: {e}");
    }
    200
}

/// Each enabled member with its upstream credential for this principal (a member whose
/// credential cannot be had now, e.g. an account not connected, is left out) and session.
async fn members(
    snap: &Snapshot,
    vault: &Vault,
    call: &Call<'_>,
    sessions: &BTreeMap<String, String>,
    session: &Session,
) -> Reached {
    let mut reached = Reached::default();
    for name in &call.group.members {
        let Some(server) = snap.mcp_servers.get(name).filter(|s| s.enabled) else {
            continue;
        };
        if !admitted(&call.principal, (&call.group, server), snap) {
            let why = "is not open to you (its own client auth, scopes or sign-in audiences)";
            reached.left_out.push((name.clone(), why.to_owned()));
            continue;
        }
        let req = session.req_header();
        match super::mcp::credential(server, snap, vault, &call.principal, req).await {
            Ok(token) => reached.members.push(Member {
                server: server.clone(),
                token,
                session: sessions.get(name).cloned(),
            }),
            Err(f) => {
                log::info!("group {}: member {name} left out: {f}", call.group.name);
                let why = match f.provider() {
                    Some(p) => format!(
                        "needs your account at `{p}` connected first (`sluice oauth connect {p}`)"
                    ),
                    None => "cannot be reached for you now".to_owned(),
                };
                reached.left_out.push((name.clone(), why));
            }
        }
    }
    reached
}

/// The members a request reaches, and why the others are left out.
#[derive(Default)]
struct Reached {
    members: Vec<Member>,
    left_out: Vec<(String, String)>,
}

/// Whether this principal could reach `member` directly: its own client auth, issuers, claims
/// and scopes (the group's audience standing in for the member's: the token was checked for
/// the group), and for a person signed in through Sluice, the member open to sign-in too.
fn admitted(
    principal: &Principal,
    (group, member): (&McpServer, &McpServer),
    snap: &Snapshot,
) -> bool {
    use crate::auth::{AuthPolicy, CredentialKind};
    if principal.kind == CredentialKind::Anonymous && member.access.auth != AuthPolicy::None {
        return false;
    }
    let signed_in_here = principal.audience_bound && principal.app().is_none();
    let open = snap
        .sign_in
        .as_ref()
        .is_some_and(|s| s.audiences.contains(&member.resource));
    if signed_in_here && !open {
        return false;
    }
    let access = crate::auth::Access {
        app_audience: Some(group.resource.clone()),
        ..member.access.clone()
    };
    crate::auth::authorize(principal, &access).is_ok()
}

async fn post(
    session: &mut Session,
    (call, snap): (&Call<'_>, &Snapshot),
    reached: &Reached,
    protocol: Option<&str>,
) -> u16 {
    let members = &reached.members[..];
    let id = call.request_id;
    let msg = match read_message(session).await {
        Ok(msg) => msg,
        Err(e) => return write(session, 400, e, &[], id).await,
    };
    let (Some(rpc_id), Some(method)) = (
        msg.get("id").cloned(),
        msg["method"].as_str().map(str::to_owned),
    ) else {
        // A notification, or the client's answer to a member's request: passed on.
        pass_on(members, &msg, protocol).await;
        return accepted(session, id).await;
    };
    match method.as_str() {
        "initialize" => initialize(session, call, members, &msg).await,
        "ping" => {
            write(
                session,
                200,
                json!({"jsonrpc": "2.0", "id": rpc_id, "result": {}}),
                &[],
                id,
            )
            .await
        }
        "tools/list" => list(session, call, members, (&msg, Kind::Tool), protocol).await,
        "prompts/list" => list(session, call, members, (&msg, Kind::Prompt), protocol).await,
        "tools/call" => route(session, (call, snap), reached, (&msg, Kind::Tool), protocol).await,
        "prompts/get" => {
            route(
                session,
                (call, snap),
                reached,
                (&msg, Kind::Prompt),
                protocol,
            )
            .await
        }
        other => {
            let text = format!("`{other}` is not offered by a group (tools and prompts are)");
            write(
                session,
                200,
                rpc_error(rpc_id, -32601, &text, None),
                &[],
                id,
            )
            .await
        }
    }
}

/// The one JSON-RPC message a POST to a group carries, or the JSON-RPC error answering it.
async fn read_message(session: &mut Session) -> Result<Value, Value> {
    let refuse = |code, message| rpc_error(Value::Null, code, message, None);
    let body = super::mcp::read_body(session)
        .await
        .ok_or_else(|| refuse(-32700, "the body could not be read"))?;
    match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(refuse(
            -32600,
            "a group takes one JSON-RPC message per request, not a batch",
        )),
        Err(_) => Err(refuse(-32700, "the body is not JSON")),
    }
}

/// A message nobody answers: a notification goes to every member; the client's answer to a
/// member's request (elicitation, sampling) to that member alone, with its own id (see
/// `outgoing_event`); anything else is dropped.
async fn pass_on(members: &[Member], msg: &Value, protocol: Option<&str>) {
    if msg.get("id").is_none() {
        let sends = members.iter().filter(|m| m.session.is_some());
        join_all(sends.map(|m| {
            tokio::time::timeout(
                fan_out(m),
                send(m, reqwest::Method::POST, Some(msg), protocol),
            )
        }))
        .await;
        return;
    }
    let Some((name, answer)) = incoming_answer(msg) else {
        return;
    };
    if let Some(m) = members.iter().find(|m| m.server.name == name) {
        let sent = send(m, reqwest::Method::POST, Some(&answer), protocol);
        let _ = tokio::time::timeout(fan_out(m), sent).await;
    }
}

/// `initialize` to every member at once; the answering ones' sessions make the group's.
async fn initialize(
    session: &mut Session,
    call: &Call<'_>,
    members: &[Member],
    msg: &Value,
) -> u16 {
    let answers = join_all(members.iter().map(|m| async move {
        let answer = tokio::time::timeout(fan_out(m), final_message(m, msg, None))
            .await
            .unwrap_or_else(|_| Err("did not answer in time".into()));
        (m, answer)
    }))
    .await;
    let mut sessions = BTreeMap::new();
    let mut protocol = None;
    let (mut tools, mut prompts, mut logging) = (false, false, false);
    let mut instructions = Vec::new();
    for (m, answer) in answers {
        let Ok((sid, reply, _)) = answer else {
            continue;
        };
        let result = &reply["result"];
        if result.is_null() {
            continue;
        }
        // A member without sessions is in the group all the same (an empty id).
        sessions.insert(m.server.name.clone(), sid.unwrap_or_default());
        protocol = protocol.or_else(|| result["protocolVersion"].as_str().map(str::to_owned));
        tools |= result["capabilities"]["tools"].is_object();
        prompts |= result["capabilities"]["prompts"].is_object();
        logging |= result["capabilities"]["logging"].is_object();
        if let Some(text) = result["instructions"].as_str() {
            instructions.push(format!("{}: {text}", m.server.name));
        }
    }
    let mut capabilities = Map::new();
    if tools {
        capabilities.insert("tools".into(), json!({}));
    }
    if prompts {
        capabilities.insert("prompts".into(), json!({}));
    }
    if logging {
        capabilities.insert("logging".into(), json!({}));
    }
    let mut result = json!({
        "protocolVersion": protocol.unwrap_or_else(|| msg["params"]["protocolVersion"].as_str().unwrap_or("2025-06-18").to_owned()),
        "capabilities": capabilities,
        "serverInfo": {"name": format!("{} (a Sluice group)", call.group.display_name), "version": env!("CARGO_PKG_VERSION")},
    });
    if !instructions.is_empty() {
        result["instructions"] = instructions.join("\n").into();
    }
    let payload = encode_sessions(&sessions);
    let elicits = call.elicits || msg["params"]["capabilities"]["elicitation"]["url"].is_object();
    let wrapped = wrap_session(
        &call.session_key,
        &call.who,
        &call.group.name,
        &payload,
        elicits,
    );
    let body = json!({"jsonrpc": "2.0", "id": msg["id"], "result": result});
    write(
        session,
        200,
        body,
        &[("mcp-session-id", wrapped)],
        call.request_id,
    )
    .await
}

/// A list of every answering member's tools or prompts, namespaced and filtered by policy.
async fn list(
    session: &mut Session,
    call: &Call<'_>,
    members: &[Member],
    (msg, kind): (&Value, Kind),
    protocol: Option<&str>,
) -> u16 {
    let field = if kind == Kind::Tool {
        "tools"
    } else {
        "prompts"
    };
    let group_policy = call
        .group
        .policy
        .as_ref()
        .map(|p| p.applied(&call.principal));
    let budget = std::sync::atomic::AtomicUsize::new(LIST_BUDGET);
    let budget = &budget;
    let pages = join_all(
        members
            .iter()
            .filter(|m| m.session.is_some())
            .map(|m| async move {
                let found =
                    tokio::time::timeout(fan_out(m), all_pages(m, msg, (field, budget), protocol))
                        .await
                        .unwrap_or_default();
                (m, found)
            }),
    )
    .await;
    let mut items = Vec::new();
    for (m, found) in pages {
        let own = m.server.policy.as_ref().map(|p| p.applied(&call.principal));
        for mut item in found {
            let Some(name) = item["name"].as_str().map(str::to_owned) else {
                continue;
            };
            let namespaced = format!("{}{SEPARATOR}{name}", m.server.name);
            let allowed = own.as_ref().is_none_or(|p| p.permits(kind, &name))
                && group_policy
                    .as_ref()
                    .is_none_or(|p| p.permits(kind, &namespaced));
            if allowed {
                item["name"] = namespaced.into();
                items.push(item);
            }
        }
    }
    let body = json!({"jsonrpc": "2.0", "id": msg["id"], "result": {field: items}});
    write(session, 200, body, &[], call.request_id).await
}

/// Every page of a member's list (at most [`MAX_PAGES`]); nothing when it does not answer.
/// Every page of a member's list (at most [`MAX_PAGES`], a cursor seen twice ends it), each
/// taken out of `budget` (bytes, shared by every member of the request): nothing more once it
/// is spent. Nothing when the member does not answer.
async fn all_pages(
    m: &Member,
    msg: &Value,
    (field, budget): (&str, &std::sync::atomic::AtomicUsize),
    protocol: Option<&str>,
) -> Vec<Value> {
    use std::sync::atomic::Ordering;
    let mut items = Vec::new();
    let mut request = msg.clone();
    let mut cursors = std::collections::HashSet::new();
    for _ in 0..MAX_PAGES {
        let Ok((_, reply, size)) = final_message(m, &request, protocol).await else {
            break;
        };
        let spent = budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(size)
        });
        if spent.is_err() {
            log::info!("group: the list answers passed {LIST_BUDGET} bytes; the rest is left out");
            budget.store(0, Ordering::Relaxed);
            break;
        }
        let result = &reply["result"];
        items.extend(result[field].as_array().cloned().unwrap_or_default());
        match result["nextCursor"].as_str() {
            Some(cursor) if cursors.insert(cursor.to_owned()) => {
                request["params"] = json!({ "cursor": cursor })
            }
            _ => break,
        }
    }
    items
}

/// A call to the member the name says, under both policies; its answer relayed as it comes.
async fn route(
    session: &mut Session,
    (call, snap): (&Call<'_>, &Snapshot),
    reached: &Reached,
    (msg, kind): (&Value, Kind),
    protocol: Option<&str>,
) -> u16 {
    let id = call.request_id;
    let rpc_id = msg["id"].clone();
    let name = msg["params"]["name"].as_str().unwrap_or_default();
    let (member, inner) = match target(call, reached, kind, name) {
        Ok(found) => found,
        Err((code, message)) => {
            let data = json!({"kind": kind.noun(), "name": name, "server": call.group.name});
            let e = rpc_error(rpc_id, code, &message, Some(data));
            return write(session, 200, e, &[], id).await;
        }
    };
    // The member's own limits count its calls through the group.
    let taken = super::mcp_caps::take(
        session,
        snap,
        &member.server,
        &call.principal,
        (&call.who, call.source),
    )
    .await;
    let _grant = match taken {
        Ok(grant) => grant,
        Err(refused) => {
            let (status, e) = refused.rpc(rpc_id);
            return write(session, status, e, &refused.headers, id).await;
        }
    };
    let mut forwarded = msg.clone();
    forwarded["params"]["name"] = inner.into();
    let failed = match send(member, reqwest::Method::POST, Some(&forwarded), protocol).await {
        Ok(resp) if resp.status().is_success() => {
            return relay(session, (&member.server.name, resp), id).await
        }
        Ok(resp) => format!("answered {}", resp.status()),
        Err(e) => {
            // Where it is (its URL) stays in the log.
            log::info!(
                "group {}: member {} unreachable: {e}",
                call.group.name,
                member.server.name
            );
            "could not be reached".to_owned()
        }
    };
    let message = format!("member `{}` {failed}", member.server.name);
    let data = json!({"kind": kind.noun(), "name": name, "server": call.group.name});
    let e = rpc_error(rpc_id, -32603, &message, Some(data));
    write(session, 200, e, &[], id).await
}

/// The member a namespaced name calls, and the name it knows, when both policies allow it;
/// otherwise the JSON-RPC error code and message.
fn target<'m>(
    call: &Call<'_>,
    reached: &'m Reached,
    kind: Kind,
    name: &'m str,
) -> Result<(&'m Member, &'m str), (i64, String)> {
    let members = &reached.members;
    let (member_name, inner) = name.split_once(SEPARATOR).ok_or_else(|| {
        (
            -32602,
            format!("`{name}` names no member (`member{SEPARATOR}name`)"),
        )
    })?;
    let Some(member) = members.iter().find(|m| m.server.name == member_name) else {
        let why = reached
            .left_out
            .iter()
            .find(|(n, _)| n == member_name)
            .map_or("is not available now", |(_, why)| why.as_str());
        return Err((-32603, format!("member `{member_name}` {why}")));
    };
    let permits = |server: &McpServer, n: &str| {
        server
            .policy
            .as_ref()
            .is_none_or(|p| p.applied(&call.principal).permits(kind, n))
    };
    if !permits(&call.group, name) || !permits(&member.server, inner) {
        return Err((
            -32003,
            format!("{} `{name}` is not allowed for you here", kind.noun()),
        ));
    }
    Ok((member, inner))
}

/// The member's answer as it comes: JSON whole, SSE event by event (its progress too).
async fn relay(
    session: &mut Session,
    (member, mut resp): (&str, reqwest::Response),
    request_id: &str,
) -> u16 {
    let sse = is_sse(&resp);
    let mut events = Events::default();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let status = resp.status().as_u16();
    let result = async {
        let mut head = ResponseHeader::build(status, Some(4))?;
        head.insert_header(http::header::CONTENT_TYPE, content_type)?;
        head.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        head.insert_header("x-request-id", request_id)?;
        session.write_response_header(Box::new(head), false).await?;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) if sse => {
                    for event in events.push(&chunk) {
                        if let Some(out) = outgoing_event(&event, member) {
                            session.write_response_body(Some(out), false).await?;
                        }
                    }
                }
                Ok(Some(chunk)) => session.write_response_body(Some(chunk), false).await?,
                Ok(None) => break,
                Err(e) => {
                    log::info!("group: a member's answer broke off: {e}");
                    break;
                }
            }
        }
        session.write_response_body(Some(Bytes::new()), true).await
    }
    .await;
    if let Err(e) = result {
        log::debug!("group: the answer was not written whole: {e}");
    }
    status
}

async fn accepted(session: &mut Session, request_id: &str) -> u16 {
    let result = async {
        let mut head = ResponseHeader::build(202, Some(2))?;
        head.insert_header(http::header::CONTENT_LENGTH, "0")?;
        head.insert_header("x-request-id", request_id)?;
        session.write_response_header(Box::new(head), true).await
    }
    .await;
    if let Err(e) = result {
        log::debug!("group: 202 not written: {e}");
    }
    202
}

/// The group session's payload: each member's session id, as base64url JSON.
fn encode_sessions(sessions: &BTreeMap<String, String>) -> String {
    use base64::Engine;
    let json = serde_json::to_string(sessions).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_sessions(payload: &str) -> Option<BTreeMap<String, String>> {
    use base64::Engine;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_sessions_carry_the_members_ids() {
        let sessions: BTreeMap<String, String> = [("a".to_owned(), "s1".to_owned())].into();
        assert_eq!(decode_sessions(&encode_sessions(&sessions)), Some(sessions));
    }
}
