//! Reverse-proxy mode through real clients: key injection, credential stripping, auth refusals,
//! weighted pools, key health, streaming, upstream failures, admin endpoints.

use crate::common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn pool_config(mock: &Mock, weights: (u32, u32)) -> String {
    format!(
        r#"providers:
  - name: openai
    kind: openai
    base_url: {}
    keys:
      - {{ id: a, secret_ref: "env:KEY_A", weight: {} }}
      - {{ id: b, secret_ref: "env:KEY_B", weight: {} }}
routes:
  - {{ prefix: /openai, provider: openai }}
tokens:
  - {}
"#,
        mock.url(),
        weights.0,
        weights.1,
        tok().record
    )
}

const KEYS: [(&str, &str); 2] = [
    ("KEY_A", "sk-pool-key-a-000000"),
    ("KEY_B", "sk-pool-key-b-000000"),
];

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn curl_json_and_sse_get_pool_keys_and_client_credentials_never_arrive() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&pool_config(&mock, (1, 1)), &KEYS);
    let url = sluice.url("/openai/v1/chat/completions");
    let (body, err) = curl(&[
        "-H",
        &format!("Authorization: Bearer {}", tok().token),
        "-H",
        "content-type: application/json",
        "-d",
        CHAT,
        &url,
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body} {err}"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["usage"]["completion_tokens"], 8);

    let (body, _) = curl(&[
        "-N",
        "-H",
        &format!("x-api-key: {}", tok().token),
        "-H",
        "X-Sluice-Trace: yes",
        "-d",
        CHAT_STREAM,
        &url,
    ]);
    let events: Vec<&str> = body.lines().filter(|l| l.starts_with("data: ")).collect();
    assert_eq!(events.len(), 12, "{body}"); // role + 8 tokens + stop + usage + [DONE]
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    assert!(body.contains("\"usage\""));

    let stats = mock.stats().await;
    assert_eq!(stats["requests"], 2);
    assert_eq!(
        mock.seen("authorization: Bearer sk-pool-key-a-000000")
            .await,
        1
    );
    assert_eq!(
        mock.seen("authorization: Bearer sk-pool-key-b-000000")
            .await,
        1
    );
    assert_eq!(
        stats["sluice_headers"], 0,
        "x-sluice-* headers must be stripped: {stats}"
    );
    let all = stats["credentials"].to_string();
    assert!(
        !all.contains(&tok().token),
        "the client's Sluice token reached the upstream: {all}"
    );
}

#[tokio::test]
async fn bad_credentials_get_401_with_challenge_in_the_provider_shape() {
    let mock = Mock::start(&[]);
    let config = format!(
        r#"providers:
  - {{ name: openai, kind: openai, base_url: "{url}", keys: [{{ id: a, secret_ref: "env:KEY_A" }}] }}
  - {{ name: claude, kind: anthropic, base_url: "{url}", keys: [{{ id: c, secret_ref: "env:KEY_B" }}] }}
routes:
  - {{ prefix: /openai, provider: openai }}
  - {{ prefix: /anthropic, provider: claude }}
tokens:
  - {sha}
"#,
        url = mock.url(),
        sha = tok().record
    );
    let sluice = Sluice::start_with_env(&config, &KEYS);
    let c = client();
    let unknown = opaque_token("").token;
    let cases = [
        ("/openai/v1/chat/completions", None, "missing_credential"),
        ("/openai/v1/chat/completions", Some("wrong"), "malformed"),
        ("/anthropic/v1/messages", Some("wrong"), "malformed"),
        ("/anthropic/v1/messages", Some(unknown.as_str()), "unknown"),
    ];
    for (path, token, reason) in cases {
        let mut req = c.post(sluice.url(path)).body(CHAT);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["x-sluice-error"], reason);
        assert!(
            resp.headers().contains_key("x-request-id"),
            "refusals carry the request id too"
        );
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with("Bearer realm=\"sluice\""),
            "{challenge}"
        );
        if token.is_some() {
            assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        }
        let body: serde_json::Value = resp.json().await.unwrap();
        if path.starts_with("/anthropic") {
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], "authentication_error");
        } else {
            assert_eq!(body["error"]["code"], "invalid_api_key");
            assert_eq!(body["error"]["type"], "invalid_request_error");
        }
    }
    let resp = c
        .post(sluice.url("/anthropic/v1/messages"))
        .header("x-api-key", &tok().token)
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(mock.seen("x-api-key: sk-pool-key-b-000000").await, 1);
    let resp = c.get(sluice.url("/nowhere")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        mock.stats().await["requests"],
        1,
        "refused requests must not reach the upstream"
    );
    assert_eq!(
        sluice
            .metric("sluice_rejected_requests_total{reason=\"malformed\"}")
            .await,
        2.0
    );
}

