//! The attacks Sluice is known to refuse, each tried against the real binary, its admin API and
//! its listeners. One test per attack (or per family of spellings of one attack); each failed on
//! the code before its fix. Attacks refused since round 1 are tested where their feature is:
//!
//! | attack | where |
//! |---|---|
//! | `alg: none`, HS256 keyed with the RSA public key, tampered signatures, expired / wrong-audience / unknown-issuer JWTs | `jwt.rs` |
//! | made-up `kid`s causing a JWKS fetch storm | `jwt.rs` |
//! | mistyped, unknown, expired, revoked tokens; owner disabled | `tokens.rs` |
//! | client credentials and `X-Sluice-*` reaching the upstream | `reverse.rs`, `forward.rs` |
//! | private, loopback, link-local and mapped addresses through the forward proxy; malformed CONNECT heads | `forward.rs` |
//! | secrets in the store file, logs and API answers; roles on every endpoint | `control.rs` |
//!
//! Here: escalation through the token API, `file:`/`env:` references through the API, benching
//! the key pool from a client, `..` escaping a route, a second credential header, unbounded
//! durations, audit flooding, readable data files, protocol upgrades, 6to4/Teredo and
//! `deny_hosts` addresses, cached JWTs whose key left the JWKS, and request smuggling.

use crate::common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// One raw HTTP/1.1 exchange (clients normalise `..` and `%2e%2e` away; attackers do not).
/// Returns the status and the whole answer.
fn raw(port: u16, head: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(head.as_bytes()).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        // One answer is enough: stop once a complete Content-Length body is in.
        let text = String::from_utf8_lossy(&out);
        if let Some((h, body)) = text.split_once("\r\n\r\n") {
            let len = h
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(usize::MAX);
            if body.len() >= len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn post_head(path: &str, token: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}Connection: close\r\n\r\n{CHAT}",
        CHAT.len()
    )
}

async fn whoami(admin: &str, token: &str) -> (u16, Value) {
    api(admin, token, "GET", "/v1/whoami", None).await
}

