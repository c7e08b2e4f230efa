//! An MCP server's per-tool policy at work (`config::mcp_server::policy`): a POST's JSON-RPC
//! body is read whole before anything goes upstream (the session keeps it and sends it as it
//! came); a call of a tool, resource or prompt the principal may not use is answered here with
//! a JSON-RPC error naming it, and the answers to list requests are filtered as they pass
//! (JSON whole, SSE event by event).
//!
//! Fail closed: with a policy, a body that does not parse as JSON (which a lenient upstream
//! might still read: `NaN`, comments) is refused, and so is a call whose name is not a string.

use bytes::{Bytes, BytesMut};
use pingora_proxy::Session;
use serde_json::{json, Value};

use super::mcp::{self, McpCtx};
use crate::config::mcp_server::policy::{Applied, Kind};

/// JSON-RPC (server-defined range): the gateway's policy refuses this call.
pub const POLICY_REFUSED: i64 = -32003;
/// JSON-RPC: parse error.
const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: invalid request.
const INVALID_REQUEST: i64 = -32600;
/// Largest list answer filtered whole (JSON) or one SSE event; past it the answer is cut
/// (nothing unfiltered reaches the client).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// What one request item uses, by method: the kind and where its name is.
fn used(method: &str) -> Option<(Kind, &'static str)> {
    Some(match method {
        "tools/call" => (Kind::Tool, "name"),
        "prompts/get" => (Kind::Prompt, "name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            (Kind::Resource, "uri")
        }
        _ => return None,
    })
}

/// What a list request lists: the kind, the result's array and each item's name field.
fn listed(method: &str) -> Option<List> {
    Some(match method {
        "tools/list" => (Kind::Tool, "tools", "name"),
        "prompts/list" => (Kind::Prompt, "prompts", "name"),
        "resources/list" => (Kind::Resource, "resources", "uri"),
        "resources/templates/list" => (Kind::Resource, "resourceTemplates", "uriTemplate"),
        _ => return None,
    })
}

type List = (Kind, &'static str, &'static str);

/// The name a request item uses and is refused, if it is: `completion/complete` names a prompt
/// or a resource in `params.ref`.
fn refusal(policy: &Applied, item: &Value) -> Option<(Kind, String)> {
    let method = item["method"].as_str()?;
    let (kind, name) = match used(method) {
        Some((kind, field)) => (kind, item["params"].get(field)),
        None if method == "completion/complete" => {
            let r = &item["params"]["ref"];
            match r["type"].as_str() {
                Some("ref/prompt") => (Kind::Prompt, r.get("name")),
                Some("ref/resource") => (Kind::Resource, r.get("uri")),
                _ => return None,
            }
        }
        None => return None,
    };
    match name.and_then(Value::as_str) {
        Some(n) if policy.permits(kind, n) => None,
        Some(n) => Some((kind, n.chars().take(256).collect())),
        // A call without a readable name is not one the policy can allow.
        None => Some((kind, String::new())),
    }
}

/// Checks a POST's JSON-RPC body against the policy before it goes upstream. `Some(status)`:
/// answered here (refused, unreadable, too large); `None`: on its way, with its list requests
/// noted for filtering.
pub async fn enforce(session: &mut Session, m: &mut McpCtx, request_id: &str) -> Option<u16> {
    let policy = m.policy.clone()?;
    if session.req_header().method != http::Method::POST {
        return None;
    }
    let checked = check(session, m, policy).await;
    m.decision = Some(match checked {
        Ok(None) => "allowed",
        Ok(Some(_)) | Err(_) => "refused",
    });
    match checked {
        Ok(None) => None,
        Ok(Some(answer)) => Some(mcp::write(session, 200, answer, &[], request_id).await),
        Err(status) => {
            let message = match status {
                413 => format!("the request body is larger than {} bytes", mcp::MAX_BODY),
                _ => "the request body could not be read".to_owned(),
            };
            mcp::write_rpc_error(session, status, &message, request_id).await;
            Some(status)
        }
    }
}

