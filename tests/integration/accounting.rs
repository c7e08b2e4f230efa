//! Usage accounting and audit records: usage equals what the upstream sent (JSON and SSE, three
//! API shapes, real SDKs), a cut stream still leaves a record, a slow or failing sink never
//! affects requests, and no secret reaches a record.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const KEYS: [(&str, &str); 2] = [
    ("KEY_O", "sk-acct-openai-000000"),
    ("KEY_A", "sk-acct-anthropic-0000"),
];

fn config(mock: &Mock, audit: &str) -> String {
    format!(
        r#"audit:
{audit}
providers:
  - {{ name: openai, kind: openai, base_url: "{url}", keys: [{{ id: o1, secret_ref: "env:KEY_O" }}] }}
  - {{ name: anthropic, kind: anthropic, base_url: "{url}", keys: [{{ id: a1, secret_ref: "env:KEY_A" }}] }}
routes:
  - {{ prefix: /openai, provider: openai, auth: token }}
  - {{ prefix: /anthropic, provider: anthropic, auth: token }}
tokens:
  - {tok}
"#,
        url = mock.url(),
        tok = tok().record
    )
}

fn audit_file(sluice: &Sluice) -> PathBuf {
    sluice.dir.path().join("data/audit.jsonl")
}

/// Waits for the audit record of `request_id`.
async fn record(file: &Path, request_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Some(v) = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["request_id"] == request_id)
            {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no audit record for {request_id}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn post(sluice: &Sluice, path: &str, body: &str) -> (String, String) {
    let r = client()
        .post(sluice.url(path))
        .bearer_auth(&tok().token)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    (id, r.text().await.unwrap())
}

/// The usage an SSE body carried, read the simple way (whole body at hand).
fn last_event_with(body: &str, field: &str) -> Value {
    body.lines()
        .rev()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| !v.pointer(field).unwrap_or(&Value::Null).is_null())
        .unwrap_or_else(|| panic!("no event with {field} in {body}"))
}

