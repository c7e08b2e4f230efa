//! One admission for every entry point: each credential state (valid, expired, revoked, owner
//! disabled, missing scope, a token of Sluice's own issuer, its `jti` revoked, its app deleted,
//! a token for another audience) presented at every entry point (a provider route, agent
//! environments, the forward proxy's plain requests and CONNECT, an MCP server, the OAuth user
//! endpoints) gets the same answer wherever the same check decides it.

use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::time::Duration;

/// Where a credential is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Route,
    AgentToken,
    AgentOauth,
    ForwardPlain,
    ForwardConnect,
    Mcp,
    OauthUser,
}

const ENTRIES: [Entry; 7] = [
    Entry::Route,
    Entry::AgentToken,
    Entry::AgentOauth,
    Entry::ForwardPlain,
    Entry::ForwardConnect,
    Entry::Mcp,
    Entry::OauthUser,
];

/// One exchange over a raw connection (the forward proxy's absolute-form and CONNECT heads):
/// the status and the `x-sluice-error` reason.
fn raw_exchange(port: u16, head: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(head.as_bytes()).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).contains("\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let reason = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-sluice-error")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, reason)
}

fn basic(token: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("agent:{token}"))
}

/// Presents `token` at `entry`: the status and Sluice's refusal reason (empty when admitted).
async fn present(sluice: &Sluice, entry: Entry, token: &str) -> (u16, String) {
    let forward = sluice.forward.expect("forward listener");
    let over_http = |method: reqwest::Method, path: &str| {
        client()
            .request(method, sluice.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
    };
    let request = match entry {
        Entry::Route => over_http(reqwest::Method::POST, "/llm/v1/chat/completions").body(CHAT),
        Entry::AgentToken => over_http(reqwest::Method::POST, "/agents/research/tok/invoke"),
        Entry::AgentOauth => over_http(reqwest::Method::POST, "/agents/research/dev/invoke"),
        Entry::Mcp => over_http(reqwest::Method::POST, "/mcp/tools")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
        Entry::OauthUser => over_http(reqwest::Method::GET, "/oauth/v1/connections"),
        Entry::ForwardPlain => {
            let head = format!(
                "POST http://llm.test/v1/chat/completions HTTP/1.1\r\nHost: llm.test\r\nProxy-Authorization: Basic {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nConnection: close\r\n\r\n{CHAT}",
                basic(token),
                CHAT.len()
            );
            return tokio::task::spawn_blocking(move || raw_exchange(forward, &head))
                .await
                .unwrap();
        }
        Entry::ForwardConnect => {
            let head = format!(
                "CONNECT llm.test:80 HTTP/1.1\r\nHost: llm.test:80\r\nProxy-Authorization: Basic {}\r\n\r\n",
                basic(token)
            );
            return tokio::task::spawn_blocking(move || raw_exchange(forward, &head))
                .await
                .unwrap();
        }
    };
    let r = request.send().await.expect("request");
    (r.status().as_u16(), sluice_error(&r))
}

/// The answer a credential must get at an entry point: admitted, or refused for `reason`.
fn expected(state: &str, entry: Entry) -> &'static str {
    use Entry::*;
    let opaque_kind = |reason: &'static str| match entry {
        // An `auth: oauth` environment takes Sluice's own tokens only: the kind decides first.
        AgentOauth => "credential_kind",
        _ => reason,
    };
    let app_kind = |reason: &'static str| match entry {
        AgentToken => "credential_kind",
        _ => reason,
    };
    match state {
        "valid" => opaque_kind(""),
        "expired" => opaque_kind("expired"),
        "revoked" => opaque_kind("revoked"),
        "owner_disabled" => opaque_kind("owner_disabled"),
        // The OAuth user endpoints ask for no scope; everything else here asks for `llm`.
        "missing_scope" => match entry {
            OauthUser => "",
            _ => opaque_kind("missing_scope"),
        },
        // Sluice's own tokens open their agent environment and nothing else.
        "app" => match entry {
            AgentOauth => "",
            _ => app_kind("wrong_audience"),
        },
        "app_jti_revoked" | "app_deleted" => app_kind("revoked"),
        "other_audience" => app_kind("wrong_audience"),
        other => panic!("no expectation for {other}"),
    }
}

fn status_of(reason: &str, entry: Entry) -> u16 {
    let proxy = matches!(entry, Entry::ForwardPlain | Entry::ForwardConnect);
    match reason {
        "" => 200,
        "missing_scope" | "credential_kind" => 403,
        _ if proxy => 407,
        _ => 401,
    }
}