/// Reads the body whole (kept for upstream and the audit record) and judges it: `Ok(None)` when
/// it may go on (its list requests noted in `m.lists`), `Ok(Some(answer))` when Sluice answers
/// it, `Err(status)` when it could not be read.
async fn check(
    session: &mut Session,
    m: &mut McpCtx,
    policy: Applied,
) -> Result<Option<Value>, u16> {
    let body = super::fallback::keep_body(session, mcp::MAX_BODY, "MCP")
        .await
        .map_err(|e| match e.etype() {
            pingora::ErrorType::HTTPStatus(s) => *s,
            _ => 400,
        })?;
    m.keep_for_audit(&body);
    m.body_kept = true;
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        let answer = mcp::rpc_error(Value::Null, PARSE_ERROR, "the body is not JSON", None);
        return Ok(Some(answer));
    };
    let (batch, items) = match &parsed {
        Value::Array(items) => (true, items.as_slice()),
        one => (false, std::slice::from_ref(one)),
    };
    let refused: Vec<(usize, Kind, String)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| refusal(&policy, item).map(|(k, n)| (i, k, n)))
        .collect();
    if !refused.is_empty() {
        return Ok(Some(refusal_answer(items, &refused, &m.server.name, batch)));
    }
    match pending_lists(items) {
        Err(message) => Ok(Some(mcp::rpc_error(
            Value::Null,
            INVALID_REQUEST,
            message,
            None,
        ))),
        Ok(pending) => {
            if !pending.is_empty() {
                m.lists = Some(Box::new(ListFilter::new(policy, pending)));
            }
            Ok(None)
        }
    }
}

/// The answer to a message or batch holding refused calls (`refused`: their index, kind and
/// name): an error naming each, and for the batch's other requests an error saying they were
/// not run.
fn refusal_answer(
    items: &[Value],
    refused: &[(usize, Kind, String)],
    server: &str,
    batch: bool,
) -> Value {
    let mut answers: Vec<Value> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(id) = item.get("id").filter(|_| item.get("method").is_some()) else {
            continue; // a notification or a response: nothing to answer
        };
        let answer = match refused.iter().find(|(at, _, _)| *at == i) {
            Some((_, kind, name)) => {
                let message = match name.is_empty() {
                    true => format!("a {} call without a name is refused by Sluice's policy for MCP server `{server}`", kind.noun()),
                    false => format!("{} `{name}` is not allowed for you on MCP server `{server}` (Sluice policy)", kind.noun()),
                };
                let data = json!({ "kind": kind.noun(), "name": name, "server": server });
                mcp::rpc_error(id.clone(), POLICY_REFUSED, &message, Some(data))
            }
            None => mcp::rpc_error(
                id.clone(),
                POLICY_REFUSED,
                "not run: the batch holds a call Sluice's policy refuses",
                None,
            ),
        };
        answers.push(answer);
    }
    match (batch, answers.len()) {
        (true, _) => Value::Array(answers),
        (false, 1) => answers.remove(0),
        // A lone refused notification: no id to answer with.
        _ => mcp::rpc_error(
            Value::Null,
            POLICY_REFUSED,
            "refused by Sluice's policy",
            None,
        ),
    }
}

/// The list requests of a message or batch, by the id their answers will carry. Refused (the
/// answers could not be told apart): a list request whose id is not a string or a number, and
/// two requests with one id.
fn pending_lists(items: &[Value]) -> Result<Vec<Pending>, &'static str> {
    let mut seen: Vec<IdKey> = Vec::new();
    let mut pending = Vec::new();
    for item in items {
        let (Some(method), Some(id)) = (item["method"].as_str(), item.get("id")) else {
            continue;
        };
        let key = IdKey::of(id);
        let list = listed(method);
        match (&key, list) {
            (None, Some(_)) => return Err("a list request's id is a string or a number"),
            (Some(k), _) if seen.contains(k) => return Err("two requests share one id"),
            _ => {}
        }
        if let Some(k) = key {
            seen.push(k.clone());
            if let Some(list) = list {
                pending.push(Pending {
                    key: k,
                    id: id.clone(),
                    list,
                });
            }
        }
    }
    Ok(pending)
}

