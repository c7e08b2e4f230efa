//! `kind: gemini`: Google's Generative Language API behind Sluice, through the official
//! `google-genai` SDK: the Sluice token in `x-goog-api-key`, a pool key injected there, usage
//! read from `usageMetadata` (JSON and `alt=sse`), Google's error shape for Sluice's refusals,
//! and keys judged by Google's own `API_KEY_INVALID`.

use crate::common::*;
use crate::sdk::run_with_env;
use crate::security::quarantined;

const KEYS: [(&str, &str); 2] = [
    ("KEY_G1", "gk-pool-one-000000"),
    ("KEY_G2", "gk-pool-two-000000"),
];

fn config(mock: &Mock) -> String {
    two_key_config(mock, "gemini", "gemini", 'g')
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
    for stream in [false, true] {
        let r = wait_audit(&sluice, |r| {
            r["provider"] == "gemini" && r["stream"] == stream
        })
        .await
        .expect("an audit record");
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
    let queries = [
        "key=client-junk&alt=json",
        "k%65y=client-junk",
        "$key=client-junk",
        "%24key=client-junk",
        "access_token=client-junk",
        "oauth_token=client-junk",
    ];
    for query in queries {
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
    assert!(
        !quarantined(&sluice, "gemini", "g1").await && !quarantined(&sluice, "gemini", "g2").await
    );
    let invalid = &[
        ("x-mock-status", "400"),
        ("x-mock-error-code", "API_KEY_INVALID"),
    ];
    assert_eq!(send(invalid).await, 400);
    let benched = [
        quarantined(&sluice, "gemini", "g1").await,
        quarantined(&sluice, "gemini", "g2").await,
    ];
    assert_eq!(benched.iter().filter(|q| **q).count(), 1, "{benched:?}");
    assert_eq!(send(&[]).await, 200);
}

/// Google's 401s are about OAuth credentials a client may send (`access_token`), never the
/// pool's API key: however many, they bench nothing. (Found by an outside attack: six such
/// answers benched both keys.)
#[tokio::test]
async fn googles_401s_do_not_bench_keys() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&config(&mock), &KEYS);
    let path = "/gemini/v1beta/models/gemini-mock:generateContent";
    for _ in 0..8 {
        let status = client()
            .post(sluice.url(path))
            .header("x-goog-api-key", &tok().token)
            .header("x-mock-status", "401")
            .header("x-mock-error-code", "ACCESS_TOKEN_TYPE_UNSUPPORTED")
            .body(r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401);
    }
    assert!(
        !quarantined(&sluice, "gemini", "g1").await && !quarantined(&sluice, "gemini", "g2").await
    );
}

/// The model named in the path is read as Google reads it (percent-decoded), so a budget
/// prices `%67emini-2.5-pro` as gemini-2.5-pro; a path whose model cannot be read is priced
/// at the dearest price, not at none.
#[tokio::test]
async fn the_path_model_is_read_as_google_reads_it() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&config(&mock), &KEYS);
    let send = |path: &'static str, id: &'static str| {
        let req = client()
            .post(sluice.url(path))
            .header("x-goog-api-key", &tok().token)
            .header("x-request-id", id)
            .body(r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let cases = [
        (
            "/gemini/v1beta/models/%67emini-2.5-pro:generateContent",
            "pm-encoded",
            "gemini-2.5-pro",
        ),
        (
            "/gemini/v1beta/models/gemini-2.5-pro;x=1:generateContent",
            "pm-param",
            "gemini-2.5-pro",
        ),
        (
            "/gemini/v1beta/tunedModels/mine:generateContent",
            "pm-tuned",
            "(unread)",
        ),
    ];
    for (path, id, model) in cases {
        send(path, id).await;
        let record = wait_audit(&sluice, |r| r["request_id"] == id)
            .await
            .unwrap();
        assert_eq!(record["model"], model, "{path}: {record}");
    }
}

/// `prefer-byok`: a client's own key goes upstream, but a Sluice token never does — not
/// joined to the key in one header value, not quoted, not in the query. (Found by an outside
/// attack.)
#[tokio::test]
async fn a_client_key_passes_and_the_sluice_token_never_does() {
    let mock = Mock::start(&[]);
    let dynamic = config(&mock).replace(
        "routes:\n",
        &format!(
            "  - {{ name: byok, kind: gemini, base_url: \"{}\", credentials: prefer-byok, keys: [{{ id: b1, secret_ref: \"env:KEY_G1\" }}] }}\nroutes:\n  - {{ prefix: /byok, provider: byok, auth: token }}\n",
            mock.url()
        ),
    );
    let sluice = Sluice::start_with_env(&dynamic, &KEYS);
    let token = &tok().token;
    let path = "/byok/v1beta/models/gemini-mock:generateContent";
    let send = |query: String, key: String| {
        let req = client()
            .post(format!("{}{query}", sluice.url(path)))
            .header("x-sluice-token", token)
            .header("x-goog-api-key", key)
            .body(r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send(String::new(), "client-own-key".into()).await, 200);
    send(String::new(), format!("client-own-key, {token}")).await;
    send(String::new(), format!("\"{token}\"")).await;
    send(format!("?key={token}"), "client-own-key".into()).await;
    let credentials = mock.stats().await["credentials"].to_string();
    assert!(
        credentials.contains("x-goog-api-key: client-own-key"),
        "{credentials}"
    );
    assert!(!credentials.contains(token.as_str()), "{credentials}");
}
