//! The MCP gateway with real MCP parts from npm: `server-everything` (Streamable HTTP) as an
//! upstream and the official SDK's client through Sluice; an identity-checking MCP server behind
//! oidc-provider for users' own tokens (consent, refresh, exchange); sessions bound to their
//! principal; protected-resource metadata; bad input.

use crate::common::*;
use crate::vault::{configure, consent, set_ttl, stats, Env};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

pub(crate) fn mcp_dir() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp");
    assert!(
        dir.join("node_modules/@modelcontextprotocol/sdk").exists(),
        "the MCP tests need the SDK: run scripts/test.sh (npm ci in tests/mcp)"
    );
    dir
}

/// A node process killed on drop.
pub(crate) struct Node {
    child: std::process::Child,
    pub(crate) port: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `@modelcontextprotocol/server-everything` in Streamable HTTP mode; its endpoint.
pub(crate) fn everything() -> (Node, String) {
    use std::io::BufRead;
    let mut child = Command::new("node")
        .arg("--import")
        .arg(mcp_dir().join("report-port.mjs"))
        .arg(mcp_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"))
        .arg("streamableHttp")
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node");
    // The port it got (`report-port.mjs`): nothing was reserved beforehand. Read on a thread
    // (20 s at most), whose later output is read and dropped so it never blocks on a pipe.
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok);
        let port = lines
            .by_ref()
            .find_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok()?["port"].as_u64());
        let _ = tx.send(port);
        lines.for_each(drop);
    });
    let port = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Some(port)) => port as u16,
        _ => {
            let _ = child.kill();
            panic!("server-everything did not say its port");
        }
    };
    (Node { child, port }, format!("http://127.0.0.1:{port}/mcp"))
}

/// The identity-checking MCP server, checking tokens at `userinfo`.
pub(crate) fn whoami(userinfo: &str) -> Node {
    test_server("whoami-server.mjs", &[("USERINFO_URL", userinfo)])
}

/// One of the test MCP servers in `tests/mcp` (a script that prints `{"port": N}` first).
pub(crate) fn test_server(script: &str, env: &[(&str, &str)]) -> Node {
    use std::io::BufRead;
    let mut child = Command::new("node")
        .arg(mcp_dir().join(script))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port line");
    let port = serde_json::from_str::<Value>(&line).expect("port")["port"]
        .as_u64()
        .expect("port") as u16;
    Node { child, port }
}

/// Runs the SDK client through `url` with `steps`; what each step saw.
fn sdk(url: &str, token: &str, steps: &[&str], env: &[(&str, &str)]) -> Value {
    let out = Command::new("node")
        .arg(mcp_dir().join("client.mjs"))
        .arg(url)
        .arg(json!(steps).to_string())
        .env("MCP_TOKEN", token)
        .envs(env.iter().copied())
        .output()
        .expect("node client");
    node_json(&out)
}

/// A node script's one JSON line, or a panic showing what it printed.
pub(crate) fn node_json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn step<'a>(out: &'a Value, name: &str) -> &'a Value {
    out["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["step"] == name))
        .unwrap_or_else(|| panic!("no step {name}: {out}"))
}

pub(crate) async fn post(
    url: &str,
    token: Option<&str>,
    session: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut req = client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    req.send().await.expect("post")
}