#[tokio::test]
async fn picks_follow_weights_and_unhealthy_keys_leave_rotation() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&pool_config(&mock, (3, 1)), &KEYS);
    for _ in 0..40 {
        assert_eq!(
            chat_status(&sluice, "/openai/v1/chat/completions", &[]).await,
            200
        );
    }
    let a = "authorization: Bearer sk-pool-key-a-000000";
    let b = "authorization: Bearer sk-pool-key-b-000000";
    assert_eq!((mock.seen(a).await, mock.seen(b).await), (30, 10));

    // A 401 from upstream quarantines that key: everything goes to the other one.
    let mut quarantined = None;
    for _ in 0..4 {
        let before_a = mock.seen(a).await;
        assert_eq!(
            chat_status(
                &sluice,
                "/openai/v1/chat/completions",
                &[("x-mock-status", "401")]
            )
            .await,
            401,
            "upstream statuses pass through"
        );
        if mock.seen(a).await > before_a {
            quarantined = Some(a);
            break;
        }
    }
    let (bad, good) = match quarantined {
        Some(_) => (a, b),
        None => (b, a),
    };
    let bad_before = mock.seen(bad).await;
    for _ in 0..10 {
        assert_eq!(
            chat_status(&sluice, "/openai/v1/chat/completions", &[]).await,
            200
        );
    }
    assert_eq!(
        mock.seen(bad).await,
        bad_before,
        "a quarantined key must not be picked"
    );
    assert!(mock.seen(good).await >= 10);
    let metrics = sluice.metrics().await;
    assert!(metrics.contains("state=\"quarantined\"} 1"), "{metrics}");

    // A 429 cools the remaining key down (Retry-After: 1): no healthy key → 503, then back.
    assert_eq!(
        chat_status(
            &sluice,
            "/openai/v1/chat/completions",
            &[("x-mock-status", "429")]
        )
        .await,
        429
    );
    assert_eq!(
        call(
            &sluice,
            "/openai/v1/chat/completions",
            &[("authorization", &format!("Bearer {}", tok().token))]
        )
        .await,
        (503, "no_healthy_key".to_owned())
    );
    advance_clock(&[&sluice], 1100).await;
    assert_eq!(
        chat_status(&sluice, "/openai/v1/chat/completions", &[]).await,
        200
    );
}

#[tokio::test]
async fn sse_flows_chunk_by_chunk() {
    let mock = Mock::start(&["--chunks", "5", "--chunk-interval-ms", "150"]);
    let sluice = Sluice::start_with_env(&pool_config(&mock, (1, 1)), &KEYS);
    let mut resp = client()
        .post(sluice.url("/openai/v1/chat/completions"))
        .bearer_auth(&tok().token)
        .body(CHAT_STREAM)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let start = Instant::now();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        arrivals.push(start.elapsed());
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    // The upstream spaces its events 150 ms apart: a buffering proxy would deliver them at once.
    assert!(arrivals.len() >= 5, "{arrivals:?}");
    let spread = *arrivals.last().unwrap() - arrivals[0];
    assert!(
        spread >= Duration::from_millis(600),
        "events arrived together: {arrivals:?}"
    );
}

