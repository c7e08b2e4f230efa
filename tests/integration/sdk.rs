//! The official `openai` and `anthropic` Python SDKs, unchanged, pointed at Sluice.
//! Needs a Python with both SDKs: `$SLUICE_PYTHON`, or `.venv/bin/python` as set up by
//! `scripts/test.sh`.

use crate::common::*;
use std::path::PathBuf;
use std::process::Command;

pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "the SDK tests need the openai and anthropic Python SDKs: run scripts/test.sh (it creates .venv), or set SLUICE_PYTHON"
    );
    venv
}

/// Runs `tests/sdk/<script>` with `args`; returns its stdout (JSON), failing with its stderr.
fn run(script: &str, args: &[&str]) -> serde_json::Value {
    run_with_env(script, args, &[])
}

/// `run` with extra environment variables (e.g. `HTTPS_PROXY`).
pub fn run_with_env(script: &str, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let out = Command::new(python())
        .arg(path)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{script}: {e}: {stdout}"))
}

/// The suite's configuration, proxied by `proxy_loop` (`sluice`, `pingora`, or `per-core`:
/// Sluice's loop on two threads, each with its own listening socket).
fn config(mock: &Mock, proxy_loop: &str) -> String {
    // The harness runs two threads.
    let server = match proxy_loop {
        "per-core" => "proxy_loop: sluice\n  thread_per_core: true".to_owned(),
        _ => format!("proxy_loop: {proxy_loop}"),
    };
    format!(
        r#"server:
  {server}
providers:
  - {{ name: openai, kind: openai, base_url: "{url}", keys: [{{ id: o, secret_ref: "env:KEY_O" }}] }}
  - {{ name: anthropic, kind: anthropic, base_url: "{url}", keys: [{{ id: a, secret_ref: "env:KEY_A" }}] }}
routes:
  - {{ prefix: /openai, provider: openai }}
  - {{ prefix: /anthropic, provider: anthropic }}
tokens:
  - {sha}
"#,
        url = mock.url(),
        sha = tok().record
    )
}

const KEYS: [(&str, &str); 2] = [
    ("KEY_O", "sk-openai-pool-000000"),
    ("KEY_A", "sk-ant-pool-0000000"),
];

/// Which loop served the requests so far: (`sluice`, `pingora`).
async fn paths(sluice: &Sluice) -> (f64, f64) {
    (
        sluice
            .metric("sluice_proxy_path_total{path=\"sluice\"}")
            .await,
        sluice
            .metric("sluice_proxy_path_total{path=\"pingora\"}")
            .await,
    )
}

/// Both proxy loops (and Sluice's with a listener per thread) give the SDKs the same answers,
/// and each request took the configured one.
#[tokio::test]
async fn openai_sdk_chat_responses_and_streams() {
    let mut answers = Vec::new();
    for proxy_loop in ["sluice", "pingora", "per-core"] {
        let out = openai_sdk(proxy_loop).await;
        answers.push(out);
    }
    assert_eq!(answers[0], answers[1], "both loops answer alike");
    assert_eq!(
        answers[0], answers[2],
        "a listener per thread answers alike"
    );
}

/// The listening TCP sockets on `port` (`/proc/net/tcp` and `tcp6`, state 0A).
fn listening_sockets(port: u16) -> usize {
    let local = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3 && cols[1].ends_with(&local) && cols[3] == "0A"
        })
        .count()
}

async fn openai_sdk(proxy_loop: &str) -> serde_json::Value {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&config(&mock, proxy_loop), &KEYS);
    let base = sluice.url("/openai/v1");
    let out = run("openai_client.py", &[&base, &tok().token]);
    assert_eq!(out["chat"], "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ");
    assert_eq!(out["chat_usage"], 8);
    assert_eq!(out["stream"], "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ");
    assert_eq!(out["stream_usage"], 8);
    assert_eq!(out["responses"], "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ");
    assert_eq!(out["responses_stream_usage"], 8);
    assert_eq!(out["models"], 2);
    assert_eq!(
        mock.seen("authorization: Bearer sk-openai-pool-000000")
            .await,
        5
    );
    assert!(!mock.stats().await["credentials"]
        .to_string()
        .contains(&tok().token));

    let bad = run(
        "openai_client.py",
        &[&base, "not-a-valid-token", "--expect-auth-error"],
    );
    assert_eq!(bad["error"], "AuthenticationError");
    assert_eq!(bad["status"], 401);
    let (own, pingora) = paths(&sluice).await;
    match proxy_loop {
        "pingora" => assert!(own == 0.0 && pingora >= 6.0, "{own} {pingora}"),
        _ => assert!(own >= 6.0 && pingora == 0.0, "{own} {pingora}"),
    }
    let sockets = if proxy_loop == "per-core" { 2 } else { 1 };
    assert_eq!(listening_sockets(sluice.port), sockets, "{proxy_loop}");
    serde_json::json!({ "answers": out, "refused": bad })
}

#[tokio::test]
async fn anthropic_sdk_messages_and_streams() {
    let mut answers = Vec::new();
    for proxy_loop in ["sluice", "pingora"] {
        answers.push(anthropic_sdk(proxy_loop).await);
    }
    assert_eq!(answers[0], answers[1], "both loops answer alike");
}

async fn anthropic_sdk(proxy_loop: &str) -> serde_json::Value {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&config(&mock, proxy_loop), &KEYS);
    let base = sluice.url("/anthropic");
    let out = run("anthropic_client.py", &[&base, &tok().token]);
    assert_eq!(out["message"], "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ");
    assert_eq!(out["message_usage"], 8);
    assert_eq!(out["stream"], "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ");
    assert_eq!(out["stream_usage"], 8);
    // Both ways the SDKs send keys (Bearer in anthropic 2.x, x-api-key in older SDKs) work.
    assert_eq!(
        out["x_api_key_message"],
        "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 "
    );
    assert_eq!(mock.seen("x-api-key: sk-ant-pool-0000000").await, 3);
    let creds = mock.stats().await["credentials"].to_string();
    assert!(
        !creds.contains(&tok().token) && !creds.contains("authorization"),
        "{creds}"
    );

    let bad = run(
        "anthropic_client.py",
        &[&base, "not-a-valid-token", "--expect-auth-error"],
    );
    assert_eq!(bad["error"], "AuthenticationError");
    assert_eq!(bad["status"], 401);
    let (own, pingora) = paths(&sluice).await;
    match proxy_loop {
        "sluice" => assert!(own >= 4.0 && pingora == 0.0, "{own} {pingora}"),
        _ => assert!(own == 0.0 && pingora >= 4.0, "{own} {pingora}"),
    }
    serde_json::json!({ "answers": out, "refused": bad })
}
