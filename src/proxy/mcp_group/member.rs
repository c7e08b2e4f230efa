//! A group's side as an MCP client of its members: requests with each member's credential and
//! session, answers read back (JSON, or SSE cut into events as they arrive), and members' events
//! passed on with their own requests' ids naming the member.

use bytes::Bytes;
use serde_json::Value;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use super::SEPARATOR;
use crate::config::McpServer;

/// Largest answer read from a member for one list page or `initialize`.
pub(super) const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// How long a fan-out (`initialize`, lists, notifications, `DELETE`) waits for a member at
/// most: its `timeouts.connect_seconds` (10 by default), and never longer than this. One that
/// has not answered by then is left out, not waited for.
const MAX_FAN_OUT: Duration = Duration::from_secs(30);

pub(super) fn fan_out(m: &Member) -> Duration {
    m.server.connect_timeout.min(MAX_FAN_OUT)
}

static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
});

/// A member as this request reaches it.
pub(super) struct Member {
    pub(super) server: Arc<McpServer>,
    pub(super) token: Option<Arc<str>>,
    pub(super) session: Option<String>,
}

/// Sends a member's stream on, one complete event at a time, until it ends or nobody listens.
pub(super) async fn forward_events(
    mut resp: reqwest::Response,
    member: String,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let mut events = Events::default();
    while let Ok(Some(chunk)) = resp.chunk().await {
        for event in events.push(&chunk) {
            if let Some(out) = outgoing_event(&event, &member) {
                if tx.send(out).await.is_err() {
                    return;
                }
            }
        }
        if events.pending.len() > MAX_ANSWER {
            return;
        }
    }
}

/// A member's SSE event as the client gets it: its event id dropped (a group's streams are not
/// resumable), and a request of the member's own (elicitation, sampling) given an id naming
/// the member (`{member}__{id as JSON}`), so the client's answer can go back to it alone.
pub(super) fn outgoing_event(event: &str, member: &str) -> Option<Bytes> {
    let joined = event_data(event)?;
    let body = match serde_json::from_str::<Value>(&joined) {
        Ok(mut v) if v.get("method").is_some() && v.get("id").is_some() => {
            let id = serde_json::to_string(&v["id"]).unwrap_or_default();
            v["id"] = format!("{member}{SEPARATOR}{id}").into();
            v.to_string()
        }
        _ => joined,
    };
    Some(Bytes::from(format!("event: message\ndata: {body}\n\n")))
}

/// The member a client's answer goes back to, and the answer with the member's own id.
pub(super) fn incoming_answer(msg: &Value) -> Option<(&str, Value)> {
    let (member, id) = msg["id"].as_str()?.split_once(SEPARATOR)?;
    let id: Value = serde_json::from_str(id).ok()?;
    let mut answer = msg.clone();
    answer["id"] = id;
    Some((member, answer))
}

pub(super) fn is_sse(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"))
}

/// One request to a member, with its credential and session.
pub(super) async fn send(
    m: &Member,
    method: reqwest::Method,
    body: Option<&Value>,
    protocol: Option<&str>,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut req = CLIENT
        .request(method, &m.server.url)
        .timeout(m.server.idle_timeout)
        .header("accept", "application/json, text/event-stream");
    if let Some(body) = body {
        req = req.json(body);
    }
    if let Some(sid) = m.session.as_deref().filter(|s| !s.is_empty()) {
        req = req.header("mcp-session-id", sid);
    }
    if let Some(p) = protocol {
        req = req.header("mcp-protocol-version", p);
    }
    if let Some(token) = &m.token {
        let value = format!("{}{token}", m.server.inject_prefix);
        req = req.header(m.server.inject_header.as_str(), value);
    }
    req.send().await
}

/// The member's session id, its JSON-RPC answer to `msg` (from JSON, or the first SSE event
/// answering its id) and the bytes read. Events are scanned once each, as they complete.
pub(super) async fn final_message(
    m: &Member,
    msg: &Value,
    protocol: Option<&str>,
) -> Result<(Option<String>, Value, usize), String> {
    let mut resp = send(m, reqwest::Method::POST, Some(msg), protocol)
        .await
        .map_err(|_| "could not be reached".to_owned())?;
    if !resp.status().is_success() {
        return Err(format!("answered {}", resp.status()));
    }
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let sse = is_sse(&resp);
    let (mut body, mut events, mut read) = (Vec::new(), Events::default(), 0);
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        read += chunk.len();
        if read > MAX_ANSWER {
            return Err("the answer is too large".into());
        }
        if !sse {
            body.extend_from_slice(&chunk);
            continue;
        }
        for event in events.push(&chunk) {
            if let Some(found) = answer_in(&event, &msg["id"]) {
                return Ok((sid, found, read));
            }
        }
    }
    if sse {
        return Err("no answer in the stream".into());
    }
    serde_json::from_slice(&body)
        .map(|v| (sid, v, read))
        .map_err(|e| e.to_string())
}

/// An SSE stream cut into complete events as bytes arrive (any line ending); each byte is
/// looked at a bounded number of times.
#[derive(Default)]
pub(super) struct Events {
    pending: String,
}

impl Events {
    pub(super) fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let text = String::from_utf8_lossy(chunk);
        self.pending
            .push_str(&text.replace("\r\n", "\n").replace('\r', "\n"));
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(end) = self.pending[start..].find("\n\n") {
            out.push(self.pending[start..start + end].to_owned());
            start += end + 2;
        }
        self.pending.drain(..start);
        out
    }
}

/// The data of one SSE event (its `data:` lines joined), if it has any.
fn event_data(event: &str) -> Option<String> {
    let data: Vec<&str> = event
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    (!data.is_empty()).then(|| data.join("\n"))
}

/// The JSON-RPC answer to `id` in one SSE event, if it is one.
pub(super) fn answer_in(event: &str, id: &Value) -> Option<Value> {
    let v: Value = serde_json::from_str(&event_data(event)?).ok()?;
    (v.get("id") == Some(id) && (v.get("result").is_some() || v.get("error").is_some()))
        .then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_found_in_sse_events() {
        let id = json!(7);
        let mut events = Events::default();
        // Split anywhere, CRLF or LF: events come out whole, once each.
        let first = events.push(b"event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\r\n\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,");
        assert_eq!(first.len(), 1);
        assert!(answer_in(&first[0], &id).is_none(), "a notification");
        assert!(
            events.push(b"\"result\":{\"ok\":1}}\n").is_empty(),
            "not complete yet"
        );
        let second = events.push(b"\n");
        assert_eq!(answer_in(&second[0], &id).unwrap()["result"]["ok"], 1);
        // A member's request gets an id naming it; the client's answer goes back with its own.
        let asked = "data: {\"jsonrpc\":\"2.0\",\"id\":\"x\",\"method\":\"elicitation/create\"}";
        let out = outgoing_event(asked, "github").unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains(r#""id":"github__\"x\"""#), "{text}");
        let answer =
            json!({"jsonrpc": "2.0", "id": "github__\"x\"", "result": {"action": "decline"}});
        let (member, back) = incoming_answer(&answer).unwrap();
        assert_eq!((member, &back["id"]), ("github", &json!("x")));
        let numbered = json!({"jsonrpc": "2.0", "id": "github__7", "result": {}});
        assert_eq!(incoming_answer(&numbered).unwrap().1["id"], 7);
        assert!(incoming_answer(&json!({"jsonrpc": "2.0", "id": 3, "result": {}})).is_none());
    }
}