/// The JSON-RPC answer of a POST, whether it came as JSON or as one SSE event.
pub(crate) async fn rpc_answer(r: reqwest::Response) -> Value {
    let text = r.text().await.unwrap_or_default();
    let data = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .find(|d| d.contains("\"id\""))
        .unwrap_or(text.as_str());
    serde_json::from_str(data).unwrap_or_else(|_| panic!("not JSON-RPC: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_through_sluice_to_server_everything() {
    let (_everything, upstream) = everything();
    let bob = opaque_token(", owner: bob");
    let dynamic = format!(
        "owners:\n  - {{ name: bob }}\ntokens:\n  - {}\n  - {}\nmcp_servers:\n  - {{ name: everything, url: \"{upstream}\", client_auth: token }}\n  - {{ name: down, url: \"http://127.0.0.1:{down}/mcp\" }}\naudit:\n  sink: file\n",
        tok().record,
        bob.record,
        down = refused_port()
    );
    let sluice = Sluice::start(&dynamic);
    let url = sluice.url("/mcp/everything");
    let out = sdk(
        &url,
        &tok().token,
        &["init", "list", "echo", "long", "delete"],
        &[],
    );
    let init = step(&out, "init");
    let session = init["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    assert!(
        session.contains('.'),
        "a session bound by Sluice: {session}"
    );
    let tools = step(&out, "list")["tools"].clone();
    assert!(
        tools.as_array().unwrap().iter().any(|t| t == "echo"),
        "{tools}"
    );
    let echo = step(&out, "echo")["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(echo.contains("hello through sluice"), "{out}");
    // Progress notifications arrive as they are sent, before the result (nothing buffered).
    let long = step(&out, "long");
    let progress = long["progress"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(progress.len(), 4, "{long}");
    let first = progress[0]["at"].as_u64().unwrap();
    let done = long["result_at"].as_u64().unwrap();
    assert!(
        done >= first + 1000,
        "progress at {first} ms, result at {done} ms: buffered? {long}"
    );
    assert_eq!(step(&out, "delete")["terminated"], true, "{out}");

    // A session is bound to the principal that opened it.
    let out = sdk(&url, &tok().token, &["init"], &[]);
    let session = out["sessionId"].as_str().unwrap().to_owned();
    let list = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"});
    let r = post(&url, Some(&tok().token), Some(&session), list.clone()).await;
    assert_eq!(r.status(), 200);
    // The upstream's JSON-RPC error (an unknown method) goes into the audit record.
    let bogus = json!({"jsonrpc": "2.0", "id": 10, "method": "bogus/method"});
    let r = post(&url, Some(&tok().token), Some(&session), bogus).await;
    assert_eq!(rpc_answer(r).await["error"]["code"], -32601);
    let r = post(&url, Some(&bob.token), Some(&session), list.clone()).await;
    assert_eq!(r.status(), 404, "bob with the first principal's session");
    let (upstream_id, _) = session.rsplit_once('.').unwrap();
    let r = post(&url, Some(&tok().token), Some(upstream_id), list.clone()).await;
    assert_eq!(
        r.status(),
        404,
        "the upstream's bare id is not a session here"
    );
    // The GET stream of the session: SSE, held open.
    let r = client()
        .get(&url)
        .bearer_auth(&tok().token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    drop(r);

    // No credential: 401 pointing at the protected-resource metadata, in JSON-RPC shape.
    let r = post(&url, None, None, list.clone()).await;
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let metadata_url = sluice.url("/.well-known/oauth-protected-resource/mcp/everything");
    assert!(
        challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
        "{challenge}"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["jsonrpc"], "2.0");
    let metadata: Value = http_get(metadata_url).await.unwrap().json().await.unwrap();
    assert_eq!(metadata["resource"], url);
    // Unknown server, wrong method: JSON-RPC errors.
    let r = post(
        &sluice.url("/mcp/nope"),
        Some(&tok().token),
        None,
        list.clone(),
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -32601);
    let r = client()
        .put(&url)
        .bearer_auth(&tok().token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    // Malformed JSON-RPC passes through untouched (the upstream answers it); an oversized body
    // is cut at 4 MiB; an upstream that is down is a 502 with a JSON-RPC error.
    let r = client()
        .post(&url)
        .bearer_auth(&tok().token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "server-everything's own answer");
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(5 << 20)
    );
    let r = client()
        .post(&url)
        .bearer_auth(&tok().token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(big)
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -32600);
    }
    let r = post(
        &sluice.url("/mcp/down"),
        Some(&tok().token),
        None,
        list.clone(),
    )
    .await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.json::<Value>().await.unwrap()["jsonrpc"], "2.0");

    // Audited per request (method and tool, never arguments) and counted.
    let audit =
        std::fs::read_to_string(sluice.dir.path().join("data/audit.jsonl")).unwrap_or_default();
    let call = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["event"] == "mcp" && r["tool"] == "echo")
        .unwrap_or_else(|| panic!("no audit record of the echo call:\n{audit}"));
    assert_eq!(call["method"], "tools/call");
    assert!(call["rpc_error"].is_null(), "{call}");
    let failed = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["event"] == "mcp" && r["rpc_error"] == -32601)
        .unwrap_or_else(|| panic!("no audit record with the JSON-RPC error:\n{audit}"));
    assert_eq!(failed["method"], "other");
    assert!(
        !audit.contains("hello through sluice"),
        "arguments recorded"
    );
    let calls = sluice
        .metric("sluice_mcp_requests_total{method=\"tools/call\",outcome=\"2xx\",server=\"everything\"}")
        .await;
    assert!(calls >= 2.0, "{calls}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_reach_tools_as_themselves_through_the_vault() {
    let idp = Idp::start();
    let who = whoami(&format!("{}/me", idp.issuer()));
    let sluice = Sluice::start(&format!(
        "issuers:\n  - {{ name: corp-idp, issuer: \"{}\", audiences: [\"urn:sluice:gateway\"], principal_claim: client_id }}\n",
        idp.issuer()
    ));
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let (client_id, secret, alice) = configure(
        &idp,
        &sluice,
        &admin,
        &root,
        "client_secret_basic",
        &["authorization_code"],
    )
    .await;
    let server = json!({"name": "whoami", "url": format!("http://127.0.0.1:{}/mcp", who.port),
        "auth": "oauth_provider", "oauth_provider": "corp"});
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/mcp-servers",
        Some(&server.to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let bob = new_token_for(&admin, &root, "bob", None).await;
    let env = Env {
        idp,
        sluice,
        admin,
        root,
        alice,
        client_id,
        secret,
        _control: None,
    };
    let url = env.sluice.url("/mcp/whoami");

    // No grant yet: the answer carries the link, as a URL-elicitation error when the client
    // declared it, as an error naming the link otherwise.
    let out = sdk(&url, &bob, &["init"], &[("MCP_URL_ELICITATION", "1")]);
    assert_eq!(step(&out, "init")["code"], -32042, "{out}");
    let out = sdk(&url, &env.alice, &["init"], &[]);
    let error = step(&out, "init")["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    let link = error
        .split_whitespace()
        .find(|w| w.starts_with("http") && w.contains("/oauth/v1/connect/corp?link="))
        .unwrap_or_else(|| panic!("no link in {error}"));
    set_ttl(&env.idp, 62).await;
    let (_, status, page) = consent(&env, link, "alice", false).await;
    assert_eq!(status, 200, "{page}");
    let out = sdk(&url, &env.alice, &["init", "whoami"], &[]);
    assert_eq!(
        step(&out, "whoami")["result"]["content"][0]["text"],
        "alice",
        "{out}"
    );
    let session = out["sessionId"].as_str().unwrap().to_owned();

    // bob presenting alice's session is refused; the upstream only ever saw alice.
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    assert_eq!(
        post(&url, Some(&bob), Some(&session), list).await.status(),
        404
    );
    // After the token nears expiry: 10 concurrent calls, one refresh.
    advance_clock(&[&env.sluice], 2500).await;
    set_ttl(&env.idp, 3600).await;
    let before = stats(&env.idp).await["grants"]["refresh_token"]
        .as_u64()
        .unwrap_or(0);
    let out = sdk(&url, &env.alice, &["init", "whoami10"], &[]);
    let results = step(&out, "whoami10")["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"))
        .clone();
    assert_eq!(results.len(), 10);
    assert!(
        results.iter().all(|r| r["content"][0]["text"] == "alice"),
        "{out}"
    );
    assert_eq!(
        stats(&env.idp).await["grants"]["refresh_token"]
            .as_u64()
            .unwrap_or(0),
        before + 1
    );
    let seen: Value = http_get(format!("http://127.0.0.1:{}/_test/seen", who.port))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        seen["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s == "alice"),
        "{seen}"
    );
    assert_eq!(seen["other_credentials"], 0, "{seen}");
    assert!(
        !seen["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == &json!(env.alice)),
        "{seen}"
    );

    // The grant goes away mid-session (disconnected): the next tool call answers with a tool
    // error that names the command to connect, never the single-use link (a tool result enters
    // the model's context: third review, finding 14); the user asks for a link with their own
    // credential, and after consenting again the same call, in the same session, succeeds.
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    let r = client()
        .delete(env.sluice.url("/oauth/v1/connections/corp"))
        .bearer_auth(&env.alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer = rpc_answer(post(&url, Some(&env.alice), Some(&session), call.clone()).await).await;
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !text.contains("link=") && text.contains("sluice oauth connect corp"),
        "{text}"
    );
    // Where the operator lets links into tool results, the link is there.
    let mut opted = server.clone();
    opted["links_in_tool_results"] = json!(true);
    let (s, v) = api(
        &env.admin,
        &env.root,
        "PUT",
        "/v1/mcp-servers/whoami",
        Some(&opted.to_string()),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    until_revision(&env.admin, v["revision"].as_u64().unwrap()).await;
    let answer = rpc_answer(post(&url, Some(&env.alice), Some(&session), call.clone()).await).await;
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("/oauth/v1/connect/corp?link="), "{text}");
    let link = crate::vault::connect_link(&env, &env.alice).await;
    let (_, status, _) = consent(&env, &link, "alice", false).await;
    assert_eq!(status, 200);
    let answer = rpc_answer(post(&url, Some(&env.alice), Some(&session), call).await).await;
    assert_eq!(answer["result"]["content"][0]["text"], "alice", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_must_name_the_resource_and_are_exchanged_never_passed_through() {
    let idp = Idp::start();
    let who = whoami(&format!("{}/me", idp.issuer()));
    let sluice = Sluice::start("");
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let resource = sluice.url("/mcp/xchg");
    let issuer = json!({"name": "corp-idp", "issuer": idp.issuer(), "audiences": ["urn:sluice:gateway", resource], "principal_claim": "sub"});
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/issuers",
        Some(&issuer.to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (_, _, _alice) = configure(
        &idp,
        &sluice,
        &admin,
        &root,
        "client_secret_basic",
        &["token_exchange"],
    )
    .await;
    let server = json!({"name": "xchg", "url": format!("http://127.0.0.1:{}/mcp", who.port),
        "auth": "oauth_provider", "oauth_provider": "corp", "client_auth": "jwt", "scopes": ["tools"]});
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/mcp-servers",
        Some(&server.to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let mint = |aud: &str, scope: &str| json!({"claims": {"iss": idp.issuer(), "aud": aud, "sub": "carol", "scope": scope, "exp": unix_now() + 300}});
    let jwt = idp.mint(mint(&resource, "tools")).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = sdk(&resource, &jwt, &["init", "whoami"], &[]);
    assert_eq!(
        step(&out, "whoami")["result"]["content"][0]["text"],
        "carol",
        "{out}"
    );
    let seen: Value = http_get(format!("http://127.0.0.1:{}/_test/seen", who.port))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !seen["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == &json!(jwt)),
        "the caller's JWT went upstream"
    );
    // A token for another audience (the gateway's): 401; without the scope: 403.
    let other = idp.mint(mint("urn:sluice:gateway", "tools")).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}});
    let r = post(&resource, Some(&other), None, list.clone()).await;
    assert_eq!(r.status(), 401);
    let unscoped = idp.mint(mint(&resource, "other")).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = post(&resource, Some(&unscoped), None, list).await;
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.contains("insufficient_scope") && challenge.contains("scope=\"tools\""),
        "{challenge}"
    );

    // Attaching the OAuth provider to an MCP server is its own permission.
    let t = {
        let body = json!({"name": "tools-editor", "permissions": ["mcp_server_create", "mcp_server_update"]});
        assert_eq!(
            api(&admin, &root, "POST", "/v1/owners", Some(&body.to_string()))
                .await
                .0,
            201
        );
        let body = json!({"name": "te", "owner": "tools-editor"});
        api(&admin, &root, "POST", "/v1/tokens", Some(&body.to_string()))
            .await
            .1["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut s2 = server.clone();
    s2["name"] = json!("xchg2");
    let (s, v) = api(&admin, &t, "POST", "/v1/mcp-servers", Some(&s2.to_string())).await;
    assert_eq!(
        (s, &v["error"]["field"]),
        (403, &json!("oauth_provider")),
        "{v}"
    );
    let body = json!({"name": "tools-editor", "permissions": ["mcp_server_create", "mcp_server_update", "oauth_provider_attach"]});
    assert_eq!(
        api(
            &admin,
            &root,
            "PUT",
            "/v1/owners/tools-editor",
            Some(&body.to_string())
        )
        .await
        .0,
        200
    );
    let (s, v) = api(&admin, &t, "POST", "/v1/mcp-servers", Some(&s2.to_string())).await;
    assert_eq!(s, 201, "{v}");
}

/// MCP authorization as clients do it: the SDK client finds the protected-resource metadata
/// from Sluice's 401, registers at the authorization server it names, gets the user's consent
/// and a token for exactly this resource, and Sluice takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_client_discovers_authorization_from_the_401() {
    let idp = Idp::start();
    let (_everything, upstream) = everything();
    let sluice = Sluice::start(&format!(
        "mcp_servers:\n  - {{ name: tools, url: \"{upstream}\", client_auth: jwt }}\n"
    ));
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let resource = sluice.url("/mcp/tools");
    let issuer = json!({"name": "corp-idp", "issuer": idp.issuer(), "audiences": [resource], "principal_claim": "sub"});
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/issuers",
        Some(&issuer.to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let out = Command::new("node")
        .arg(mcp_dir().join("oauth-client.mjs"))
        .arg(&resource)
        .output()
        .expect("node");
    let v = node_json(&out);
    assert!(v["error"].is_null(), "{v}");
    assert_eq!(v["discovered"]["authorization"], idp.issuer(), "{v}");
    assert_eq!(v["discovered"]["resource"], resource, "{v}");
    assert_eq!(v["aud"], resource, "{v}");
    assert!(v["tools"].as_u64().unwrap_or(0) > 0, "{v}");
}

/// An MCP server as an agent API with `auth: oauth`, reached machine to machine: the SDK's
/// `ClientCredentialsProvider` meets the 401, follows `resource_metadata` to the agent
/// environment's protected-resource metadata, finds Sluice's own issuer there, reads its RFC 8414
/// metadata and gets a token for the resource with the app's client credentials, then uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_gets_a_client_credentials_token_from_sluices_issuer() {
    let (_everything, upstream) = everything();
    let base = upstream.trim_end_matches("/mcp");
    let sluice = Sluice::start(&format!(
        "agents:\n  - name: tools\n    environments:\n      - {{ name: prod, url: \"{base}\", auth: oauth }}\n"
    ));
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let (s, app) = api(
        &admin,
        &root,
        "POST",
        "/v1/agents/tools/environments/prod/apps",
        Some(r#"{"name":"m2m-bot"}"#),
    )
    .await;
    assert_eq!(s, 201, "{app}");
    until_revision(&admin, app["revision"].as_u64().unwrap()).await;
    let out = Command::new("node")
        .arg(mcp_dir().join("client-credentials.mjs"))
        .arg(sluice.url("/agents/tools/prod/mcp"))
        .env("MCP_CLIENT_ID", app["client_id"].as_str().unwrap())
        .env("MCP_CLIENT_SECRET", app["client_secret"].as_str().unwrap())
        .env("MCP_EXPECTED_ISSUER", sluice.url(""))
        .output()
        .expect("node");
    let v = node_json(&out);
    assert!(v["error"].is_null(), "{v}");
    let fetched: Vec<&str> = v["fetched"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let at = |what: &str| {
        fetched
            .iter()
            .position(|f| *f == what)
            .unwrap_or_else(|| panic!("no `{what}` in {fetched:?}"))
    };
    // Discovery in order: the refusal, the resource's metadata, the issuer's, the token.
    let order = [
        at("POST /agents/tools/prod/mcp 401"),
        at("GET /.well-known/oauth-protected-resource/agents/tools/prod 200"),
        at("GET /.well-known/oauth-authorization-server 200"),
        at("POST /oauth2/token 200"),
        at("POST /agents/tools/prod/mcp 200"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{fetched:?}");
    assert!(
        v["tools"].as_array().unwrap().iter().any(|t| t == "echo"),
        "{v}"
    );
    assert!(
        v["echo"]
            .as_str()
            .unwrap_or("")
            .contains("machine to machine"),
        "{v}"
    );
    let token = v["token"].as_str().unwrap();
    let claims: Value = {
        use base64::Engine;
        let payload = token.split('.').nth(1).unwrap();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    };
    assert_eq!(claims["aud"], sluice.url("/agents/tools/prod"), "{claims}");
    assert_eq!(claims["client_id"], app["client_id"], "{claims}");
}

/// A raw upstream for the GET stream: answers the first GET with a chunked SSE stream that
/// sends an event at once, another after 400 ms, then ends; hands back the request head it got.
async fn trickling_upstream() -> (u16, tokio::sync::oneshot::Receiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            head.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
        let chunk = |data: &str| {
            let event = format!("event: message\ndata: {data}\n\n");
            format!("{:x}\r\n{event}\r\n", event.len())
        };
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: keep-alive\r\nwww-authenticate: Bearer realm=\"up\"\r\n\r\n";
        s.write_all(format!("{head}{}", chunk("{\"n\":1}")).as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.write_all(format!("{}0\r\n\r\n", chunk("{\"n\":2}")).as_bytes())
            .await
            .unwrap();
        // Waits for the relay to close its side ("Connection: close" was asked for).
        let _ = s.read(&mut buf).await;
    });
    (port, rx)
}

/// GET streams leave Pingora for a relay of their own (a few KiB per idle stream): events arrive
/// as the upstream sends them, the client's credential stays behind, the upstream's challenge
/// is not passed on, the stream is audited when it ends, and a dead upstream is a JSON-RPC 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_streams_are_relayed_as_they_arrive() {
    let (port, seen) = trickling_upstream().await;
    let dynamic = format!(
        "tokens:\n  - {}\nmcp_servers:\n  - {{ name: feed, url: \"http://127.0.0.1:{port}/mcp\", client_auth: token }}\n  - {{ name: down, url: \"http://127.0.0.1:{down}/mcp\", client_auth: token }}\naudit:\n  sink: file\n",
        tok().record,
        down = refused_port()
    );
    let sluice = Sluice::start(&dynamic);
    let started = std::time::Instant::now();
    let mut r = client()
        .get(sluice.url("/mcp/feed"))
        .bearer_auth(&tok().token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert!(r.headers().get("www-authenticate").is_none());
    assert!(r.headers().get("x-request-id").is_some());
    let mut events = Vec::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        events.push((
            started.elapsed(),
            String::from_utf8_lossy(&chunk).into_owned(),
        ));
    }
    let body: String = events.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(
        body,
        "event: message\ndata: {\"n\":1}\n\nevent: message\ndata: {\"n\":2}\n\n"
    );
    let first = events
        .iter()
        .find(|(_, c)| c.contains("\"n\":1"))
        .unwrap()
        .0;
    let second = events
        .iter()
        .find(|(_, c)| c.contains("\"n\":2"))
        .unwrap()
        .0;
    assert!(
        second >= first + Duration::from_millis(300),
        "the first event waited for the second: {events:?}"
    );
    let head = seen.await.unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /mcp http/1.1\r\n"), "{head}");
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert!(
        !head.contains(&tok().token.to_ascii_lowercase()) && !head.contains("authorization"),
        "the client's credential went upstream: {head}"
    );

    // Audited once the stream ended.
    let record = wait_audit(&sluice, |r| r["event"] == "mcp" && r["method"] == "stream").await;
    let record = record.expect("no audit record of the stream");
    assert_eq!(record["status"], 200);
    assert_eq!(record["mcp_server"], "feed");
    assert!(record["bytes_out"].as_u64().unwrap() > 0, "{record}");
    let streams = sluice
        .metric("sluice_mcp_requests_total{method=\"stream\",outcome=\"2xx\",server=\"feed\"}")
        .await;
    assert_eq!(streams, 1.0);

    // An upstream that is down: the client is still in Pingora's session and gets a JSON-RPC 502.
    let r = client()
        .get(sluice.url("/mcp/down"))
        .bearer_auth(&tok().token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.json::<Value>().await.unwrap()["jsonrpc"], "2.0");
}

/// An upstream that takes GET streams and never answers them; counts the connections still
/// open (a connection the relay closes is noticed at once).
async fn silent_upstream() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = open.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let open = counted.clone();
            open.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (port, open)
}

async fn until_open(open: &std::sync::atomic::AtomicUsize, want: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while open.load(std::sync::atomic::Ordering::SeqCst) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "upstream connections: {} open, want {want}",
            open.load(std::sync::atomic::Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Third review, finding 11: MCP GET streams had no cap, and a client that left was not
/// noticed while the relay waited for the upstream's answer (100 closed clients held 104
/// upstream connections for the idle timeout). Streams are capped per principal and server,
/// the relay ends when the client goes, and limits select MCP servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_streams_are_capped_and_end_with_their_client() {
    let (port, open) = silent_upstream().await;
    let echo = echo_api().await;
    let dynamic = format!(
        "tokens:\n  - {}\nmcp_servers:\n  - {{ name: quiet, url: \"http://127.0.0.1:{port}/mcp\", client_auth: token, max_streams_per_principal: 2, timeouts: {{ idle_seconds: 600 }} }}\n  - {{ name: open, url: \"http://127.0.0.1:{port}/mcp\", client_auth: none, max_streams_per_principal: 1, timeouts: {{ idle_seconds: 600 }} }}\n  - {{ name: tools, url: \"http://127.0.0.1:{echo}/mcp\", client_auth: token }}\nlimits:\n  - {{ name: tools-rate, mcp_server: tools, per: principal, requests_per_minute: 1 }}\n",
        tok().record,
    );
    let sluice = Sluice::start(&dynamic);
    let stream = || {
        let url = sluice.url("/mcp/quiet");
        tokio::spawn(async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(&tok().token)
                .header("accept", "text/event-stream")
                .send()
                .await;
            r.map(|r| r.status().as_u16()).unwrap_or(0)
        })
    };
    let (a, b) = (stream(), stream());
    until_open(&open, 2).await;
    let third = client()
        .get(sluice.url("/mcp/quiet"))
        .bearer_auth(&tok().token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["x-sluice-error"], "mcp_streams");
    assert_eq!(third.json::<Value>().await.unwrap()["jsonrpc"], "2.0");
    // The clients leave before any answer: their upstream connections go at once (not after
    // the 600 s idle timeout), and their places are free again.
    a.abort();
    b.abort();
    until_open(&open, 0).await;
    let c = stream();
    until_open(&open, 1).await;
    c.abort();
    until_open(&open, 0).await;

    // Anonymous callers are counted by address: one cannot take every anonymous stream.
    let anonymous = |from: [u8; 4]| {
        let url = sluice.url("/mcp/open");
        async move {
            reqwest::Client::builder()
                .local_address(std::net::IpAddr::from(from))
                .build()
                .unwrap()
                .get(url)
                .header("accept", "text/event-stream")
                .send()
                .await
        }
    };
    let held = tokio::spawn(anonymous([127, 0, 0, 1]));
    until_open(&open, 1).await;
    let same = anonymous([127, 0, 0, 1]).await.unwrap();
    assert_eq!(same.status(), 429);
    let other = tokio::spawn(anonymous([127, 0, 0, 2]));
    until_open(&open, 2).await;
    held.abort();
    other.abort();
    until_open(&open, 0).await;

    // A limit names an MCP server like a route.
    let post = || {
        client()
            .post(sluice.url("/mcp/tools"))
            .bearer_auth(&tok().token)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .send()
    };
    assert_ne!(post().await.unwrap().status(), 429);
    let refused = post().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["x-sluice-error"], "rate_limited");
}

/// Per-tool policy: lists filtered per principal, refused calls answered by Sluice with a
/// JSON-RPC error naming the tool (never sent upstream), batches and unreadable bodies refused
/// whole, decisions in the audit records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_tool_policy_filters_lists_and_refuses_calls() {
    let (_everything, upstream) = everything();
    let bob = opaque_token(", owner: bob");
    let dynamic = format!(
        r#"owners:
  - {{ name: bob }}
tokens:
  - {}
  - {}
mcp_servers:
  - name: everything
    url: "{upstream}"
    client_auth: token
    policy:
      - allow: {{ tools: ["echo", "get-*"], resources: ["demo://resource/dynamic/text/*"] }}
      - {{ owner: bob, allow: {{ tools: ["trigger-*"] }}, deny: {{ tools: ["echo"] }} }}
audit:
  sink: file
"#,
        tok().record,
        bob.record,
    );
    let sluice = Sluice::start(&dynamic);
    let url = sluice.url("/mcp/everything");

    // Everyone: echo and get-*, nothing else.
    let out = sdk(&url, &tok().token, &["init", "list", "echo"], &[]);
    let tools: Vec<String> = serde_json::from_value(step(&out, "list")["tools"].clone()).unwrap();
    assert!(tools.contains(&"echo".to_owned()), "{tools:?}");
    assert!(
        tools.iter().all(|t| t == "echo" || t.starts_with("get-")),
        "{tools:?}"
    );
    assert!(tools.len() >= 2, "{tools:?}");
    let echo = &step(&out, "echo")["result"]["content"][0]["text"];
    assert!(
        echo.as_str()
            .unwrap_or_default()
            .contains("hello through sluice"),
        "{out}"
    );
    let session = out["sessionId"].as_str().unwrap().to_owned();
    // The id 1.0 is answered as 1 by a JavaScript server: still the list request's answer.
    let list = json!({"jsonrpc": "2.0", "id": 1.0, "method": "tools/list"});
    let r = post(&url, Some(&tok().token), Some(&session), list).await;
    let answer = rpc_answer(r).await;
    let names = answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(
        names
            .iter()
            .all(|t| t["name"] == "echo" || t["name"].as_str().unwrap().starts_with("get-")),
        "{answer}"
    );
    // A resource URI is matched as written, so one the server would normalise is refused.
    for uri in [
        "demo://resource/dynamic/text/../../static/document/architecture.md",
        "DEMO://resource/dynamic/text/1",
    ] {
        let read =
            json!({"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": uri}});
        let r = post(&url, Some(&tok().token), Some(&session), read).await;
        assert_eq!(rpc_answer(r).await["error"]["code"], -32003, "{uri}");
    }

    // Bob: get-* and trigger-*, and echo is denied to him.
    let out = sdk(&url, &bob.token, &["init", "list", "echo"], &[]);
    let tools: Vec<String> = serde_json::from_value(step(&out, "list")["tools"].clone()).unwrap();
    assert!(!tools.contains(&"echo".to_owned()), "{tools:?}");
    assert!(tools.iter().any(|t| t.starts_with("trigger-")), "{tools:?}");
    let refused = step(&out, "echo")["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(refused.contains("tool `echo` is not allowed"), "{out}");
    let session = out["sessionId"].as_str().unwrap().to_owned();

    // A batch holding a refused call is refused whole; each request gets its error.
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "x"}}},
    ]);
    let r = post(&url, Some(&bob.token), Some(&session), batch).await;
    assert_eq!(r.status(), 200);
    let answers: Value = r.json().await.unwrap();
    assert_eq!(answers[0]["error"]["code"], -32003, "{answers}");
    assert_eq!(answers[1]["error"]["data"]["name"], "echo", "{answers}");
    // A body a lenient upstream might read but Sluice cannot is not passed on.
    let r = client()
        .post(&url)
        .bearer_auth(&bob.token)
        .header("mcp-session-id", &session)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"n":NaN}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(rpc_answer(r).await["error"]["code"], -32700);
    // Nor is a call whose name is not a string.
    let odd =
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": ["echo"]}});
    let r = post(&url, Some(&bob.token), Some(&session), odd).await;
    assert_eq!(rpc_answer(r).await["error"]["code"], -32003);

    let refused = wait_audit(&sluice, |r| r["policy"] == "refused" && r["tool"] == "echo")
        .await
        .expect("an audit record of the refused call");
    assert_eq!(refused["mcp_server"], "everything", "{refused}");
    let filtered = wait_audit(&sluice, |r| {
        r["policy"] == "allowed" && r["hidden"].as_u64().is_some_and(|n| n > 0)
    })
    .await
    .expect("an audit record of a filtered list");
    assert_eq!(filtered["method"], "tools/list", "{filtered}");
}

/// Resuming a stream (`Last-Event-ID`) would replay a list answer on the GET stream, which is
/// relayed unfiltered: with a policy the header does not reach the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_policy_streams_are_not_resumed_past_the_filter() {
    let (port, seen) = trickling_upstream().await;
    let dynamic = format!(
        "tokens:\n  - {}\nmcp_servers:\n  - {{ name: feed, url: \"http://127.0.0.1:{port}/mcp\", client_auth: token, policy: [{{ allow: {{ tools: [get-*] }} }}] }}\n",
        tok().record,
    );
    let sluice = Sluice::start(&dynamic);
    let r = client()
        .get(sluice.url("/mcp/feed"))
        .bearer_auth(&tok().token)
        .header("accept", "text/event-stream")
        .header("last-event-id", "tools-list-answer-7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let head = seen.await.unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /mcp"), "{head}");
    assert!(!head.contains("last-event-id"), "{head}");
}