/// A request id as JSON-RPC peers compare it: `1`, `1.0` and `1e0` are one id (a JavaScript
/// upstream answers `1.0` with `1`); a string is never a number.
#[derive(Debug, Clone, PartialEq)]
enum IdKey {
    Num(f64),
    Str(String),
}

impl IdKey {
    fn of(id: &Value) -> Option<IdKey> {
        match id {
            Value::Number(n) => n.as_f64().map(IdKey::Num),
            Value::String(s) => Some(IdKey::Str(s.clone())),
            _ => None,
        }
    }
}

/// A list request waiting for its answer.
#[derive(Debug)]
struct Pending {
    key: IdKey,
    id: Value,
    list: List,
}

/// Filters the answers to list requests as the response passes. Fails closed: an answer it
/// cannot read (compressed, not JSON, cut at `MAX_ANSWER`) never passes; the list requests it
/// would have answered get a JSON-RPC error instead.
#[derive(Debug)]
pub struct ListFilter {
    policy: Applied,
    pending: Vec<Pending>,
    sse: bool,
    /// The answer is compressed: nothing of it can be read.
    opaque: bool,
    /// JSON: the whole answer so far; SSE: the events not yet complete.
    buf: BytesMut,
    /// SSE: where the search for the next event's end resumes.
    scanned: usize,
    /// The stream's first bytes were seen (a byte-order mark there is dropped).
    started: bool,
    /// Something was dropped: pending list requests get an error at the end.
    dropped: bool,
    /// The answer (JSON) or the current event (SSE) outgrew `MAX_ANSWER`: the rest of it is
    /// dropped as it comes.
    cut: bool,
    /// Items hidden so far (for the audit record).
    pub hidden: u32,
}

impl ListFilter {
    fn new(policy: Applied, pending: Vec<Pending>) -> ListFilter {
        ListFilter {
            policy,
            pending,
            sse: false,
            opaque: false,
            buf: BytesMut::new(),
            scanned: 0,
            started: false,
            dropped: false,
            cut: false,
            hidden: 0,
        }
    }

