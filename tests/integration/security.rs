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
//!
//! The third review (one identity, one admission path), finding by finding:
//!
//! | finding | test |
//! |---|---|
//! | 1 High: a victim's upstream account bound to the attacker's principal (callback in another browser) | `vault.rs` `a_callback_completes_only_in_the_browser_that_confirmed`; forged consent values in `disconnect_revokes_upstream_and_states_are_single_use` |
//! | 2 High: tokens of Sluice's issuer as general credentials; revocation not checked everywhere | `admission.rs` `every_entry_point_admits_and_refuses_alike` |
//! | 3: `oauth_provider_attach` bypassed by re-pointing a URL or naming an `mcp` secret | `pointing_users_grants_or_mcp_secrets_elsewhere_needs_the_attach_permission` |
//! | 4: principals collide (names, `token:` limits, `sub`, `client_id`); colliding names at load | `principals_of_different_callers_never_collide`, `issuer_and_owner_names_that_could_collide_are_refused` |
//! | 5: USD budgets bypassed by an escaped or repeated model name | `escaped_or_repeated_model_names_are_priced_as_the_upstream_reads_them` |
//! | 6: `..;`, `%2e%2e;`, `..%3B`, long segments, `%252e%252e` | `dot_segments_and_encoded_slashes_are_refused` |
//! | 7: an operator acts as any user upstream; operators mint production credentials | `operators_cannot_act_as_users_upstream_or_mint_production_credentials` |
//! | 8: a dataplane token yields every user's grant through `/v1/vault` | `a_dataplane_token_alone_reaches_nobodys_grant` |
//! | 9, 10, 12 (introspection): audit flood, lock-out by wrong secrets, other apps' tokens introspected | `the_token_endpoint_cannot_be_flooded_or_used_to_lock_an_app_out` |
//! | 11: MCP GET streams uncapped; a closed client not noticed before the upstream answers | `mcp.rs` `mcp_streams_are_capped_and_end_with_their_client` |
//! | 12: OAuth discovery reaches cloud metadata and echoes what it fetched | `oauth_discovery_neither_reaches_metadata_nor_echoes_what_it_fetched` |
//! | 12: a fallback body over `max_body_bytes` reset instead of 413 | `fallback.rs` `a_body_over_the_chain_limit_gets_413_not_a_reset` |
//! | 12: a deleted owner's grants pass to a new owner of the same name | `vault.rs` `a_recreated_owner_is_another_principal` |
//! | 13: the forward proxy skips every per-route control | `intercepted_traffic_is_admitted_as_its_route` |
//! | 14 (suspected): the connect link reaches the model in tool results | `mcp.rs` `users_reach_tools_as_themselves_through_the_vault` (no link in a tool result unless the server opts in) |

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

