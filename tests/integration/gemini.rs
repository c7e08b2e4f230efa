//! `kind: gemini`: Google's Generative Language API behind Sluice, through the official
//! `google-genai` SDK: the Sluice token in `x-goog-api-key`, a pool key injected there, usage
//! read from `usageMetadata` (JSON and `alt=sse`), Google's error shape for Sluice's refusals,
//! and keys judged by Google's own `API_KEY_INVALID`.

use crate::common::*;
use crate::sdk::run_with_env;

const KEYS: [(&str, &str); 2] = [
    ("KEY_G1", "gk-pool-one-000000"),
    ("KEY_G2", "gk-pool-two-000000"),
];

fn config(mock: &Mock) -> String {
    format!(
        r#"audit:
  sink: file
providers:
  - {{ name: gemini, kind: gemini, base_url: "{url}", keys: [{{ id: g1, secret_ref: "env:KEY_G1" }}, {{ id: g2, secret_ref: "env:KEY_G2" }}] }}
routes:
  - {{ prefix: /gemini, provider: gemini, auth: token }}
tokens:
  - {sha}
"#,
        url = mock.url(),
        sha = tok().record
    )
}

async fn quarantined(sluice: &Sluice, key: &str) -> bool {
    let sample =
        format!("sluice_key_state{{key=\"{key}\",provider=\"gemini\",state=\"quarantined\"}}");
    sluice.metric(&sample).await == 1.0
}

#[tokio::test]
async fn the_google_genai_sdk_through_sluice() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&config(&mock), &KEYS);
    let base = sluice.url("/gemini");
    let out = run_with_env("gemini_client.py", &[&base, &tok().token], &[]);
    assert_eq!(
        out["text"], "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ",
        "{out}"
    );
    assert_eq!(out["usage"], 8);
    assert_eq!(
        out["stream"], "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ",
        "{out}"
    );
    assert_eq!(out["stream_usage"], 8);
    // The pool's keys went upstream in Google's header, never the client's token.
    let credentials = mock.stats().await["credentials"].to_string();
    assert!(!credentials.contains(&tok().token), "{credentials}");
    assert!(
        credentials.contains("x-goog-api-key: gk-pool-"),
        "{credentials}"
    );

    // Usage and the model (named in the path) are recorded, streamed or not.
    let records = || {
        let path = sluice.dir.path().join("data/audit.jsonl");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["provider"] == "gemini")
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while records().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no audit records");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    for r in records() {
        assert_eq!(r["model"], "gemini-mock", "{r}");
        assert_eq!(r["usage"]["output"], 8, "{r}");
        assert!(r["usage"]["input"].as_u64().unwrap() > 0, "{r}");
    }

    // A bad token: the SDK's own ClientError, from Google's error shape.
    let bad = run_with_env(
        "gemini_client.py",
        &[&base, "not-a-valid-token", "--expect-auth-error"],
        &[],
    );
    assert_eq!(bad["code"], 401, "{bad}");
    assert_eq!(bad["status"], "UNAUTHENTICATED", "{bad}");
}

/// `?key=` is not a way in, and never reaches Google: Sluice's key replaces it.
#[tokio::test]
async fn a_key_in_the_query_is_neither_a_credential_nor_forwarded() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&config(&mock), &KEYS);
    let path = "/gemini/v1beta/models/gemini-mock:generateContent";
    let body = r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#;
    let post = |query: String, token: bool| {
        let mut req = client()
            .post(format!("{}?{query}", sluice.url(path)))
            .header("content-type", "application/json")
            .body(body);
        if token {
            req = req.header("x-goog-api-key", &tok().token);
        }
        async move { req.send().await.unwrap() }
    };
    let refused = post(format!("key={}", tok().token), false).await;
    assert_eq!(refused.status(), 401);
    let shape: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(shape["error"]["status"], "UNAUTHENTICATED", "{shape}");
    for query in ["key=client-junk&alt=json", "k%65y=client-junk"] {
        let ok = post(query.to_owned(), true).await;
        assert_eq!(ok.status(), 200, "{query}");
    }
    let credentials = mock.stats().await["credentials"].to_string();
    assert!(!credentials.contains("client-junk"), "{credentials}");
    assert!(!credentials.contains(&tok().token), "{credentials}");
}

/// Google's own invalid-key error (400 with reason `API_KEY_INVALID`) benches that key while
/// the other serves; other 400s say nothing about the key.
#[tokio::test]
async fn googles_invalid_key_error_benches_the_key() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&config(&mock), &KEYS);
    let path = "/gemini/v1beta/models/gemini-mock:generateContent";
    let send = |extra: &'static [(&'static str, &'static str)]| {
        let mut req = client()
            .post(sluice.url(path))
            .header("x-goog-api-key", &tok().token)
            .header("content-type", "application/json")
            .body(r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    for _ in 0..4 {
        let bad_request = &[
            ("x-mock-status", "400"),
            ("x-mock-error-code", "INVALID_ARGUMENT"),
        ];
        assert_eq!(send(bad_request).await, 400);
    }
    assert!(!quarantined(&sluice, "g1").await && !quarantined(&sluice, "g2").await);
    let invalid = &[
        ("x-mock-status", "400"),
        ("x-mock-error-code", "API_KEY_INVALID"),
    ];
    assert_eq!(send(invalid).await, 400);
    let benched = [
        quarantined(&sluice, "g1").await,
        quarantined(&sluice, "g2").await,
    ];
    assert_eq!(benched.iter().filter(|q| **q).count(), 1, "{benched:?}");
    assert_eq!(send(&[]).await, 200);
}