#[tokio::test]
async fn records_carry_the_usage_the_upstream_sent() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&config(&mock, "  sink: file"), &KEYS);
    let file = audit_file(&sluice);
    let chat = r#"{"messages":[{"role":"user","content":"count"}],"model":"gpt-mock"}"#;
    let chat_stream = r#"{"messages":[{"role":"user","content":"count"}],"model":"gpt-mock","stream":true,"stream_options":{"include_usage":true}}"#;
    let resp = r#"{"model":"gpt-mock","input":"count"}"#;
    let resp_stream = r#"{"model":"gpt-mock","input":"count","stream":true}"#;
    let msg =
        r#"{"model":"claude-mock","max_tokens":64,"messages":[{"role":"user","content":"count"}]}"#;
    let msg_stream = r#"{"model":"claude-mock","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"count"}]}"#;

    // (path, body, stream, where the upstream put usage, input field, output field)
    let cases = [
        (
            "/openai/v1/chat/completions",
            chat,
            false,
            "",
            "/usage/prompt_tokens",
            "/usage/completion_tokens",
        ),
        (
            "/openai/v1/chat/completions",
            chat_stream,
            true,
            "/usage",
            "/usage/prompt_tokens",
            "/usage/completion_tokens",
        ),
        (
            "/openai/v1/responses",
            resp,
            false,
            "",
            "/usage/input_tokens",
            "/usage/output_tokens",
        ),
        (
            "/openai/v1/responses",
            resp_stream,
            true,
            "/response/usage",
            "/response/usage/input_tokens",
            "/response/usage/output_tokens",
        ),
        (
            "/anthropic/v1/messages",
            msg,
            false,
            "",
            "/usage/input_tokens",
            "/usage/output_tokens",
        ),
    ];
    for (path, body, stream, usage_at, input_at, output_at) in cases {
        let (id, text) = post(&sluice, path, body).await;
        let sent = if stream {
            last_event_with(&text, usage_at)
        } else {
            serde_json::from_str(&text).unwrap()
        };
        let r = record(&file, &id).await;
        assert_eq!(
            r["usage"]["input"],
            sent.pointer(input_at).cloned().unwrap(),
            "{path} {r}"
        );
        assert_eq!(
            r["usage"]["output"],
            sent.pointer(output_at).cloned().unwrap(),
            "{path} {r}"
        );
        assert_eq!(r["stream"], stream);
        assert_eq!(r["status"], 200);
        // The principal is the token's owner; the token's name and id are beside it.
        assert_eq!(r["principal"], "owner:ci-bot");
        assert_eq!(
            (r["name"].as_str(), r["owner"].as_str()),
            (Some("ci"), Some("ci-bot"))
        );
        assert_eq!(r["token_id"].as_str().map(str::len), Some(12));
        assert_eq!(r["credential_kind"], "opaque");
        assert_eq!(r["provider_credential"], "centralized");
        assert_eq!(r["bytes_in"], body.len());
        assert_eq!(r["bytes_out"], text.len());
        assert!(
            r["model"] == "gpt-mock" || r["model"] == "claude-mock",
            "{r}"
        );
    }
    // Anthropic streams: input in message_start, output in message_delta.
    let (id, text) = post(&sluice, "/anthropic/v1/messages", msg_stream).await;
    let start = last_event_with(&text, "/message/usage");
    let delta = last_event_with(&text, "/usage/output_tokens");
    let r = record(&file, &id).await;
    assert_eq!(
        r["usage"]["input"],
        start["message"]["usage"]["input_tokens"]
    );
    assert_eq!(r["usage"]["output"], delta["usage"]["output_tokens"]);
    assert_eq!(r["key_id"], "a1");

    // The official SDKs, streaming and not: every call with usage has a record saying so.
    let base = sluice.url("/openai/v1");
    let out = std::process::Command::new(crate::sdk::python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/openai_client.py"))
        .args([&base, &tok().token])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let sdk_records = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let records: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| {
                v["path"].as_str().is_some_and(|p| p.ends_with("/models"))
                    || v["usage"]["output"] == 8
            })
            .collect();
        if records.len() >= 11 || Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // 6 direct calls above + 4 SDK generation calls carry output 8; one SDK call lists models.
    assert_eq!(
        sdk_records
            .iter()
            .filter(|v| v["usage"]["output"] == 8)
            .count(),
        10,
        "{sdk_records:?}"
    );

    // `sluice usage` adds them up.
    let out = std::process::Command::new(sluice_bin())
        .args([
            "usage", "--by", "model", "--json", "--since", "1h", "--file",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let totals: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(totals["gpt-mock"]["output"], 8 * 8, "{totals}");
    assert_eq!(totals["claude-mock"]["output"], 8 * 2, "{totals}");

    let m = sluice.metrics().await;
    assert!(
        m.contains(
            "sluice_tokens_total{direction=\"output\",model=\"gpt-mock\",provider=\"openai\"} 64"
        ),
        "{m}"
    );
    let all = std::fs::read_to_string(&file).unwrap();
    for secret in [KEYS[0].1, KEYS[1].1, tok().token.as_str()] {
        assert!(!all.contains(secret), "an audit record holds a secret");
        assert!(
            !sluice.proc.log_text().contains(secret),
            "the log holds a secret"
        );
    }
}

#[tokio::test]
async fn a_stream_cut_by_the_client_still_leaves_a_record() {
    let mock = Mock::start(&["--chunks", "20", "--chunk-interval-ms", "100"]);
    let sluice = Sluice::start_with_env(&config(&mock, "  sink: file"), &KEYS);
    let mut r = client()
        .post(sluice.url("/openai/v1/chat/completions"))
        .bearer_auth(&tok().token)
        .body(CHAT_STREAM)
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let first = r.chunk().await.unwrap().unwrap();
    drop(r);
    let rec = record(&audit_file(&sluice), &id).await;
    assert_eq!(rec["status"], 200);
    assert_eq!(rec["stream"], true);
    let out = rec["bytes_out"].as_u64().unwrap();
    assert!(out >= first.len() as u64 && out < 2_000, "{rec}");
    assert!(rec["usage"].is_null(), "the usage event never came: {rec}");
}

#[tokio::test]
async fn slow_or_failing_sinks_never_touch_requests() {
    let mock = Mock::start(&[]);
    // Failing: the audit path is a directory.
    let dir = tempfile::tempdir().unwrap();
    let failing = Sluice::start_with_env(
        &config(&mock, &format!("  path: {}", dir.path().display())),
        &KEYS,
    );
    // Slow: a FIFO nobody reads (the writer blocks in open), with a tiny queue.
    let fifo = dir.path().join("audit.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let slow = Sluice::start_with_env(
        &config(&mock, &format!("  path: {}\n  queue: 2", fifo.display())),
        &KEYS,
    );
    for sluice in [&failing, &slow] {
        for _ in 0..20 {
            let (_, text) = post(sluice, "/openai/v1/chat/completions", CHAT).await;
            assert!(text.contains("chat.completion"));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while failing
        .metric("sluice_audit_dropped_total{reason=\"write_error\"}")
        .await
        < 20.0
    {
        assert!(Instant::now() < deadline, "write errors not counted");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        slow.metric("sluice_audit_dropped_total{reason=\"queue_full\"}")
            .await
            >= 15.0
    );
}

/// The client's address in the audit record: the peer, unless the peer is a trusted proxy
/// (`server.trusted_proxies`), whose `X-Forwarded-For` then names the client (the rightmost
/// entry that is not a trusted proxy: a client writes what it likes to the left). Forwarding
/// headers never reach the upstream.
#[tokio::test]
async fn the_client_address_is_the_peer_or_what_a_trusted_proxy_says() {
    let mock = Mock::start(&[]);
    let send = |sluice: &Sluice, xff: &'static str| {
        let url = sluice.url("/openai/v1/chat/completions");
        async move {
            let r = client()
                .post(url)
                .bearer_auth(&tok().token)
                .header("x-forwarded-for", xff)
                .header("forwarded", "for=198.51.100.77")
                .body(CHAT)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.headers()["x-request-id"].to_str().unwrap().to_owned()
        }
    };
    let spoof = "203.0.113.66, 10.9.9.9";

    // The client address a Sluice trusting `trusted` records for the spoofed header.
    let recorded = |trusted: &'static str| {
        let dynamic = format!(
            "  trusted_proxies: [{trusted}]\n{}",
            config(&mock, "  sink: file")
        );
        async move {
            let sluice = Sluice::start_with_env(&dynamic, &KEYS);
            let id = send(&sluice, spoof).await;
            let client = record(&audit_file(&sluice), &id).await["client"].clone();
            (sluice, client)
        }
    };
    // Nobody trusted: what the client claims is ignored.
    assert_eq!(recorded("").await.1, "127.0.0.1");
    // Loopback is the load balancer: the rightmost untrusted entry is the client.
    assert_eq!(recorded("127.0.0.0/8").await.1, "10.9.9.9");
    // With the inner network trusted too, the next hop out.
    let (chain, client) = recorded("127.0.0.0/8, 10.0.0.0/8").await;
    assert_eq!(client, "203.0.113.66");

    let stats = mock.stats().await;
    assert_eq!(stats["requests"], 3, "{stats}");
    assert_eq!(
        stats["forwarding_headers"], 0,
        "forwarding headers reached the upstream"
    );

    // A bad entry is named by field and line.
    std::fs::write(
        chain.dir.path().join("bad.yaml"),
        "server:\n  trusted_proxies: [10.0.0.0/33]\n",
    )
    .unwrap();
    let out = std::process::Command::new(sluice_bin())
        .args(["check", "--config"])
        .arg(chain.dir.path().join("bad.yaml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains(":2: server.trusted_proxies[0]"), "{text}");
}