pub(crate) async fn quarantined(sluice: &Sluice, provider: &str, key: &str) -> bool {
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
        // Third review, finding 6: path parameters (`..;` is `..` to Tomcat, Jetty and
        // Spring), long segments, and double encoding.
        ("/embed/..;/chat/completions", "dot_segment"),
        ("/embed/%2e%2e;/chat/completions", "dot_segment"),
        ("/embed/..%3B/chat/completions", "dot_segment"),
        ("/embed/..;jsessionid=0123456789/chat", "dot_segment"),
        ("/embed/%252e%252e/chat/completions", "dot_segment"),
        ("/embed/.;x/chat", "dot_segment"),
        ("/embed/%252fchat", "encoded_separator"),
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
    // The writer drains every 20 ms: wait until it wrote the answered request's record.
    while read("audit.jsonl").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "usage record not written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

// ---- Third review (round 3): one identity, one admission path ----

fn token_id(t: &TestToken) -> String {
    let rest = t.record.split("id: ").nth(1).expect("id");
    rest.split(',').next().expect("id").trim().to_owned()
}

async fn chat_as(sluice: &Sluice, path: &str, token: &str) -> (u16, String) {
    let bearer = format!("Bearer {token}");
    call(sluice, path, &[("authorization", &bearer)]).await
}

/// Finding 4: a principal was a string, and different strings collided. Two owner-less tokens
/// named `laptop` shared one principal; a `token:` limit never matched a named token; a JWT
/// whose `sub` equals a token's name spent that token's allowance; a JWT whose `client_id` is
/// `alice` spent owner alice's limit.
#[tokio::test]
async fn principals_of_different_callers_never_collide() {
    let mock = Mock::start(&[]);
    let idp = Idp::start();
    let laptop1 = opaque_token(", name: laptop");
    let laptop2 = opaque_token(", name: laptop");
    let named = opaque_token(", name: ci-bot");
    let alices = opaque_token(", owner: alice");
    let config = format!(
        r#"providers:
  - {{ name: openai, kind: openai, base_url: "{url}", keys: [{{ id: a, secret_ref: "env:KEY_A" }}] }}
routes:
  - {{ prefix: /a, provider: openai }}
  - {{ prefix: /b, provider: openai }}
  - {{ prefix: /c, provider: openai }}
issuers:
  - {{ name: corp, issuer: "{iss}", audiences: ["urn:sluice:gateway"], principal_claim: sub }}
owners:
  - {{ name: alice }}
tokens:
  - {l1}
  - {l2}
  - {named}
  - {alices}
limits:
  - {{ name: per-caller, route: /a, per: principal, requests_per_minute: 1 }}
  - {{ name: by-id, route: /b, token: {named_id}, requests_per_minute: 1 }}
  - {{ name: alice, route: /c, owner: alice, requests_per_minute: 1 }}
audit:
  sink: file
"#,
        url = mock.url(),
        iss = idp.issuer(),
        l1 = laptop1.record,
        l2 = laptop2.record,
        named = named.record,
        alices = alices.record,
        named_id = token_id(&named),
    );
    let sluice = Sluice::start_with_env(&config, &POOL_ENV);
    let now = unix_now();
    let jwt = |sub: &str, client_id: &str| {
        let claims = json!({"iss": idp.issuer(), "aud": "urn:sluice:gateway", "sub": sub,
            "client_id": client_id, "exp": now + 300, "iat": now});
        let idp = &idp;
        async move {
            idp.mint(json!({ "claims": claims })).await["token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let path = |p: &str| format!("/{p}/v1/chat/completions");

    // Two tokens with one name are two principals.
    assert_eq!(chat_as(&sluice, &path("a"), &laptop1.token).await.0, 200);
    assert_eq!(chat_as(&sluice, &path("a"), &laptop2.token).await.0, 200);
    assert_eq!(
        chat_as(&sluice, &path("a"), &laptop1.token).await,
        (429, "rate_limited".to_owned())
    );
    // A JWT whose subject is `laptop` is `jwt:corp:laptop`, not the tokens.
    let sub_laptop = jwt("laptop", "x").await;
    assert_eq!(chat_as(&sluice, &path("a"), &sub_laptop).await.0, 200);
    // A `token:` limit names the token's id and applies to a named token.
    assert_eq!(chat_as(&sluice, &path("b"), &named.token).await.0, 200);
    assert_eq!(chat_as(&sluice, &path("b"), &named.token).await.0, 429);
    // A JWT's `client_id: alice` is no owner: owner alice's limit is hers alone.
    let client_alice = jwt("svc", "alice").await;
    assert_eq!(chat_as(&sluice, &path("c"), &client_alice).await.0, 200);
    assert_eq!(chat_as(&sluice, &path("c"), &client_alice).await.0, 200);
    assert_eq!(chat_as(&sluice, &path("c"), &alices.token).await.0, 200);
    assert_eq!(chat_as(&sluice, &path("c"), &alices.token).await.0, 429);

    // The audit names each by its one rendering, with the token's name and id beside it.
    let (id1, id2) = (token_id(&laptop1), token_id(&laptop2));
    for id in [&id1, &id2] {
        let want = format!("token:{id}");
        let record = wait_audit(&sluice, |r| r["principal"] == want.as_str())
            .await
            .unwrap_or_else(|| panic!("no record of {want}"));
        assert_eq!(
            (record["name"].as_str(), record["token_id"].as_str()),
            (Some("laptop"), Some(id.as_str()))
        );
    }
    let record = wait_audit(&sluice, |r| r["principal"] == "jwt:corp:laptop").await;
    assert!(
        record.is_some(),
        "the JWT's principal is namespaced by its issuer"
    );
}

/// Finding 4, at load: names that would make renderings collide, or that are reserved.
#[test]
fn issuer_and_owner_names_that_could_collide_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yaml");
    for (text, field) in [
        (
            "issuers:\n  - { name: \"a:b\", issuer: \"https://idp.example\", audiences: [x] }\n",
            "issuers[0].name",
        ),
        (
            "issuers:\n  - { name: sluice, issuer: \"https://idp.example\", audiences: [x] }\n",
            "issuers[0].name",
        ),
        ("owners:\n  - { name: \"alice#1\" }\n", "owners[0].name"),
        ("owners:\n  - { name: \"a:b\" }\n", "owners[0].name"),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new(sluice_bin())
            .args(["check", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{text}: accepted");
        assert!(
            stderr.contains(field) || stdout.contains(field),
            "{text}: {stderr}{stdout}"
        );
    }
}

/// Finding 13: the forward proxy skipped every per-route control. A token scoped for provider
/// A reached provider B's pool key through `HTTPS_PROXY`; B's `route:` limit and budget never
/// applied. Intercepted traffic is admitted as the route that reaches the provider.
#[tokio::test]
async fn intercepted_traffic_is_admitted_as_its_route() {
    let mock = Mock::start(&[]);
    let ta = opaque_token(", scopes: [fa]");
    let tb = opaque_token(", scopes: [fb]");
    let dynamic = format!(
        r#"providers:
  - {{ name: a, kind: openai, base_url: "{url}", intercept_hosts: [a.test], keys: [{{ id: a, secret_ref: "env:KEY_A" }}] }}
  - {{ name: b, kind: openai, base_url: "{url}", intercept_hosts: [b.test], keys: [{{ id: b, secret_ref: "env:KEY_A" }}] }}
routes:
  - {{ prefix: /fa, provider: a, scopes: [fa] }}
  - {{ prefix: /fb, provider: b, scopes: [fb] }}
tokens:
  - {ta}
  - {tb}
limits:
  - {{ name: fb, route: /fb, requests_per_minute: 1 }}
audit:
  sink: file
"#,
        url = mock.url(),
        ta = ta.record,
        tb = tb.record,
    );
    let sluice = Sluice::start_forward(&dynamic, &POOL_ENV);
    let forward = sluice.forward.unwrap();
    let through = |host: &str, token: &str| {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("agent:{token}"));
        format!(
            "POST http://{host}/v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: Basic {basic}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nConnection: close\r\n\r\n{CHAT}",
            CHAT.len()
        )
    };
    let (status, text) = raw(forward, &through("b.test", &ta.token));
    assert_eq!(status, 403, "A's token at B's host: {text}");
    assert!(text.contains("x-sluice-error: missing_scope"), "{text}");
    assert_eq!(raw(forward, &through("a.test", &ta.token)).0, 200);
    // B's route limit applies through the proxy as in reverse mode.
    assert_eq!(raw(forward, &through("b.test", &tb.token)).0, 200);
    let (status, text) = raw(forward, &through("b.test", &tb.token));
    assert_eq!(status, 429, "{text}");
    assert_eq!(
        chat_as(&sluice, "/fb/v1/chat/completions", &tb.token)
            .await
            .0,
        429
    );
    // Recorded as that route.
    let record = wait_audit(&sluice, |r| r["host"] == "b.test" && r["status"] == 200).await;
    assert_eq!(record.expect("a record")["route"], "/fb");
}

/// Finding 3: `oauth_provider_attach` was bypassed. An owner with `provider_update` re-pointed
/// the base URL of a provider using users' grants to its own server; an owner with
/// `mcp_server_create` created a server with `auth: secret` naming an `mcp` secret.
#[tokio::test]
async fn pointing_users_grants_or_mcp_secrets_elsewhere_needs_the_attach_permission() {
    let sluice = Sluice::start("");
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let corp = json!({"name": "corp", "authorization_endpoint": "https://idp.example/auth",
        "token_endpoint": "https://idp.example/token", "client_id": "c", "token_endpoint_auth_method": "none"});
    let api_doc = json!({"name": "corp-api", "kind": "openai-compatible", "base_url": "https://api.example",
        "credentials": "oauth", "oauth_provider": "corp"});
    for (path, doc) in [("/v1/oauth-providers", &corp), ("/v1/providers", &api_doc)] {
        let (s, v) = api(&admin, &root, "POST", path, Some(&doc.to_string())).await;
        assert_eq!(s, 201, "{path}: {v}");
    }
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/owners",
        Some(r#"{"name":"mallory","permissions":["provider_create","provider_update","provider_get","mcp_server_create","secret_create"]}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/tokens",
        Some(r#"{"name":"m","owner":"mallory"}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let mallory = v["token"].as_str().unwrap().to_owned();
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/secrets",
        Some(r#"{"name":"CORP_SECRET","value":"s3cret","scopes":["mcp"]}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let repointed = json!({"name": "corp-api", "kind": "openai-compatible", "base_url": "https://mallory.example",
        "credentials": "oauth", "oauth_provider": "corp"});
    let (s, v) = api(
        &admin,
        &mallory,
        "PUT",
        "/v1/providers/corp-api",
        Some(&repointed.to_string()),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["field"], "base_url", "{v}");
    let server = json!({"name": "grab", "url": "https://mallory.example/mcp", "auth": "secret", "secret_ref": "CORP_SECRET"});
    let (s, v) = api(
        &admin,
        &mallory,
        "POST",
        "/v1/mcp-servers",
        Some(&server.to_string()),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["field"], "url", "{v}");
    // An admin holds the permission.
    let (s, v) = api(
        &admin,
        &root,
        "PUT",
        "/v1/providers/corp-api",
        Some(&repointed.to_string()),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

/// Findings 9, 10 and 12 (introspection): `/oauth2/token` wrote the whole attacker-supplied
/// `client_id` (16 KiB) to the usage log; ten wrong secrets a minute locked the app out for its
/// right secret; any app could introspect any other app's token.
#[tokio::test]
async fn the_token_endpoint_cannot_be_flooded_or_used_to_lock_an_app_out() {
    let port = echo_api().await;
    let sluice = Sluice::start(&format!(
        "agents:\n  - name: research\n    environments:\n      - {{ name: dev, url: \"http://127.0.0.1:{port}/dev\", auth: oauth }}\naudit:\n  sink: file\n"
    ));
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let mut apps = Vec::new();
    for name in ["one", "two"] {
        let (s, v) = api(
            &admin,
            &root,
            "POST",
            "/v1/agents/research/environments/dev/apps",
            Some(&json!({ "name": name }).to_string()),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        apps.push((
            v["client_id"].as_str().unwrap().to_owned(),
            v["client_secret"].as_str().unwrap().to_owned(),
        ));
    }
    let form = |body: String, path: &str| {
        client()
            .post(sluice.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    // As long as the form allows (16 KiB whole).
    let huge = "x".repeat(15 * 1024);
    let r = form(
        format!("grant_type=client_credentials&client_id={huge}&client_secret=nope"),
        "/oauth2/token",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    let (id, secret) = apps[0].clone();
    for _ in 0..12 {
        let r = form(
            format!("grant_type=client_credentials&client_id={id}&client_secret=wrong"),
            "/oauth2/token",
        )
        .await
        .unwrap();
        assert!([401, 429].contains(&r.status().as_u16()));
    }
    let r = form(
        format!("grant_type=client_credentials&client_id={id}&client_secret={secret}"),
        "/oauth2/token",
    )
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the right secret after a flood of wrong ones"
    );
    let token = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The other app learns nothing about this app's token.
    let (other, other_secret) = apps[1].clone();
    let r = form(
        format!("token={token}&client_id={other}&client_secret={other_secret}"),
        "/oauth2/introspect",
    )
    .await
    .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["active"], false);
    let r = form(
        format!("token={token}&client_id={id}&client_secret={secret}"),
        "/oauth2/introspect",
    )
    .await
    .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["active"], true);
    // The refused authentications are in the refused log, cut; the usage log has none.
    let data = sluice.dir.path().join("data");
    let refused = wait_file_with(&data.join("audit.refused.jsonl"), "issuer.client_auth").await;
    assert!(
        !refused.contains(&huge[..100]),
        "the flood's client id, whole"
    );
    let usage = std::fs::read_to_string(data.join("audit.jsonl")).unwrap_or_default();
    assert!(
        !usage.contains("xxxxxxxxxx"),
        "the flood reached the usage log"
    );
}

async fn wait_file_with(path: &std::path::Path, needle: &str) -> String {
    for _ in 0..50 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} never held {needle}", path.display());
}

/// Finding 5: USD budgets were bypassed by JSON-escaping the model name (`"gpt-moc\u006b"`: the
/// scanner dropped escaped values and an unknown model cost nothing), or by naming it twice.
#[tokio::test]
async fn escaped_or_repeated_model_names_are_priced_as_the_upstream_reads_them() {
    let mock = Mock::start(&[]);
    let t = opaque_token(", owner: team-a");
    let e = opaque_token(", owner: team-e");
    let config = format!(
        r#"providers:
  - {{ name: openai, kind: openai, base_url: "{url}", keys: [{{ id: a, secret_ref: "env:KEY_A" }}] }}
routes:
  - {{ prefix: /openai, provider: openai }}
owners:
  - {{ name: team-a }}
  - {{ name: team-e }}
tokens:
  - {t}
  - {e}
budgets:
  - {{ name: a, owner: team-a, period: month, usd: 0.03 }}
  - {{ name: e, owner: team-e, period: month, usd: 0.03 }}
prices:
  - {{ model: gpt-mock, input: 1000, output: 1000 }}
"#,
        url = mock.url(),
        t = t.record,
        e = e.record,
    );
    let sluice = Sluice::start_with_env(&config, &POOL_ENV);
    let bodies = [
        (
            &t,
            r#"{"model":"gpt-moc\u006b","messages":[{"role":"user","content":"hello"}]}"#,
        ),
        (
            &e,
            r#"{"model":"free","messages":[{"role":"user","content":"hello"}],"model":"gpt-mock"}"#,
        ),
    ];
    for (token, body) in bodies {
        let mut refused = false;
        for _ in 0..6 {
            let r = client()
                .post(sluice.url("/openai/v1/chat/completions"))
                .bearer_auth(&token.token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            if r.status() == 429 {
                assert_eq!(r.headers()["x-sluice-error"], "budget_exceeded");
                refused = true;
                break;
            }
            assert_eq!(r.status(), 200);
        }
        assert!(refused, "{body}: the budget never ran out");
    }
}

/// Finding 8: a dataplane token yielded every user's upstream token through `POST /v1/vault`
/// (any principal by name). The vault now serves a user's grant for that user's own
/// credential only.
#[tokio::test]
async fn a_dataplane_token_alone_reaches_nobodys_grant() {
    let sluice = Sluice::start("");
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let dp = new_token_for(&admin, &root, "dp", Some("dataplane")).await;
    let alice = new_token_for(&admin, &root, "alice", None).await;
    let (_, who) = api(&admin, &root, "GET", "/v1/owners/alice", None).await;
    let key = format!("owner:alice#{}", who["id"].as_str().unwrap_or_default());
    // A token an operator minted for alice may not act as her upstream, here either.
    let op = new_token_for(&admin, &root, "op", Some("operator")).await;
    let (s, v) = api(
        &admin,
        &op,
        "POST",
        "/v1/tokens",
        Some(r#"{"name":"x","owner":"alice"}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let minted = v["token"].as_str().unwrap().to_owned();
    for (request, what) in [
        (
            json!({"op": "token", "who": {"key": key, "display": "x"}, "provider": "corp", "subject_token": null}),
            "no credential",
        ),
        (
            json!({"op": "token", "who": {"key": key, "display": "x"}, "provider": "corp", "subject_token": null, "credential": dp}),
            "the dataplane token as the credential",
        ),
        (
            json!({"op": "connections", "principal": null}),
            "everyone's connections",
        ),
        (
            json!({"op": "disconnect", "principal": key, "provider": "corp"}),
            "someone's disconnect",
        ),
        (
            json!({"op": "link", "who": {"key": "owner:mallory", "display": "x"}, "provider": "corp", "credential": alice}),
            "alice's credential for another principal",
        ),
        (
            json!({"op": "token", "who": {"key": key, "display": "x"}, "provider": "corp", "subject_token": null, "credential": minted}),
            "an operator's token for alice",
        ),
    ] {
        let (s, v) = api(&admin, &dp, "POST", "/v1/vault", Some(&request.to_string())).await;
        assert_eq!(s, 200, "{what}: {v}");
        let refused = v["Err"]["status"] == 403 || v["Err"]["failure"] == "grants_withheld";
        assert!(refused, "{what}: {v}");
    }
}

/// Finding 7: an operator could act as any user upstream (a token it minted for owner alice
/// presented Alice's grant) and mint credentials for production agent environments. Only an
/// admin mints tokens that present an owner's grants; a `protected` environment's apps and
/// test tokens need `agent_protected_credentials`, which operators do not hold.
#[tokio::test]
async fn operators_cannot_act_as_users_upstream_or_mint_production_credentials() {
    let env = crate::vault::setup("none", &["authorization_code"]).await;
    crate::vault::connect(&env).await;
    assert_eq!(crate::vault::me(&env, &env.alice).await.0, 200);
    let op = new_token_for(&env.admin, &env.root, "op", Some("operator")).await;
    let (s, v) = api(
        &env.admin,
        &op,
        "POST",
        "/v1/tokens",
        Some(r#"{"name":"borrowed","owner":"alice"}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let minted = v["token"].as_str().unwrap().to_owned();
    let (s, v) = crate::vault::me(&env, &minted).await;
    assert_eq!(s, 403, "an operator's token presented alice's grant: {v}");
    assert_eq!(v["error"]["code"], "oauth_grants_withheld", "{v}");
    // Rotating alice's own token does not launder it either.
    let (_, listed) = api(&env.admin, &env.root, "GET", "/v1/tokens", None).await;
    let own = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["owner"] == "alice" && t["name"] == "alice")
        .and_then(|t| t["id"].as_str())
        .unwrap()
        .to_owned();
    let (s, v) = api(
        &env.admin,
        &op,
        "POST",
        &format!("/v1/tokens/{own}/rotate"),
        Some(r#"{"grace":"1h"}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let rotated = v["token"].as_str().unwrap().to_owned();
    assert_eq!(crate::vault::me(&env, &rotated).await.0, 403);
    // Alice's own token, minted by an admin, still works during the grace period.
    assert_eq!(crate::vault::me(&env, &env.alice).await.0, 200);

    // A protected environment: the operator can neither mint a test token nor create an app.
    let port = echo_api().await;
    let agent = json!({"name": "billing", "environments": [
        {"name": "prod", "url": format!("http://127.0.0.1:{port}/prod"), "auth": "oauth", "protected": true},
        {"name": "dev", "url": format!("http://127.0.0.1:{port}/dev"), "auth": "oauth"}]});
    let (s, v) = api(
        &env.admin,
        &env.root,
        "POST",
        "/v1/agents",
        Some(&agent.to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    for (path, body) in [
        ("/v1/agents/billing/environments/prod/test-token", None),
        (
            "/v1/agents/billing/environments/prod/apps",
            Some(r#"{"name":"x"}"#),
        ),
    ] {
        let (s, v) = api(&env.admin, &op, "POST", path, body).await;
        assert_eq!(s, 403, "{path}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("agent_protected_credentials"),
            "{v}"
        );
    }
    // The unprotected environment, and an admin on the protected one, may.
    let (s, v) = api(
        &env.admin,
        &op,
        "POST",
        "/v1/agents/billing/environments/dev/test-token",
        None,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api(
        &env.admin,
        &env.root,
        "POST",
        "/v1/agents/billing/environments/prod/apps",
        Some(r#"{"name":"billing-bot"}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let app = v["client_id"].as_str().unwrap().to_owned();
    let (s, v) = api(
        &env.admin,
        &op,
        "POST",
        &format!("/v1/apps/{app}/regenerate"),
        None,
    )
    .await;
    assert_eq!(
        s, 403,
        "an operator regenerating a protected app's secret: {v}"
    );
    // Disabled for a while, the environment is still protected (the outside review found the
    // check open while it was off).
    let mut off = agent.clone();
    off["environments"][0]["enabled"] = json!(false);
    let (s, v) = api(
        &env.admin,
        &env.root,
        "PUT",
        "/v1/agents/billing",
        Some(&off.to_string()),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api(
        &env.admin,
        &op,
        "POST",
        &format!("/v1/apps/{app}/regenerate"),
        None,
    )
    .await;
    assert_eq!(s, 403, "a disabled protected environment: {v}");
    // Nor through the agent itself: an owner that may update agents but not mint protected
    // credentials cannot unprotect the environment, nor switch its auth off and on (which
    // provisions a new app and shows its secret).
    let (s, v) = api(
        &env.admin,
        &env.root,
        "POST",
        "/v1/owners",
        Some(r#"{"name":"agent-editor","permissions":["agent_update","agent_get"]}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api(
        &env.admin,
        &env.root,
        "POST",
        "/v1/tokens",
        Some(r#"{"name":"e","owner":"agent-editor"}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let editor = v["token"].as_str().unwrap().to_owned();
    for change in [
        ("protected", json!(false)),
        ("auth", json!("token")),
        ("url", json!("http://127.0.0.1:1/elsewhere")),
    ] {
        let mut doc = off.clone();
        doc["environments"][0][change.0] = change.1.clone();
        let (s, v) = api(
            &env.admin,
            &editor,
            "PUT",
            "/v1/agents/billing",
            Some(&doc.to_string()),
        )
        .await;
        assert_eq!(
            (s, &v["error"]["field"]),
            (403, &json!("environments")),
            "{change:?}: {v}"
        );
    }
}

/// Finding 12 (discovery): an OAuth provider's discovery fetched any address, and its error
/// echoed the fetched document's `issuer` (a way to read internal documents). Link-local
/// addresses (cloud metadata) are refused before any request, and errors name the field,
/// never the content.
#[tokio::test]
async fn oauth_discovery_neither_reaches_metadata_nor_echoes_what_it_fetched() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).await;
            let body = r#"{"issuer":"INTERNAL-SECRET-4711","token_endpoint":"x"}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    let sluice = Sluice::start("");
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    for (issuer, must_not) in [
        (format!("http://127.0.0.1:{port}"), "INTERNAL-SECRET-4711"),
        ("https://169.254.169.254".to_owned(), ""),
        ("https://[fe80::1]".to_owned(), ""),
    ] {
        let doc = json!({"name": "probe", "issuer": issuer, "client_id": "c", "token_endpoint_auth_method": "none"});
        let (s, v) = api(
            &admin,
            &root,
            "POST",
            "/v1/oauth-providers",
            Some(&doc.to_string()),
        )
        .await;
        assert_eq!((s, &v["error"]["field"]), (422, &json!("issuer")), "{v}");
        if must_not.is_empty() {
            // Refused for where it is, not for failing to answer.
            let message = v["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("link-local"), "{v}");
        } else {
            assert!(!v.to_string().contains(must_not), "{v}");
        }
    }
}

/// Resident memory of a process (kB), from /proc.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Whether the peer closed `s` (EOF or reset) within `within`.
fn closed_within(s: &mut std::net::TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Issue 27, finding 4: request heads on the proxy listener could be 1 MiB and the 60 s
/// timeout was per read: 200 sockets trickling unfinished ~1 MB heads took resident memory
/// from 27 MB to 265 MB, and one socket sending a byte every 25 s stayed open for minutes.
/// Now heads are capped (64 KiB by default), a whole head must arrive within its deadline,
/// and each source holds a bounded number of connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_clients_cannot_tie_up_the_proxy_listener() {
    let mock = Mock::start(&[]);
    let t = opaque_token("");
    let sluice = Sluice::start_with_env(
        &format!(
            "  request_head_timeout_seconds: 1\n  keepalive_timeout_seconds: 1\n  max_connections_per_source: 100\nproviders:\n  - {{ name: openai, kind: openai, base_url: \"{}\", keys: [{{ id: k, secret_ref: \"env:POOL_KEY\" }}] }}\nroutes:\n  - {{ prefix: /openai, provider: openai, auth: token }}\ntokens:\n  - {}\n",
            mock.url(),
            t.record
        ),
        &[("POOL_KEY", "sk-pool-key-00000001")],
    );
    let connect = || std::net::TcpStream::connect(("127.0.0.1", sluice.port)).unwrap();
    let pid = sluice.proc.child.id();

    // 90 sockets each sending 900 KB of a head that never ends, all held open at once: each
    // is cut at 64 KiB (400, closed), so resident memory does not follow what they send.
    let before = rss_kb(pid);
    let pad = format!("X-Pad: {}\r\n", "a".repeat(10_000));
    let mut socks: Vec<_> = (0..90).map(|_| connect()).collect();
    for s in &mut socks {
        let _ = s.write_all(b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\n");
        for _ in 0..90 {
            if s.write_all(pad.as_bytes()).is_err() {
                break;
            }
        }
    }
    let during = rss_kb(pid);
    eprintln!("RSS {before} kB → {during} kB with 90 oversized heads held");
    assert!(
        during < before + 30 * 1024,
        "resident memory grew {} kB",
        during - before
    );
    let cut = socks
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_secs(3)))
        .filter(|c| *c)
        .count();
    assert_eq!(cut, 90, "oversized heads still open");
    drop(socks);

    // A head trickled a byte at a time is cut at its deadline (1 s), whatever each read's.
    let mut slow = connect();
    slow.write_all(b"GET /openai/v1/models HTTP/1.1\r\n")
        .unwrap();
    let started = Instant::now();
    let mut cut = false;
    for _ in 0..40 {
        if slow.write_all(b"X").is_err() {
            cut = true;
            break;
        }
        let mut probe = slow.try_clone().unwrap();
        if closed_within(&mut probe, Duration::from_millis(250)) {
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "a trickled head was still open after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A kept-alive connection that goes quiet after one answer is closed at the keep-alive
    // timeout (1 s here), not held forever (a client's HTTP/1.1 default); a refused request
    // whose body never comes is not drained forever either.
    let mut quiet = connect();
    quiet
        .write_all(b"GET /openai/v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = [0u8; 12];
    quiet.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 401");
    assert!(
        closed_within(&mut quiet, Duration::from_secs(5)),
        "an idle kept-alive connection stayed open"
    );
    let mut drained = connect();
    drained
        .write_all(b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n{")
        .unwrap();
    drained.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 401");
    assert!(
        closed_within(&mut drained, Duration::from_secs(15)),
        "a refused body was drained forever"
    );

    // One source holds at most 100 connections; the rest are closed at once, unanswered.
    drop(slow);
    let gauge = r#"sluice_connections{listener="proxy"}"#;
    until_metric(&sluice, gauge, 0.0).await;
    let mut held: Vec<_> = (0..101).map(|_| connect()).collect();
    let refused = r#"sluice_connections_refused_total{listener="proxy",reason="per_source"}"#;
    until_metric(&sluice, refused, 1.0).await;
    assert_eq!(sluice.metric(gauge).await, 100.0);
    // (Which one lost the race to be admitted does not matter; an idle one is closed at the
    // keep-alive timeout anyway.)
    // Released as they close: the source is served again.
    held.truncate(0);
    until_metric(&sluice, gauge, 0.0).await;
    let bearer = format!("Bearer {}", t.token);
    let (status, reason) = call(
        &sluice,
        "/openai/v1/chat/completions",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!((status, reason.as_str()), (200, ""));
    drop(held);
}
