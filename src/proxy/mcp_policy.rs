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
    let body = match super::fallback::keep_body(session, mcp::MAX_BODY, "MCP").await {
        Ok(b) => b,
        Err(e) => {
            let status = match e.etype() {
                pingora::ErrorType::HTTPStatus(s) => *s,
                _ => 400,
            };
            m.decision = Some("refused");
            let message = match status {
                413 => format!("the request body is larger than {} bytes", mcp::MAX_BODY),
                _ => "the request body could not be read".to_owned(),
            };
            mcp::write_rpc_error(session, status, &message, request_id).await;
            return Some(status);
        }
    };
    m.keep_for_audit(&body);
    m.body_kept = true;
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            m.decision = Some("refused");
            let answer = mcp::rpc_error(Value::Null, PARSE_ERROR, "the body is not JSON", None);
            return Some(write(session, answer, request_id).await);
        }
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
    if refused.is_empty() {
        let lists: Vec<(Value, List)> = items
            .iter()
            .filter_map(|item| {
                let list = listed(item["method"].as_str()?)?;
                Some((item.get("id")?.clone(), list))
            })
            .collect();
        m.decision = Some("allowed");
        if !lists.is_empty() {
            m.lists = Some(Box::new(ListFilter::new(policy, lists)));
        }
        return None;
    }
    m.decision = Some("refused");
    let server = m.server.name.clone();
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
    let answer = match (batch, answers.len()) {
        (true, _) => Value::Array(answers),
        (false, 1) => answers.remove(0),
        // A lone refused notification: no id to answer with.
        _ => mcp::rpc_error(
            Value::Null,
            POLICY_REFUSED,
            "refused by Sluice's policy",
            None,
        ),
    };
    Some(write(session, answer, request_id).await)
}

async fn write(session: &mut Session, answer: Value, request_id: &str) -> u16 {
    let page = super::respond::Page {
        status: 200,
        content_type: "application/json",
        body: answer.to_string(),
        headers: Vec::new(),
    };
    super::respond::write_page(session, page, request_id).await
}

/// Filters the answers to list requests as the response passes.
#[derive(Debug)]
pub struct ListFilter {
    policy: Applied,
    /// The list requests' ids and what each lists.
    lists: Vec<(Value, List)>,
    sse: bool,
    /// JSON: the whole answer so far; SSE: the event being read.
    buf: BytesMut,
    /// Items hidden so far (for the audit record).
    pub hidden: u32,
    /// The answer outgrew `MAX_ANSWER`: the rest of it is dropped.
    cut: bool,
}

impl ListFilter {
    fn new(policy: Applied, lists: Vec<(Value, List)>) -> ListFilter {
        ListFilter {
            policy,
            lists,
            sse: false,
            buf: BytesMut::new(),
            hidden: 0,
            cut: false,
        }
    }

    /// The answer's head: its framing changes (the length is no longer known).
    pub fn on_head(&mut self, resp: &mut pingora::http::ResponseHeader, h1: bool) {
        self.sse = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"));
        resp.remove_header(&http::header::CONTENT_LENGTH);
        if h1 {
            let _ = resp.insert_header(http::header::TRANSFER_ENCODING, "chunked");
        }
    }

    /// One piece of the answer: what may go on of it now.
    pub fn on_body(&mut self, body: &mut Option<Bytes>, end: bool) {
        if let Some(chunk) = body.take().filter(|_| !self.cut) {
            self.buf.extend_from_slice(&chunk);
        }
        let mut out = Vec::new();
        if self.sse {
            while let Some((at, len)) = event_end(&self.buf) {
                let event = self.buf.split_to(at + len);
                out.extend(self.filter_event(&event[..at]));
                out.extend_from_slice(&event[at..]);
            }
            if end && !self.buf.is_empty() {
                let rest = self.buf.split();
                out.extend(self.filter_event(&rest));
            }
        } else if end {
            let whole = self.buf.split();
            out.extend(self.filter_json(&whole).unwrap_or_else(|| whole.to_vec()));
        }
        if self.buf.len() > MAX_ANSWER {
            // Never pass it unfiltered: the client gets a cut answer.
            self.buf.clear();
            self.cut = true;
        }
        *body = (!out.is_empty()).then(|| Bytes::from(out));
    }

    /// An SSE event without its blank line: its `data:` lines filtered when they hold a list
    /// answer.
    fn filter_event(&mut self, event: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(event);
        let data: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect::<Vec<_>>()
            .join("\n");
        let Some(filtered) = self.filter_json(data.as_bytes()) else {
            return event.to_vec();
        };
        let mut out = String::new();
        for line in text.lines().filter(|l| !l.starts_with("data:")) {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("data: ");
        out.push_str(&String::from_utf8_lossy(&filtered));
        out.into_bytes()
    }

    /// A JSON-RPC answer (or a batch of them) with the list results filtered; `None` when it
    /// answers none of the list requests.
    fn filter_json(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
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
        changed.then(|| value.to_string().into_bytes())
    }

    fn filter_one(&mut self, answer: &mut Value) -> bool {
        let Some(id) = answer.get("id") else {
            return false;
        };
        let Some((kind, array, field)) = self
            .lists
            .iter()
            .find(|(want, _)| want == id)
            .map(|(_, l)| *l)
        else {
            return false;
        };
        let Some(items) = answer["result"]
            .get_mut(array)
            .and_then(Value::as_array_mut)
        else {
            return true;
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

/// Where the first SSE event in `buf` ends: the offset of its blank line and that line's length.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    (0..buf.len()).find_map(|i| {
        let rest = &buf[i..];
        if rest.starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else if rest.starts_with(b"\n\n") {
            Some((i, 2))
        } else {
            None
        }
    })
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
        ListFilter::new(applied(), vec![(json!(7), (Kind::Tool, "tools", "name"))])
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