    /// The answer's head: its framing changes (the length is no longer known).
    pub fn on_head(&mut self, resp: &mut pingora::http::ResponseHeader, chunked: bool) {
        let header = |name| {
            resp.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_ascii_lowercase())
        };
        self.sse = header(http::header::CONTENT_TYPE)
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        self.opaque = header(http::header::CONTENT_ENCODING)
            .is_some_and(|e| !e.is_empty() && e != "identity");
        if self.opaque {
            // Replaced by Sluice's own (uncompressed) errors.
            resp.remove_header(&http::header::CONTENT_ENCODING);
        }
        resp.remove_header(&http::header::CONTENT_LENGTH);
        if chunked {
            let _ = resp.insert_header(http::header::TRANSFER_ENCODING, "chunked");
        }
    }

    /// One piece of the answer: what may go on of it now.
    pub fn on_body(&mut self, body: &mut Option<Bytes>, end: bool) {
        if let Some(chunk) = body.take() {
            if !self.opaque && (self.sse || !self.cut) {
                self.buf.extend_from_slice(&chunk);
            }
        }
        if !self.started && self.buf.len() >= 3 {
            self.started = true;
            if self.buf.starts_with(b"\xef\xbb\xbf") {
                let _ = self.buf.split_to(3);
            }
        }
        let mut out = Vec::new();
        if self.opaque {
            self.dropped = true;
        } else if self.sse {
            while let Some((at, len)) = event_end(&self.buf, self.scanned, end) {
                let event = self.buf.split_to(at + len);
                self.scanned = 0;
                if std::mem::take(&mut self.cut) {
                    continue; // the rest of the event cut at `MAX_ANSWER`
                }
                out.extend(self.filter_event(&event[..at], &event[at..]));
            }
            self.scanned = self.buf.len().saturating_sub(4);
            if end && !self.buf.is_empty() {
                let rest = self.buf.split();
                if !self.cut {
                    out.extend(self.filter_event(&rest, b"\n\n"));
                }
            }
        } else if end {
            let whole = self.buf.split();
            match self.filter_json(&whole) {
                Some(Some(filtered)) => out.extend(filtered),
                Some(None) => out.extend_from_slice(&whole),
                None => self.dropped = true,
            }
        }
        if self.buf.len() > MAX_ANSWER {
            self.buf.clear();
            self.scanned = 0;
            self.dropped = true;
            self.cut = true;
        }
        if end && self.dropped && !self.pending.is_empty() {
            out.extend(self.errors_for_pending());
        }
        *body = (!out.is_empty()).then(|| Bytes::from(out));
    }

    /// JSON-RPC errors for the list requests whose answers were dropped.
    fn errors_for_pending(&mut self) -> Vec<u8> {
        let message = "the answer could not be checked against Sluice's policy";
        let errors: Vec<Value> = self
            .pending
            .drain(..)
            .map(|p| mcp::rpc_error(p.id, POLICY_REFUSED, message, None))
            .collect();
        if self.sse {
            let mut out = Vec::new();
            for e in errors {
                out.extend_from_slice(format!("event: message\ndata: {e}\n\n").as_bytes());
            }
            out
        } else if errors.len() == 1 {
            errors[0].to_string().into_bytes()
        } else {
            Value::Array(errors).to_string().into_bytes()
        }
    }

    /// One SSE event (`blank`: the blank line that ended it): passed as it came when it holds no
    /// data or answers no list request, re-written when it does, dropped when its data is not
    /// JSON.
    fn filter_event(&mut self, event: &[u8], blank: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(event);
        let lines: Vec<&str> = text.split(['\r', '\n']).filter(|l| !l.is_empty()).collect();
        let field = |l: &str| l.split_once(':').map_or(l, |(f, _)| f).to_owned();
        let data: Vec<&str> = lines
            .iter()
            .filter(|l| field(l) == "data")
            .map(|l| {
                let value = l.split_once(':').map_or("", |(_, v)| v);
                value.strip_prefix(' ').unwrap_or(value)
            })
            .collect();
        let passed = || [event, blank].concat();
        if data.is_empty() {
            return passed();
        }
        match self.filter_json(data.join("\n").as_bytes()) {
            Some(None) => passed(),
            Some(Some(filtered)) => {
                let mut out = String::new();
                for line in lines.iter().filter(|l| field(l) != "data") {
                    out.push_str(line);
                    out.push('\n');
                }
                out.push_str("data: ");
                out.push_str(&String::from_utf8_lossy(&filtered));
                out.push_str("\n\n");
                out.into_bytes()
            }
            None => {
                self.dropped = true;
                Vec::new()
            }
        }
    }

    /// A JSON-RPC message (or a batch) with the list answers filtered: `Some(Some(bytes))` when
    /// it answered a list request, `Some(None)` when it passes as it is, `None` when it is not
    /// JSON.
    fn filter_json(&mut self, bytes: &[u8]) -> Option<Option<Vec<u8>>> {
        let mut value: Value = serde_json::from_slice(bytes).ok()?;
        let changed = match &mut value {
            Value::Array(items) => {
                // Every answer filtered: no short-circuit.
                let mut changed = false;
                for item in items.iter_mut() {
                    changed |= self.filter_one(item);
                }
                changed
            }
            one => self.filter_one(one),
        };
        Some(changed.then(|| value.to_string().into_bytes()))
    }

    /// Filters one answer if it answers a pending list request (whose answer it then is).
    fn filter_one(&mut self, answer: &mut Value) -> bool {
        let Some(key) = answer.get("id").and_then(IdKey::of) else {
            return false;
        };
        let Some(at) = self.pending.iter().position(|p| p.key == key) else {
            return false;
        };
        let (kind, array, field) = self.pending.remove(at).list;
        let Some(items) = answer["result"]
            .get_mut(array)
            .and_then(Value::as_array_mut)
        else {
            return false;
        };
        let before = items.len();
        let policy = &self.policy;
        items.retain(|item| {
            item.get(field)
                .and_then(Value::as_str)
                .is_some_and(|n| policy.permits(kind, n))
        });
        self.hidden += (before - items.len()) as u32;
        true
    }
}