#[tokio::test]
async fn every_entry_point_admits_and_refuses_alike() {
    let mock = Mock::start(&[]);
    let echo = echo_api().await;
    let valid = opaque_token(", owner: alice, scopes: [llm]");
    let expired = opaque_token(", scopes: [llm], expires_at: \"2020-01-01T00:00:00Z\"");
    let revoked = opaque_token(", scopes: [llm], revoked_at: \"2020-01-01T00:00:00Z\"");
    let disabled = opaque_token(", owner: mallory, scopes: [llm]");
    let no_scope = opaque_token(", owner: alice");
    let dynamic = format!(
        r#"providers:
  - name: p
    kind: openai
    base_url: "{mock}"
    intercept_hosts: [llm.test]
    keys: [{{ id: k, secret_ref: "env:POOL_KEY" }}]
routes:
  - {{ prefix: /llm, provider: p, scopes: [llm] }}
owners:
  - {{ name: alice }}
  - {{ name: mallory, enabled: false }}
tokens:
  - {valid}
  - {expired}
  - {revoked}
  - {disabled}
  - {no_scope}
agents:
  - name: research
    environments:
      - {{ name: tok, url: "http://127.0.0.1:{echo}/tok", auth: token, scopes: [llm] }}
      - {{ name: dev, url: "http://127.0.0.1:{echo}/dev", auth: oauth }}
      - {{ name: prod, url: "http://127.0.0.1:{echo}/prod", auth: oauth }}
mcp_servers:
  - {{ name: tools, url: "http://127.0.0.1:{echo}/mcp", client_auth: any, scopes: [llm] }}
forward:
  scopes: [llm]
  allow_cidrs: [127.0.0.0/8]
"#,
        mock = mock.url(),
        valid = valid.record,
        expired = expired.record,
        revoked = revoked.record,
        disabled = disabled.record,
        no_scope = no_scope.record,
    );
    let sluice = Sluice::start_forward(&dynamic, &[("POOL_KEY", "sk-pool-admission")]);
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());

    // Tokens of Sluice's own issuer: two apps of `research/dev`, and a test token for `prod`.
    let app = |name: &'static str| {
        let (admin, root) = (admin.clone(), root.clone());
        async move {
            let body = format!(r#"{{"name":"{name}"}}"#);
            let path = "/v1/agents/research/environments/dev/apps";
            let (s, v) = api(&admin, &root, "POST", path, Some(&body)).await;
            assert_eq!(s, 201, "{v}");
            let app = if v["client_id"].is_string() {
                v
            } else {
                v["item"].clone()
            };
            (
                app["client_id"].as_str().unwrap().to_owned(),
                app["client_secret"].as_str().unwrap().to_owned(),
            )
        }
    };
    let token_of = |id: String, secret: String| {
        let url = sluice.url("/oauth2/token");
        async move {
            let r = client()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "grant_type=client_credentials&client_id={id}&client_secret={secret}"
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            v["access_token"].as_str().unwrap().to_owned()
        }
    };
    let (id1, secret1) = app("one").await;
    let (id2, secret2) = app("two").await;
    let app_token = token_of(id1.clone(), secret1.clone()).await;
    let jti_revoked = token_of(id1.clone(), secret1.clone()).await;
    let app_deleted = token_of(id2.clone(), secret2).await;
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/agents/research/environments/prod/test-token",
        None,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let other_audience = v["access_token"].as_str().unwrap().to_owned();

    // Revoke one token by `jti`, delete the other app; wait for the revision that says so.
    let r = client()
        .post(sluice.url("/oauth2/revoke"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "token={jti_revoked}&client_id={id1}&client_secret={secret1}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, v) = api(&admin, &root, "DELETE", &format!("/v1/apps/{id2}"), None).await;
    assert_eq!(s, 200, "{v}");
    let rev = v["revision"].as_u64().unwrap();
    until_revision(&admin, rev).await;

    let states: [(&str, &str); 10] = [
        ("valid", &valid.token),
        ("expired", &expired.token),
        ("revoked", &revoked.token),
        ("owner_disabled", &disabled.token),
        ("missing_scope", &no_scope.token),
        ("app", &app_token),
        ("app_jti_revoked", &jti_revoked),
        ("app_deleted", &app_deleted),
        ("other_audience", &other_audience),
        ("valid", &valid.token),
    ];
    let mut wrong = Vec::new();
    for (state, token) in states {
        for entry in ENTRIES {
            let (status, reason) = present(&sluice, entry, token).await;
            let want = expected(state, entry);
            let admitted = want.is_empty();
            // Admitted: not refused by Sluice (the upstream answers as it will).
            let ok = if admitted {
                reason.is_empty() && ![401, 403, 407].contains(&status)
            } else {
                reason == want && status == status_of(want, entry)
            };
            if !ok {
                wrong.push(format!(
                    "{state} at {entry:?}: got {status} `{reason}`, want {} `{want}`",
                    status_of(want, entry)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