#[tokio::test]
async fn large_request_bodies_stream_through() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&pool_config(&mock, (1, 1)), &KEYS);
    let filler = "x".repeat(8 * 1024 * 1024);
    let body =
        format!(r#"{{"model":"gpt-mock","messages":[{{"role":"user","content":"{filler}"}}]}}"#);
    let resp = client()
        .post(sluice.url("/openai/v1/chat/completions"))
        .bearer_auth(&tok().token)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    // The mock counts a token per 4 bytes received: all 8 MiB arrived.
    assert_eq!(v["usage"]["prompt_tokens"], body.len() as u64 / 4);
}

#[tokio::test]
async fn unreachable_upstream_is_a_502_in_the_provider_shape() {
    let dead = refused_port();
    let config = format!(
        "providers:\n  - {{ name: claude, kind: anthropic, base_url: \"http://127.0.0.1:{dead}\", keys: [{{ id: a, secret_ref: \"env:KEY_A\" }}, {{ id: b, secret_ref: \"env:KEY_B\" }}] }}\nroutes:\n  - {{ prefix: /anthropic, provider: claude, auth: none }}\n"
    );
    let sluice = Sluice::start_with_env(&config, &KEYS);
    let resp = client()
        .post(sluice.url("/anthropic/v1/messages"))
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "api_error");
    // The connect failure was retried once, on the other key.
    let m = sluice.metrics().await;
    assert!(
        m.contains("sluice_upstream_connect_failures_total{key=\"a\",provider=\"claude\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("sluice_upstream_connect_failures_total{key=\"b\",provider=\"claude\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn admin_endpoints_and_metrics_never_carry_secrets() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&pool_config(&mock, (1, 1)), &KEYS);
    assert_eq!(
        chat_status(&sluice, "/openai/v1/chat/completions", &[]).await,
        200
    );
    let health = http_get(format!("http://127.0.0.1:{}/healthz", sluice.admin))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = http_get(format!("http://127.0.0.1:{}/readyz", sluice.admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["revision"], 1);
    let m = sluice.metrics().await;
    assert!(
        m.contains(
            "sluice_requests_total{provider=\"openai\",route=\"/openai\",status_class=\"2xx\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "sluice_request_duration_seconds_count{provider=\"openai\",route=\"/openai\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains("sluice_key_weight{key=\"a\",provider=\"openai\"} 1"),
        "{m}"
    );
    assert!(m.contains("sluice_config_revision 1"), "{m}");
    for secret in ["sk-pool-key", tok().token.as_str(), "ci-bot"] {
        assert!(!m.contains(secret), "metrics leak {secret}");
        assert!(
            !sluice.proc.log_text().contains(secret),
            "log leaks {secret}"
        );
    }
}

/// `kind: http` puts any HTTP API (an agent's) behind a route: no key pool needed
/// (`credentials: none`: nothing injected, every client credential stripped, other headers
/// passed), no model or usage read, audited like any request; with a key, it is injected.
#[tokio::test]
async fn generic_http_apis_behind_routes() {
    let port = echo_api().await;
    let dynamic = format!(
        r#"providers:
  - {{ name: research, kind: http, base_url: "http://127.0.0.1:{port}/api", credentials: none }}
  - {{ name: billing, kind: http, base_url: "http://127.0.0.1:{port}", keys: [{{ id: a, secret_ref: "env:KEY_A" }}] }}
routes:
  - {{ prefix: /agents/research, provider: research }}
  - {{ prefix: /billing, provider: billing }}
tokens:
  - {}
audit:
  sink: file
"#,
        tok().record
    );
    let sluice = Sluice::start_with_env(&dynamic, &KEYS);
    let r = client()
        .post(sluice.url("/agents/research/invoke?q=1"))
        .bearer_auth(&tok().token)
        .header("x-custom", "kept")
        .header("api-key", "sk-client-secret")
        .body(r#"{"model":"not-an-llm","input":"hi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let head = r.json::<serde_json::Value>().await.unwrap()["head"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        head.starts_with("post /api/invoke?q=1 http/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("x-custom: kept\r\n"), "{head}");
    assert!(
        !head.contains("authorization"),
        "a credential went upstream: {head}"
    );
    assert!(
        !head.contains("api-key") && !head.contains("sk-client"),
        "{head}"
    );
    assert!(!head.contains(&tok().token.to_ascii_lowercase()), "{head}");

    let r = client()
        .get(sluice.url("/billing/invoices"))
        .bearer_auth(&tok().token)
        .send()
        .await
        .unwrap();
    let head = r.json::<serde_json::Value>().await.unwrap()["head"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        head.contains(&format!("authorization: Bearer {}", KEYS[0].1)),
        "{head}"
    );

    let (status, _) = call(&sluice, "/agents/research/invoke", &[]).await;
    assert_eq!(status, 401, "Sluice's client authentication still applies");

    let record = wait_audit(&sluice, |r| {
        r["provider"] == "research" && r["status"] == 200
    })
    .await;
    let record = record.expect("no audit record of the agent call");
    assert!(
        record["model"].is_null(),
        "no model read from an HTTP API: {record}"
    );
    assert!(record["key_id"].is_null(), "{record}");
}

/// An HTTP API that answers one request per connection and counts the requests it read. Kept
/// alive (`close_after: false`), it reads the next request and closes without an answer (an
/// upstream that dropped the idle connection just as it was reused); else it closes right after
/// its answer, though that answer said keep-alive (the connection dies while idle in the pool).
async fn one_shot_api(close_after: bool) -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = counter.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                for answered in [false, true] {
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.fetch_add(1, Ordering::SeqCst);
                    if answered {
                        return;
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    if close_after {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// Sluice's own pool and loop: a kept-alive upstream connection that died while idle is not
/// the client's problem. One closed in the pool is skipped when taken (POSTs too); one that
/// closes on the request it was reused for is retried once on a fresh connection (GETs: a
/// request that reached an upstream is not resent unless it is idempotent).
#[tokio::test]
async fn upstream_connections_dropped_while_idle_cost_no_request() {
    use std::sync::atomic::Ordering;
    let (closing, _) = one_shot_api(true).await;
    let (dropping, seen) = one_shot_api(false).await;
    let dynamic = format!(
        r#"providers:
  - {{ name: closing, kind: http, base_url: "http://127.0.0.1:{closing}", credentials: none }}
  - {{ name: dropping, kind: http, base_url: "http://127.0.0.1:{dropping}", credentials: none }}
routes:
  - {{ prefix: /closing, provider: closing }}
  - {{ prefix: /dropping, provider: dropping }}
tokens:
  - {}
"#,
        tok().record
    );
    let sluice = Sluice::start(&dynamic);
    let client = client();
    for _ in 0..5 {
        let r = client
            .post(sluice.url("/closing/invoke"))
            .bearer_auth(&tok().token)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(
        sluice
            .metric("sluice_upstream_pool_total{result=\"reused\"}")
            .await
            == 0.0,
        "a closed connection was taken from the pool"
    );
    for _ in 0..5 {
        let r = client
            .get(sluice.url("/dropping/items"))
            .bearer_auth(&tok().token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Each GET after the first met a dropped connection first: 5 answered, 4 dropped.
    assert_eq!(seen.load(Ordering::SeqCst), 9);
}

/// An upstream that refuses POSTs with 413 before reading their body and keeps the connection
/// (as a non-compliant server may), answers anything else 200, and keeps every request head
/// that arrived on a connection after a refusal: what a reused connection fed it.
async fn early_refusing_api() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let after_refusal = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = after_refusal.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let (mut buf, mut chunk, mut refused) = (Vec::new(), [0u8; 4096], false);
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    if refused {
                        kept.lock().unwrap().push(head.clone());
                    }
                    let answer: &[u8] = if head.starts_with("POST") {
                        refused = true;
                        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                    };
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, after_refusal)
}

/// An upstream that answers before reading a request's body leaves that body unread on the
/// connection: reused, the rest of one principal's body would be the start of the next
/// principal's request (here a smuggled request line that swallows the victim's head, key
/// included). Sluice does not reuse a connection whose answer says the request was not read,
/// on either proxy loop.
#[tokio::test]
async fn a_connection_answered_before_its_body_was_read_is_not_reused() {
    for proxy_loop in ["sluice", "pingora"] {
        refused_connection_not_reused(proxy_loop).await;
    }
}

async fn refused_connection_not_reused(proxy_loop: &str) {
    let (port, after_refusal) = early_refusing_api().await;
    let dynamic = format!(
        r#"server:
  proxy_loop: {proxy_loop}
providers:
  - {{ name: api, kind: http, base_url: "http://127.0.0.1:{port}", keys: [{{ id: a, secret_ref: "env:KEY_A" }}] }}
routes:
  - {{ prefix: /api, provider: api }}
tokens:
  - {}
"#,
        tok().record
    );
    let sluice = Sluice::start_with_env(&dynamic, &KEYS);
    let client = client();
    let smuggled = "GET /smuggled HTTP/1.1\r\nhost: a\r\nx-swallow: ";
    let r = client
        .post(sluice.url("/api/upload"))
        .bearer_auth(&tok().token)
        .body(smuggled)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = client
        .get(sluice.url("/api/victim"))
        .bearer_auth(&tok().token)
        .header("x-victim", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let fed = after_refusal.lock().unwrap().join("\n");
    assert!(
        !fed.to_ascii_lowercase().contains("x-victim"),
        "{proxy_loop}: the victim's request went down the refused connection: {fed}"
    );
}

/// A streamed answer's head reaches the client when it arrives, even when the bytes read with
/// it are only the start of a chunk (nothing to write yet) and the rest comes later; on both
/// proxy loops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_head_is_not_held_for_the_body() {
    for proxy_loop in ["sluice", "pingora"] {
        streamed_head_arrives(proxy_loop).await;
    }
}

async fn streamed_head_arrives(proxy_loop: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (head_seen, mut wait_head) = tokio::sync::mpsc::channel::<()>(1);
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n5")
            .await;
        // The rest only once the client saw the head.
        wait_head.recv().await;
        let _ = s.write_all(b"\r\nhello\r\n0\r\n\r\n").await;
    });
    let dynamic = format!(
        r#"server:
  proxy_loop: {proxy_loop}
providers:
  - {{ name: up, kind: http, base_url: "http://127.0.0.1:{port}", credentials: none }}
routes:
  - {{ prefix: /up, provider: up, auth: none }}
"#
    );
    let sluice = Sluice::start(&dynamic);
    let request = client().get(sluice.url("/up/events")).send();
    let r = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .unwrap_or_else(|_| panic!("{proxy_loop}: the head did not arrive before the body"))
        .unwrap();
    assert_eq!(r.status(), 200);
    head_seen.send(()).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello");
}

/// A refused request's small body is read before the refusal, so the client's connection
/// serves its next request (a client retrying with a bad key does not pay a new connection for
/// each 401).
#[tokio::test]
async fn a_refusal_keeps_the_connection_when_the_body_is_small() {
    let mock = Mock::start(&[]);
    let dynamic = format!(
        r#"providers:
  - {{ name: openai, kind: openai, base_url: "{}", keys: [{{ id: a, secret_ref: "env:KEY_A" }}] }}
routes:
  - {{ prefix: /openai, provider: openai }}
tokens:
  - {}
"#,
        mock.url(),
        tok().record
    );
    let sluice = Sluice::start_with_env(&dynamic, &KEYS);
    let port = sluice.port;
    let answers = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = r#"{"model":"gpt-4o","messages":[]}"#;
        let mut heads = Vec::new();
        for _ in 0..2 {
            write!(
                s,
                "POST /openai/v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sl_not_a_token\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            // One answer: its head, then its Content-Length body.
            let mut raw = Vec::new();
            let mut byte = [0u8; 1];
            while !raw.ends_with(b"\r\n\r\n") {
                assert_eq!(s.read(&mut byte).unwrap(), 1, "the connection closed");
                raw.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap();
            let mut rest = vec![0u8; len];
            s.read_exact(&mut rest).unwrap();
            heads.push(head);
        }
        heads
    })
    .await
    .unwrap();
    for head in &answers {
        assert!(head.starts_with("http/1.1 401"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
    }
    assert_eq!(mock.stats().await["requests"], 0, "nothing went upstream");
}