/// Where the first SSE event in `buf` ends, searching from `from`: the offset of the line end
/// before its blank line and the length of both line ends (CRLF, LF or CR, as the SSE format
/// allows). A CR as the last byte waits for the next (it may be half of a CRLF) unless `end`.
fn event_end(buf: &[u8], from: usize, end: bool) -> Option<(usize, usize)> {
    let is_eol = |b: u8| b == b'\r' || b == b'\n';
    let eol_len = |at: usize| -> Option<usize> {
        match (buf[at], buf.get(at + 1)) {
            (b'\r', Some(b'\n')) => Some(2),
            (b'\r', None) if !end => None,
            _ => Some(1),
        }
    };
    let mut i = from;
    while i < buf.len() {
        if !is_eol(buf[i]) {
            i += 1;
            continue;
        }
        let first = eol_len(i)?;
        let j = i + first;
        match buf.get(j) {
            Some(&b) if is_eol(b) => {
                let second = match (b, buf.get(j + 1)) {
                    (b'\r', Some(b'\n')) => 2,
                    _ => 1,
                };
                return Some((i, first + second));
            }
            Some(_) => i = j,
            None => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{CredentialKind, Identity, Principal};
    use crate::config::mcp_server::policy::{Policy, WireRule};

    fn applied() -> Applied {
        let rules: Vec<WireRule> =
            serde_yaml::from_str(r#"[{ allow: { tools: ["get_*"] } }]"#).unwrap();
        let policy = Policy::build(&rules, "p", &mut |_, _| panic!()).unwrap();
        let who = Principal::new(CredentialKind::Anonymous, Identity::Anonymous, "a".into());
        policy.applied(&who)
    }

    const LIST: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"get_a"},{"name":"delete_b"},{"name":"get_c"}]}}"#;

    fn filter() -> ListFilter {
        let pending = pending_lists(&[json!({"id": 7, "method": "tools/list"})]).unwrap();
        ListFilter::new(applied(), pending)
    }

    #[test]
    fn sse_list_answers_are_filtered_across_chunks() {
        let mut f = filter();
        f.sse = true;
        let stream = format!("event: message\nid: 1\ndata: {LIST}\n\n: keep-alive\n\n");
        let mut out = Vec::new();
        for piece in stream.as_bytes().chunks(9) {
            let mut body = Some(Bytes::copy_from_slice(piece));
            f.on_body(&mut body, false);
            out.extend(body.unwrap_or_default());
        }
        let mut end = None;
        f.on_body(&mut end, true);
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("get_a") && out.contains("get_c"), "{out}");
        assert!(!out.contains("delete_b"), "{out}");
        assert!(out.starts_with("event: message\nid: 1\ndata: {"), "{out}");
        assert!(out.ends_with("\n\n: keep-alive\n\n"), "{out}");
        assert_eq!(f.hidden, 1);
    }

    #[test]
    fn json_answers_are_filtered_at_their_end_and_others_pass() {
        let mut f = filter();
        let mut body = Some(Bytes::from(LIST));
        f.on_body(&mut body, false);
        assert!(body.is_none());
        f.on_body(&mut body, true);
        let out = String::from_utf8(body.unwrap().to_vec()).unwrap();
        assert!(!out.contains("delete_b") && out.contains("get_c"), "{out}");
        let other = r#"{"jsonrpc":"2.0","id":8,"result":{"tools":[{"name":"delete_b"}]}}"#;
        let mut f = filter();
        let mut body = Some(Bytes::from(other));
        f.on_body(&mut body, true);
        assert_eq!(body.unwrap(), other.as_bytes());
    }

    /// Runs `stream` through a fresh SSE filter in `piece`-byte chunks.
    fn through_sse(stream: &[u8], piece: usize) -> String {
        let mut f = filter();
        f.sse = true;
        let mut out = Vec::new();
        for chunk in stream.chunks(piece) {
            let mut body = Some(Bytes::copy_from_slice(chunk));
            f.on_body(&mut body, false);
            out.extend(body.unwrap_or_default());
        }
        let mut end = None;
        f.on_body(&mut end, true);
        out.extend(end.unwrap_or_default());
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn sse_in_any_line_ending_or_unreadable_never_passes_unfiltered() {
        for eol in ["\n", "\r\n", "\r"] {
            let stream = format!("\u{feff}event: message{eol}data: {LIST}{eol}{eol}");
            for piece in [1, 3, 64] {
                let out = through_sse(stream.as_bytes(), piece);
                assert!(
                    out.contains("get_a") && !out.contains("delete_b"),
                    "{eol:?} {piece}: {out:?}"
                );
            }
        }
        // An answer whose data is not JSON (Infinity, a lone surrogate) is dropped, and the
        // list request gets an error instead.
        for bad in [
            r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"delete_b","x":Infinity}]}}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"delete_b","d":"\ud800"}]}}"#,
        ] {
            let out = through_sse(format!("data: {bad}\n\n").as_bytes(), 5);
            assert!(!out.contains("delete_b"), "{out}");
            assert!(out.contains("-32003") && out.contains("\"id\":7"), "{out}");
        }
    }

    #[test]
    fn ids_match_as_peers_compare_them_and_ambiguous_ones_are_refused() {
        // A JavaScript upstream answers the request id 1.0 with 1.
        let pending = pending_lists(&[json!({"id": 1.0, "method": "tools/list"})]).unwrap();
        let mut f = ListFilter::new(applied(), pending);
        let mut body = Some(Bytes::from(LIST.replace("\"id\":7", "\"id\":1")));
        f.on_body(&mut body, true);
        assert!(!String::from_utf8_lossy(&body.unwrap()).contains("delete_b"));
        let dup = [
            json!({"id": 5, "method": "prompts/list"}),
            json!({"id": 5, "method": "tools/list"}),
        ];
        assert!(pending_lists(&dup).is_err());
        assert!(pending_lists(&[json!({"id": null, "method": "tools/list"})]).is_err());
        assert!(pending_lists(&[
            json!({"id": "1", "method": "tools/list"}),
            json!({"id": 1, "method": "ping"})
        ])
        .is_ok());
    }

    #[test]
    fn compressed_or_unreadable_json_answers_become_errors() {
        let mut f = filter();
        f.opaque = true;
        let mut body = Some(Bytes::from_static(b"\x1f\x8b..."));
        f.on_body(&mut body, true);
        let out = String::from_utf8(body.unwrap().to_vec()).unwrap();
        assert!(out.contains("-32003") && out.contains("\"id\":7"), "{out}");
        let mut f = filter();
        let mut body = Some(Bytes::from(LIST.replace("]}}", ",{\"name\":NaN}]}}")));
        f.on_body(&mut body, true);
        let out = String::from_utf8(body.unwrap().to_vec()).unwrap();
        assert!(!out.contains("delete_b") && out.contains("-32003"), "{out}");
    }

    #[test]
    fn a_large_sse_event_is_searched_for_its_end_once() {
        // Each piece is searched from where the last search stopped, not from the start.
        let mut f = filter();
        f.sse = true;
        let piece = Bytes::from(vec![b'x'; 4096]);
        for n in 1..=64 {
            let mut body = Some(piece.clone());
            f.on_body(&mut body, false);
            assert!(body.is_none());
            assert_eq!(f.scanned, n * 4096 - 4);
        }
    }

    #[test]
    fn calls_are_checked_by_kind_and_nameless_ones_refused() {
        let p = applied();
        let call = |name: Value| json!({"method": "tools/call", "params": {"name": name}});
        assert!(refusal(&p, &call(json!("get_a"))).is_none());
        assert_eq!(refusal(&p, &call(json!("delete_b"))).unwrap().1, "delete_b");
        assert!(refusal(&p, &call(json!(7))).is_some());
        assert!(refusal(&p, &json!({"method": "tools/call"})).is_some());
        assert!(refusal(&p, &json!({"method": "tools/list"})).is_none());
    }
}
