//! Provider fallback chains (`routes[].fallback`): a primary that answers 500 or 429, refuses
//! the connection, has no healthy key or no head in time hands the request to the next provider,
//! with the model mapped and the OpenAI ⇄ Anthropic translation both ways, streaming and not,
//! checked by the official SDKs' parsers; a stream cut midway is never retried; each hop is in
//! the audit record.

use crate::common::*;
use crate::sdk::run_with_env;
use serde_json::Value;

const KEYS: [(&str, &str); 4] = [
    ("KEY_BAD", "sk-bad-pool-000000000"),
    ("KEY_O", "sk-openai-pool-000000"),
    ("KEY_A", "sk-ant-pool-0000000"),
    ("KEY_DOWN", "sk-down-pool-0000000"),
];

fn sdk(sluice: &Sluice, prefix: &str, mode: &str, model: &str, flags: &[&str]) -> Value {
    let base = sluice.url(prefix);
    let mut args = vec![base.as_str(), tok().token.as_str(), mode, model];
    args.extend_from_slice(flags);
    run_with_env("fallback_client.py", &args, &[])
}

/// Providers on one mock: healthy OpenAI and Anthropic ones, and primaries that fail each way.
fn config(mock: &Mock, routes: &str) -> String {
    let closed = refused_port();
    format!(
        r#"providers:
  - {{ name: openai, kind: openai, base_url: "{url}", keys: [{{ id: o, secret_ref: "env:KEY_O" }}] }}
  - {{ name: anthropic, kind: anthropic, base_url: "{url}", keys: [{{ id: a, secret_ref: "env:KEY_A" }}] }}
  - {{ name: openai-500, kind: openai, base_url: "{url}/_mock/status/500", keys: [{{ id: b500, secret_ref: "env:KEY_BAD" }}] }}
  - {{ name: openai-429, kind: openai, base_url: "{url}/_mock/status/429", keys: [{{ id: b429, secret_ref: "env:KEY_BAD" }}] }}
  - {{ name: anthropic-503, kind: anthropic, base_url: "{url}/_mock/status/503", keys: [{{ id: b503, secret_ref: "env:KEY_BAD" }}] }}
  - {{ name: openai-down, kind: openai, base_url: "http://127.0.0.1:{closed}", keys: [{{ id: down, secret_ref: "env:KEY_DOWN" }}] }}
  - {{ name: openai-cut, kind: openai, base_url: "{url}/_mock/cut/3", keys: [{{ id: cut, secret_ref: "env:KEY_BAD" }}] }}
  - {{ name: openai-slow, kind: openai, base_url: "{url}/_mock/slow/4000", keys: [{{ id: slow, secret_ref: "env:KEY_BAD" }}] }}
routes:
{routes}
tokens:
  - {sha}
"#,
        url = mock.url(),
        sha = tok().record
    )
}

async fn audit_of(sluice: &Sluice, model: &str) -> Value {
    wait_audit(sluice, |r| r["model"] == model)
        .await
        .unwrap_or_else(|| panic!("no audit record for {model}"))
}