/// Item 1: an operator could mint itself an admin token, rotate the admin's token (locking
/// the admin out) or mint a dataplane token to read the sealed feed. Only admins manage tokens
/// of owners with a role; unknown owners are refused.
#[tokio::test]
async fn operators_cannot_manage_tokens_of_owners_with_a_role() {
    let sluice = Sluice::start("");
    let admin = sluice.admin_url();
    let root = sluice.admin_token();
    let op = new_token_for(&admin, &root, "op", Some("operator")).await;
    new_token_for(&admin, &root, "dp", Some("dataplane")).await;
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/owners",
        Some(r#"{"name":"bob"}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (_, listed) = api(&admin, &root, "GET", "/v1/tokens", None).await;
    let id_of = |owner: &str| {
        listed["items"]
            .as_array()
            .and_then(|items| items.iter().find(|t| t["owner"] == owner))
            .and_then(|t| t["id"].as_str())
            .unwrap_or_else(|| panic!("no token of {owner}: {listed}"))
            .to_owned()
    };
    let (root_id, op_id) = (id_of("admin"), id_of("op"));

    // Creating: the matrix of caller × target owner.
    let create = |owner: &str| json!({"name": "x", "owner": owner}).to_string();
    for (caller, token, owner, want) in [
        ("operator", &op, "admin", 403),
        ("operator", &op, "op", 403),
        ("operator", &op, "dp", 403),
        ("operator", &op, "bob", 201),
        ("operator", &op, "ghost", 422),
        ("admin", &root, "dp", 201),
        ("admin", &root, "op", 201),
        ("admin", &root, "ghost", 422),
    ] {
        let (s, v) = api(&admin, token, "POST", "/v1/tokens", Some(&create(owner))).await;
        assert_eq!(s, want, "{caller} creates a token for {owner}: {v}");
        if s == 422 {
            assert_eq!(v["error"]["field"], "owner", "{v}");
        }
    }
    let (s, v) = api(
        &admin,
        &op,
        "POST",
        "/v1/tokens",
        Some(r#"{"owner":"bob"}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let bob_token = v["token"].as_str().unwrap().to_owned();
    let bob_id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(whoami(&admin, &bob_token).await.0, 403, "bob has no role");

    // Rotating and revoking the admin's or another operator's token: refused, and the admin
    // keeps working.
    for path in [
        format!("/v1/tokens/{root_id}/rotate"),
        format!("/v1/tokens/{root_id}/revoke"),
        format!("/v1/tokens/{op_id}/rotate"),
    ] {
        let (s, v) = api(&admin, &op, "POST", &path, Some("{}")).await;
        assert_eq!(s, 403, "operator {path}: {v}");
    }
    assert_eq!(whoami(&admin, &root).await.1["role"], "admin");
    // A role-less owner's tokens are the operator's to manage.
    let (s, v) = api(
        &admin,
        &op,
        "POST",
        &format!("/v1/tokens/{bob_id}/rotate"),
        Some("{}"),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api(
        &admin,
        &op,
        "POST",
        &format!("/v1/tokens/{bob_id}/revoke"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // And the admin may do all of it.
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        &format!("/v1/tokens/{op_id}/revoke"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(whoami(&admin, &op).await.0, 401, "revoked by the admin");
}

/// Item 2: `file:` and `env:` references through the API read the control plane's own files
/// (the master key) and environment (a data plane's control token), and the errors told
/// which files exist.
#[tokio::test]
async fn api_resources_reference_only_stored_secrets() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env("", &[("SLUICE_SECURITY_TEST_ENV", "sk-from-env")]);
    let admin = sluice.admin_url();
    let root = sluice.admin_token();
    let op = new_token_for(&admin, &root, "op", Some("operator")).await;
    let provider = json!({"name": "p", "kind": "openai", "base_url": mock.url()});
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/providers",
        Some(&{
            let mut p = provider.clone();
            p["credentials"] = json!("byok");
            p.to_string()
        }),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let master = sluice.dir.path().join("data/master.key");
    assert!(master.exists());
    for secret_ref in [
        "file:data/master.key".to_owned(),
        format!("file:{}", master.display()),
        "file:/nonexistent/file".to_owned(),
        "env:SLUICE_SECURITY_TEST_ENV".to_owned(),
    ] {
        let body = json!({"id": "k", "secret_ref": secret_ref, "weight": 100}).to_string();
        let (s, v) = api(&admin, &op, "POST", "/v1/providers/p/keys", Some(&body)).await;
        assert_eq!(s, 400, "{secret_ref}: {v}");
        assert_eq!(v["error"]["field"], "secret_ref", "{v}");
        // The same answer whether the file exists or not: no existence oracle.
        let text = v.to_string();
        assert!(
            !text.contains("not found")
                && !text.contains("cannot read")
                && !text.contains("header"),
            "{text}"
        );
        // A whole provider document with the reference: refused when the store is merged.
        let mut p = provider.clone();
        p["name"] = json!("q");
        p["keys"] = json!([{"id": "k", "secret_ref": secret_ref}]);
        let (s, v) = api(&admin, &root, "POST", "/v1/providers", Some(&p.to_string())).await;
        assert_eq!(s, 422, "{secret_ref}: {v}");
        assert_eq!(
            v["error"]["field"], "store:provider/q.keys[0].secret_ref",
            "{v}"
        );
    }
    let mut p = provider.clone();
    p["name"] = json!("q");
    p["ca_file"] = json!("data/master.key");
    p["credentials"] = json!("byok");
    let (s, v) = api(&admin, &root, "POST", "/v1/providers", Some(&p.to_string())).await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (422, Some("store:provider/q.ca_file")),
        "{v}"
    );
    // A value is stored as a sealed secret and works.
    let body = json!({"id": "k", "value": "sk-stored-000000"}).to_string();
    let (s, v) = api(&admin, &op, "POST", "/v1/providers/p/keys", Some(&body)).await;
    assert_eq!(s, 201, "{v}");
}

fn pool(mock: &Mock, keys: &[&str]) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|k| {
            format!(
                "{{ id: {k}, secret_ref: \"env:KEY_{}\" }}",
                k.to_uppercase()
            )
        })
        .collect();
    format!(
        "providers:\n  - {{ name: openai, kind: openai, base_url: \"{}/v1\", keys: [{}] }}\n  - {{ name: solo, kind: anthropic, base_url: \"{}/v1\", keys: [{{ id: s, secret_ref: \"env:KEY_S\" }}] }}\nroutes:\n  - {{ prefix: /openai, provider: openai, auth: token }}\n  - {{ prefix: /solo, provider: solo, auth: token }}\ntokens:\n  - {}\n",
        mock.url(),
        keys.join(", "),
        mock.url(),
        tok().record
    )
}

const POOL_ENV: [(&str, &str); 3] = [
    ("KEY_A", "sk-pool-key-a-000000"),
    ("KEY_B", "sk-pool-key-b-000000"),
    ("KEY_S", "sk-ant-solo-key-000000"),
];

async fn quarantined(sluice: &Sluice, provider: &str, key: &str) -> bool {
    sluice
        .metric(&format!(
            "sluice_key_state{{key=\"{key}\",provider=\"{provider}\",state=\"quarantined\"}}"
        ))
        .await
        == 1.0
}

/// Item 3: any caller could bench every key with two requests whose upstream answered 401
/// (a client-chosen `OpenAI-Organization` the key does not belong to).
#[tokio::test]
async fn clients_cannot_bench_the_key_pool() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&pool(&mock, &["a", "b"]), &POOL_ENV);
    let chat = "/openai/v1/chat/completions";
    // The account headers never reach the upstream with a pool key.
    for header in ["openai-organization", "openai-project"] {
        for _ in 0..4 {
            assert_eq!(
                chat_status(&sluice, chat, &[(header, "org-attacker")]).await,
                200,
                "{header}"
            );
        }
    }
    // 401s that are not about the key (any number of them) leave the pool serving.
    for code in ["mismatched_organization", "mismatched_project"] {
        for _ in 0..4 {
            let h = [("x-mock-status", "401"), ("x-mock-error-code", code)];
            assert_eq!(chat_status(&sluice, chat, &h).await, 401);
        }
        assert_eq!(chat_status(&sluice, chat, &[]).await, 200, "{code}");
    }
    assert!(
        !quarantined(&sluice, "openai", "a").await && !quarantined(&sluice, "openai", "b").await
    );

    // The provider's own invalid-key error benches that key at once while another serves.
    assert_eq!(
        chat_status(&sluice, chat, &[("x-mock-status", "401")]).await,
        401
    );
    let benched = [
        quarantined(&sluice, "openai", "a").await,
        quarantined(&sluice, "openai", "b").await,
    ];
    assert_eq!(benched.iter().filter(|q| **q).count(), 1, "{benched:?}");
    // The last healthy key is not benched by one answer, nor by two.
    for _ in 0..2 {
        assert_eq!(
            chat_status(&sluice, chat, &[("x-mock-status", "401")]).await,
            401
        );
        assert_eq!(chat_status(&sluice, chat, &[]).await, 200);
    }
    // Anthropic's shape, a single-key pool: three invalid-key answers in a row are needed.
    let solo = "/solo/v1/messages";
    for i in 1..=3 {
        assert_eq!(
            chat_status(&sluice, solo, &[("x-mock-status", "401")]).await,
            401
        );
        assert_eq!(quarantined(&sluice, "solo", "s").await, i == 3, "after {i}");
    }
    assert_eq!(chat_status(&sluice, solo, &[]).await, 503);
}

/// Item 4: `..` (raw or percent-encoded) and encoded slashes let an embed-only token reach
/// chat completions on any path-normalising upstream.
#[tokio::test]
async fn dot_segments_and_encoded_slashes_are_refused() {
    let mock = Mock::start(&[]);
    let embed = opaque_token(", scopes: [embed]");
    let config = format!(
        "providers:\n  - {{ name: openai, kind: openai, base_url: \"{}/v1/embeddings\", keys: [{{ id: a, secret_ref: \"env:KEY_A\" }}] }}\nroutes:\n  - {{ prefix: /embed, provider: openai, auth: token, scopes: [embed] }}\ntokens:\n  - {}\n",
        mock.url(),
        embed.record
    );
    let sluice = Sluice::start_with_env(&config, &POOL_ENV);
    for (path, reason) in [
        ("/embed/../chat/completions", "dot_segment"),
        ("/embed/%2e%2e/chat/completions", "dot_segment"),
        ("/embed/%2E./chat/completions", "dot_segment"),
        ("/embed/.%2E/chat/completions", "dot_segment"),
        ("/embed/./x", "dot_segment"),
        ("/embed/x/..", "dot_segment"),
        ("/embed/..%2fchat/completions", "encoded_separator"),
        ("/embed/%2F../chat", "encoded_separator"),
        ("/embed/%5c..%5cchat", "encoded_separator"),
        ("/embed\\..\\chat", "encoded_separator"),
    ] {
        let (status, text) = raw(sluice.port, &post_head(path, &embed.token, ""));
        assert_eq!(status, 400, "{path}: {text}");
        assert!(
            text.contains(&format!("x-sluice-error: {reason}")),
            "{path}: {text}"
        );
    }
    assert_eq!(
        mock.stats().await["requests"],
        0,
        "nothing reached the upstream"
    );
    // Dots inside a segment are ordinary characters.
    let (status, text) = raw(
        sluice.port,
        &post_head("/embed/v1.2/a..b", &embed.token, ""),
    );
    assert_eq!(
        status, 404,
        "the mock has no such path, but it was asked: {text}"
    );
}

/// Item 5 and the JWT-shaped key: every value of every credential header is examined; a
/// repeated credential header is refused; a client's own key is passed whatever its shape.
#[tokio::test]
async fn a_second_credential_header_is_refused_and_byok_keys_of_any_shape_pass() {
    let mock = Mock::start(&[]);
    let config = format!(
        "providers:\n  - {{ name: own, kind: openai, base_url: \"{m}/v1\", credentials: byok }}\n  - {{ name: pref, kind: openai, base_url: \"{m}/v1\", credentials: prefer-byok, keys: [{{ id: a, secret_ref: \"env:KEY_A\" }}] }}\nroutes:\n  - {{ prefix: /own, provider: own, auth: token }}\n  - {{ prefix: /pref, provider: pref, auth: token }}\ntokens:\n  - {}\n",
        tok().record,
        m = mock.url()
    );
    let sluice = Sluice::start_with_env(&config, &POOL_ENV);
    let sluice_bearer = format!("Bearer {}", tok().token);
    let c = client();
    let send = |path: &str, headers: Vec<(&str, String)>| {
        let mut req = c.post(sluice.url(path)).body(CHAT);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let r = send(
        "/own/v1/chat/completions",
        vec![
            ("x-sluice-token", tok().token.clone()),
            ("authorization", "Bearer sk-own-key-000000".into()),
            ("authorization", sluice_bearer.clone()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-sluice-error"], "duplicate_credential");
    for header in ["x-sluice-token", "x-api-key"] {
        let r = send(
            "/own/v1/chat/completions",
            vec![
                ("x-sluice-token", tok().token.clone()),
                (header, "sk-own-key-000000".into()),
                (header, "sk-own-key-000001".into()),
            ],
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 400, "{header} twice");
    }
    let stats = mock.stats().await;
    assert_eq!(stats["requests"], 0, "{stats}");

    // prefer-byok with a JWT-shaped provider key: the key goes upstream, not nothing.
    let jwt_key = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJrZXkiOiJvd24ifQ.c2lnbmF0dXJl";
    let r = send(
        "/pref/v1/chat/completions",
        vec![
            ("x-sluice-token", tok().token.clone()),
            ("authorization", jwt_key.into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(mock.seen(&format!("authorization: {jwt_key}")).await, 1);
    // The Sluice token itself in Authorization next to X-Sluice-Token is still stripped.
    let r = send(
        "/own/v1/chat/completions",
        vec![
            ("x-sluice-token", tok().token.clone()),
            ("x-api-key", "sk-own-key-000000".into()),
            ("authorization", sluice_bearer.clone()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        mock.seen(&format!("authorization: {sluice_bearer}")).await,
        0
    );
    assert_eq!(mock.seen("x-api-key: sk-own-key-000000").await, 1);
}

/// Item 6: `expires_in: 10000y` panicked the handler (a date past 9999) and reset the
/// connection.
#[tokio::test]
async fn durations_from_the_api_are_bounded() {
    let sluice = Sluice::start("");
    let admin = sluice.admin_url();
    let root = sluice.admin_token();
    for body in [
        json!({"expires_in": "10000y"}),
        json!({"expires_in": "11y"}),
        json!({"expires_in": "18446744073709551615s"}),
    ] {
        let (s, v) = api(&admin, &root, "POST", "/v1/tokens", Some(&body.to_string())).await;
        assert_eq!(
            (s, v["error"]["field"].as_str()),
            (400, Some("expires_in")),
            "{body}: {v}"
        );
    }
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/tokens",
        Some(r#"{"expires_in":"3650d"}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap();
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        &format!("/v1/tokens/{id}/rotate"),
        Some(r#"{"grace":"10000y"}"#),
    )
    .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("grace")),
        "{v}"
    );
    // Numbers the snapshot does arithmetic with are bounded too.
    let issuer = json!({"name": "i", "issuer": "http://127.0.0.1:9/i", "audiences": ["a"], "leeway_seconds": u64::MAX});
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/issuers",
        Some(&issuer.to_string()),
    )
    .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (422, Some("store:issuer/i.leeway_seconds")),
        "{v}"
    );
    let provider = json!({"name": "p", "kind": "openai", "base_url": "http://127.0.0.1:9", "credentials": "byok", "quarantine_seconds": u64::MAX});
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/providers",
        Some(&provider.to_string()),
    )
    .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (422, Some("store:provider/p.quarantine_seconds")),
        "{v}"
    );
    assert_eq!(whoami(&admin, &root).await.0, 200, "still serving");
}

/// Item 7: refused requests with 64 KiB paths wrote 65 KiB audit lines, and enough of them
/// rotated every usage record out of retention.
#[tokio::test]
async fn refused_requests_cannot_flush_the_usage_records() {
    let mock = Mock::start(&[]);
    let dynamic = format!(
        "audit:\n  max_bytes: 20000\n  keep: 1\n{}",
        pool(&mock, &["a", "b"])
    );
    let sluice = Sluice::start_with_env(&dynamic, &POOL_ENV);
    assert_eq!(
        chat_status(&sluice, "/openai/v1/chat/completions", &[]).await,
        200
    );
    let long = format!("/openai/{}", "a".repeat(16 * 1024));
    for _ in 0..60 {
        let (status, _) = raw(sluice.port, &post_head(&long, "sluice_bad", ""));
        assert_eq!(status, 401);
    }
    let data = sluice.dir.path().join("data");
    let read = |name: &str| std::fs::read_to_string(data.join(name)).unwrap_or_default();
    let started = Instant::now();
    while !data.join("audit.refused.jsonl").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "refused records not written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The writer drains every 20 ms: let it catch up with the rest.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!read("audit.refused.jsonl").is_empty());
    let usage = read("audit.jsonl");
    assert_eq!(usage.lines().count(), 1, "{usage}");
    assert!(usage.contains("\"status\":200"), "{usage}");
    for line in read("audit.refused.jsonl").lines() {
        assert!(line.len() < 2048, "an audit line of {} bytes", line.len());
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["status"], 401);
    }
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Item 8: the data directory was 0755 and its files 0644; a readable master key is refused.
#[tokio::test]
async fn data_files_are_private_and_a_readable_master_key_is_refused() {
    let mock = Mock::start(&[]);
    let mut sluice = Sluice::start_with_env(&pool(&mock, &["a"]), &POOL_ENV);
    assert_eq!(
        chat_status(&sluice, "/openai/v1/chat/completions", &[]).await,
        200
    );
    let data = sluice.dir.path().join("data");
    let started = Instant::now();
    while !data.join("audit.jsonl").exists() {
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mode(&data), 0o700);
    for name in ["sluice.db", "audit.jsonl", "master.key", "admin-token"] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    // A data directory left readable by an earlier version is narrowed at start.
    sluice.stop();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        data.join("audit.jsonl"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    sluice.relaunch();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("audit.jsonl")), 0o600);
    sluice.stop();
    std::fs::set_permissions(
        data.join("master.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = std::process::Command::new(sluice_bin())
        .args(["serve", "--config"])
        .arg(&sluice.config)
        .envs(POOL_ENV)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started with a readable master key: {stderr}"
    );
    assert!(
        stderr.contains("master.key") && stderr.contains("chmod 600"),
        "{stderr}"
    );
}

/// Suspected, confirmed: `Upgrade` went upstream, and a 101 would have turned the connection
/// into a raw tunnel whose later requests skip auth and accounting.
#[tokio::test]
async fn protocol_upgrades_are_refused() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&pool(&mock, &["a"]), &POOL_ENV);
    for extra in [
        "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        "Upgrade: h2c\r\n",
    ] {
        let head = post_head("/openai/v1/chat/completions", &tok().token, extra)
            .replace("Connection: close", "Connection: Upgrade");
        let (status, text) = raw(sluice.port, &head);
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("x-sluice-error: upgrade_refused"), "{text}");
    }
    assert_eq!(mock.stats().await["requests"], 0);
}

/// Suspected, confirmed: 6to4 and Teredo addresses embed IPv4 destinations the SSRF guard did
/// not look at; `deny_hosts` matched names only, not the addresses they resolve to.
#[tokio::test]
async fn forward_proxy_refuses_embedded_and_denied_addresses() {
    let token = opaque_token("");
    let dynamic = format!(
        "forward:\n  policy: tunnel\n  allow_cidrs: [127.0.0.0/8]\n  deny_hosts: [127.0.0.2/32]\ntokens:\n  - {}\n",
        token.record
    );
    let sluice = Sluice::start_forward(&dynamic, &[]);
    let port = sluice.forward.unwrap();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("x:{}", token.token));
    for target in [
        "[2002:7f00:1::1]:443",
        "[2001:0:4136:e378:8000:63bf:3fff:fdd2]:443",
        "127.0.0.2:443",
    ] {
        let head = format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\r\n"
        );
        let (status, text) = raw(port, &head);
        assert_eq!(status, 403, "{target}: {text}");
    }
}