#[tokio::test]
async fn a_failing_openai_primary_is_answered_by_anthropic_through_the_openai_sdk() {
    let mock = Mock::start(&[]);
    let routes = r#"  - prefix: /chat
    provider: openai-500
    fallback:
      to:
        - { provider: anthropic, models: { gpt-4o: claude-sonnet-4-0, gpt-4o-mini: claude-haiku-4-5 } }
  - prefix: /chain
    provider: openai-down
    fallback:
      to:
        - { provider: openai-429 }
        - { provider: anthropic, models: { "*": claude-opus-4-1 } }"#;
    let sluice = Sluice::start_with_env(&config(&mock, routes), &KEYS);

    // Not streamed: the answer is Anthropic's, translated; the request was translated too.
    let out = sdk(&sluice, "/chat/v1", "openai", "gpt-4o", &[]);
    assert_eq!(out["fallback"], "anthropic", "{out}");
    assert_eq!(out["model"], "claude-sonnet-4-0");
    assert_eq!(out["text"], "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ");
    assert_eq!(out["finish_reason"], "stop");
    assert_eq!(out["usage"]["completion_tokens"], 8);
    let last = &mock.stats().await["last"];
    assert_eq!(last["path"], "/v1/messages", "{last}");
    assert_eq!(last["body"]["system"], "Be brief.");
    assert_eq!(last["body"]["messages"][0]["content"][0]["text"], "hello");
    assert!(last["body"]["max_tokens"].as_u64().is_some(), "{last}");
    assert_eq!(mock.seen("x-api-key: sk-ant-pool-0000000").await, 1);
    let record = audit_of(&sluice, "claude-sonnet-4-0").await;
    assert_eq!(record["provider"], "anthropic", "{record}");
    assert_eq!(record["key_id"], "a");
    assert_eq!(record["status"], 200);
    assert_eq!(
        record["fallback"],
        serde_json::json!([{"provider": "openai-500", "key_id": "b500", "outcome": "500"}])
    );
    assert_eq!(record["usage"]["output"], 8);

    // Streamed, with a tool call: chunks the SDK assembles into the call.
    let out = sdk(
        &sluice,
        "/chat/v1",
        "openai",
        "gpt-4o-mini",
        &["--stream", "--tools"],
    );
    assert_eq!(out["fallback"], "anthropic", "{out}");
    assert_eq!(out["model"], "claude-haiku-4-5");
    assert_eq!(out["finish_reason"], "tool_calls");
    assert_eq!(
        out["tool_calls"],
        serde_json::json!([{"name": "echo", "arguments": {"text": "tok0"}}])
    );
    assert!(out["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "{out}");
    let last = &mock.stats().await["last"];
    assert_eq!(last["body"]["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(last["body"]["stream"], true);

    // curl waits for `100 Continue` before sending a body past 1 KiB: the route answers it
    // (without, this request takes curl's 30 s expect timeout and fails at 10 s).
    let long = "x".repeat(4096);
    let body = format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{long}"}}]}}"#);
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--expect100-timeout",
            "30",
            "-H",
            "Expect: 100-continue",
        ])
        .args(["-H", &format!("Authorization: Bearer {}", tok().token)])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
        ])
        .arg(sluice.url("/chat/v1/chat/completions"))
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(answer.contains("chat.completion"), "{answer}");
    assert!(
        mock.stats().await["last"]["body"]["messages"][0]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.len() == 4096)
    );

    // Connection refused, then a 429, then the last provider: both hops recorded, in order.
    let out = sdk(&sluice, "/chain/v1", "openai", "gpt-4o", &["--stream"]);
    assert_eq!(out["fallback"], "anthropic", "{out}");
    assert_eq!(out["text"], "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ");
    let record = audit_of(&sluice, "claude-opus-4-1").await;
    let hops: Vec<(&str, &str)> = record["fallback"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["provider"].as_str().unwrap(),
                h["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hops,
        [("openai-down", "connect"), ("openai-429", "429")],
        "{record}"
    );
    assert!(record["stream"].as_bool().unwrap());
    assert_eq!(
        sluice
            .metric(r#"sluice_fallbacks_total{outcome="500",provider="openai-500"}"#)
            .await,
        3.0,
        "two SDK calls and curl's"
    );
    assert_eq!(
        sluice
            .metric(r#"sluice_fallbacks_total{outcome="connect",provider="openai-down"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn an_anthropic_primary_falls_back_to_openai_parsed_by_the_anthropic_sdk() {
    let mock = Mock::start(&[]);
    let routes = r#"  - prefix: /claude
    provider: anthropic-503
    fallback:
      to:
        - { provider: openai, models: { claude-sonnet-4-0: gpt-4.1 } }
  - prefix: /dead
    provider: openai-500
    fallback: { to: [{ provider: anthropic-503 }] }"#;
    let sluice = Sluice::start_with_env(&config(&mock, routes), &KEYS);
    for flags in [&[][..], &["--stream"][..]] {
        let out = sdk(&sluice, "/claude", "anthropic", "claude-sonnet-4-0", flags);
        assert_eq!(out["fallback"], "openai", "{out}");
        assert_eq!(out["model"], "gpt-4.1");
        assert_eq!(out["stop_reason"], "end_turn");
        assert_eq!(
            out["content"],
            serde_json::json!([{"type": "text", "text": "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ", "citations": null}]),
            "{out}"
        );
        assert_eq!(out["usage"]["output_tokens"], 8);
        assert!(out["usage"]["input_tokens"].as_u64().unwrap() > 0);
        let last = &mock.stats().await["last"];
        assert_eq!(last["path"], "/v1/chat/completions", "{last}");
        assert_eq!(
            last["body"]["messages"][0],
            serde_json::json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(last["body"]["max_completion_tokens"], 64);
    }
    let out = sdk(
        &sluice,
        "/claude",
        "anthropic",
        "claude-sonnet-4-0",
        &["--stream", "--tools"],
    );
    assert_eq!(out["stop_reason"], "tool_use", "{out}");
    assert_eq!(out["content"][0]["type"], "tool_use");
    assert_eq!(out["content"][0]["name"], "echo");
    assert_eq!(
        out["content"][0]["input"],
        serde_json::json!({"text": "tok0"})
    );
    let out = sdk(
        &sluice,
        "/claude",
        "anthropic",
        "claude-sonnet-4-0",
        &["--tools"],
    );
    assert_eq!(
        out["content"][0]["input"],
        serde_json::json!({"text": "tok0"}),
        "{out}"
    );
    let last = &mock.stats().await["last"];
    assert_eq!(last["body"]["tools"][0]["function"]["name"], "echo");
    // Every pool key went to its own provider only; no Sluice header went upstream.
    assert_eq!(
        mock.seen("authorization: Bearer sk-openai-pool-000000")
            .await,
        4
    );
    assert_eq!(mock.stats().await["sluice_headers"], 0);

    // The whole chain fails: the last answer reaches an OpenAI client in OpenAI's shape.
    let r = client()
        .post(sluice.url("/dead/v1/chat/completions"))
        .bearer_auth(&tok().token)
        .body(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-sluice-fallback"], "anthropic-503");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["message"], "mock upstream forced 503",
        "{body}"
    );
    assert_eq!(body["error"]["type"], "api_error");
    let record = wait_audit(&sluice, |r| r["route"] == "/dead")
        .await
        .unwrap();
    assert_eq!(record["fallback"][0]["outcome"], "500", "{record}");
    assert_eq!(record["provider"], "anthropic-503");
}

#[tokio::test]
async fn a_stream_cut_midway_is_not_retried_and_a_late_head_moves_on() {
    let mock = Mock::start(&[]);
    let routes = r#"  - prefix: /cut
    provider: openai-cut
    fallback: { to: [{ provider: openai }] }
  - prefix: /slow
    provider: openai-slow
    fallback: { to: [{ provider: openai, models: { "*": gpt-fast } }], timeout_seconds: 1 }
  - prefix: /only5xx
    provider: openai-slow
    fallback: { to: [{ provider: openai }], on: [5xx] }"#;
    let sluice = Sluice::start_with_env(&config(&mock, routes), &KEYS);

    let out = sdk(&sluice, "/cut/v1", "openai", "gpt-4o", &["--stream"]);
    assert!(
        out["error"].is_string(),
        "the cut must reach the client: {out}"
    );
    assert_eq!(out["fallback"], Value::Null);
    let paths = &mock.stats().await["paths"];
    assert_eq!(
        paths["/v1/chat/completions"],
        Value::Null,
        "retried: {paths}"
    );
    let record = wait_audit(&sluice, |r| r["route"] == "/cut").await.unwrap();
    assert_eq!(record["fallback"], Value::Null, "{record}");

    // No head within a second: the next provider answers.
    let out = sdk(&sluice, "/slow/v1", "openai", "gpt-4o", &[]);
    assert_eq!(out["fallback"], "openai", "{out}");
    assert_eq!(out["model"], "gpt-fast");
    let record = audit_of(&sluice, "gpt-fast").await;
    assert_eq!(record["fallback"][0]["outcome"], "timeout", "{record}");

    // Without `timeout` in `on`, the slow provider is waited for.
    let out = sdk(&sluice, "/only5xx/v1", "openai", "gpt-patient", &[]);
    assert_eq!(out["fallback"], Value::Null, "{out}");
    assert_eq!(out["model"], "gpt-patient");
}

#[tokio::test]
async fn a_primary_without_a_healthy_key_goes_straight_to_the_fallback() {
    let mock = Mock::start(&[]);
    let routes = r#"  - prefix: /rl
    provider: openai-429
    fallback: { to: [{ provider: openai, models: { "*": gpt-backup } }] }"#;
    let sluice = Sluice::start_with_env(&config(&mock, routes), &KEYS);
    // The 429 cools the primary's only key down (Retry-After: 1).
    let out = sdk(&sluice, "/rl/v1", "openai", "gpt-4o", &[]);
    assert_eq!(out["fallback"], "openai", "{out}");
    let primary = mock.stats().await["paths"]["/_mock/status/429/v1/chat/completions"].clone();
    assert_eq!(primary, 1);
    // The next request does not knock on the benched key.
    let out = sdk(&sluice, "/rl/v1", "openai", "gpt-4o", &["--stream"]);
    assert_eq!(out["fallback"], "openai", "{out}");
    assert_eq!(
        mock.stats().await["paths"]["/_mock/status/429/v1/chat/completions"],
        1
    );
    let records: Vec<Value> = std::fs::read_to_string(sluice.dir.path().join("data/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        records
            .iter()
            .any(|r| r["fallback"][0]["outcome"] == "no_healthy_key"),
        "{records:?}"
    );
}

#[tokio::test]
async fn a_chain_naming_a_missing_or_keyless_provider_is_refused_with_its_field() {
    let mock = Mock::start(&[]);
    let config = format!(
        r#"providers:
  - {{ name: openai, kind: openai, base_url: "{url}", keys: [{{ id: o, secret_ref: "env:KEY_O" }}] }}
  - {{ name: mine, kind: anthropic, base_url: "{url}", credentials: byok }}
routes:
  - prefix: /chat
    provider: openai
    fallback:
      to:
        - {{ provider: nobody }}
        - {{ provider: mine }}
"#,
        url = mock.url()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(sluice_bin())
        .args(["check", "--config"])
        .arg(&path)
        .env("KEY_O", "sk-openai-pool-000000")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    // File, line and field.
    assert!(
        text.contains(
            "sluice.yaml:9: routes[0].fallback.to[0].provider: no provider named `nobody`"
        ),
        "{text}"
    );
    assert!(
        text.contains("sluice.yaml:10: routes[0].fallback.to[1].provider: provider `mine` must use keys of its own"),
        "{text}"
    );
}

/// Third review, finding 12: a body over a chain's `max_body_bytes` got a TCP reset instead
/// of 413 (the connection was closed on unread bytes). The rest is drained, then answered.
#[tokio::test]
async fn a_body_over_the_chain_limit_gets_413_not_a_reset() {
    use std::io::{Read, Write};
    let mock = Mock::start(&[]);
    let routes = r#"
  - prefix: /chat
    provider: openai
    fallback:
      max_body_bytes: 1024
      to:
        - { provider: anthropic }"#;
    let sluice = Sluice::start_with_env(&config(&mock, routes), &KEYS);
    let body = format!(
        r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", sluice.port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let head = format!(
            "POST /chat/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{expect}\r\n",
            tok().token,
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        if expect.is_empty() {
            // A client that does not wait: the whole body, then the answer.
            let _ = s.write_all(body.as_bytes());
        }
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) => panic!(
                    "{expect:?}: {e} after {:?}",
                    String::from_utf8_lossy(&answer)
                ),
            }
        }
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 413"), "{expect:?}: {text}");
        assert!(text.contains("x-sluice-error: body_too_large"), "{text}");
    }
    assert_eq!(mock.stats().await["requests"], 0);
}