/// Suspected, confirmed: a verified JWT stayed cached until its `exp` after its key left the
/// issuer's JWKS.
#[tokio::test]
async fn cached_jwts_die_with_their_key() {
    let idp = Idp::start();
    let mock = Mock::start(&[]);
    let dynamic = format!(
        "providers:\n  - {{ name: openai, kind: openai, base_url: \"{}\", keys: [{{ id: a, secret_ref: \"env:KEY_A\" }}] }}\nroutes:\n  - {{ prefix: /openai, provider: openai, auth: jwt }}\nissuers:\n  - {{ name: idp, issuer: \"{}\", audiences: [\"urn:sluice:gateway\"], principal_claim: client_id }}\n",
        mock.url(),
        idp.issuer()
    );
    let sluice = Sluice::start_with_env(&dynamic, &POOL_ENV);
    let old = idp.token("rs-client", "llm.invoke").await;
    let bearer = |t: &str| format!("Bearer {t}");
    let path = "/openai/v1/chat/completions";
    assert_eq!(
        call(&sluice, path, &[("authorization", &bearer(&old))])
            .await
            .0,
        200
    );
    idp.rotate().await;
    idp.retire().await;
    // A token signed with the new key makes Sluice fetch the JWKS, which lacks the old key.
    let new = idp.token("rs-client", "llm.invoke").await;
    assert_eq!(
        call(&sluice, path, &[("authorization", &bearer(&new))])
            .await
            .0,
        200
    );
    assert_eq!(
        call(&sluice, path, &[("authorization", &bearer(&old))]).await,
        (401, "unknown_kid".to_owned())
    );
}

/// Already refused (kept so): a request with both `Content-Length` and `Transfer-Encoding`
/// (the classic CL.TE smuggling shape) never carries a second request past the filters.
#[tokio::test]
async fn smuggled_requests_do_not_reach_the_upstream() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&pool(&mock, &["a"]), &POOL_ENV);
    let smuggled = "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n";
    let body = format!("0\r\n\r\n{smuggled}");
    let head = format!(
        "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}",
        tok().token,
        body.len()
    );
    let (status, text) = raw(sluice.port, &head);
    assert!(status == 400 || status == 200, "{text}");
    let stats = mock.stats().await;
    assert!(stats["requests"].as_u64() <= Some(1), "{stats}");
}
