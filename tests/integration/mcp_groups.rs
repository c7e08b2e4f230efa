//! MCP groups: one endpoint federating several MCP servers, each with its own upstream auth.

use crate::common::*;
use crate::mcp::{everything, mcp_dir, node_json, post, rpc_answer, test_server};
use serde_json::json;
use std::process::Command;

/// A group of server-everything (no upstream auth) and Sluice's echo server (a service
/// secret), with a group policy hiding one tool, through the official SDK client: one session,
/// namespaced tools and prompts, each member's own credential, a long tool's progress relayed,
/// a member's notification on the merged GET stream, the refused tool refused, and the echo server stopped mid-session: its tools gone, the
/// other member's still answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_federates_servers_and_survives_a_member_going_down() {
    let (_everything, upstream) = everything();
    // Sluice's own test MCP server (`echo`, `slow` with progress, a prompt, a stop hook).
    let echo = test_server("echo-server.mjs", &[]);
    let sluice = Sluice::start(&format!(
        r#"mcp_servers:
  - {{ name: everything, url: "{upstream}" }}
  - {{ name: echo, url: "http://127.0.0.1:{}/mcp", auth: secret, secret_ref: ECHO_TOKEN }}
  - name: work
    members: [everything, echo]
    policy:
      - deny: {{ tools: ["everything__get-env"] }}
"#,
        echo.port
    ));
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let secret = json!({"name": "ECHO_TOKEN", "value": "echo-service-token", "scopes": ["mcp"]});
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/secrets",
        Some(&secret.to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let alice = new_token_for(&admin, &root, "alice", None).await;
    let out = node_json(
        &Command::new("node")
            .arg(mcp_dir().join("group-client.mjs"))
            .arg(sluice.url("/mcp/work"))
            .env("MCP_TOKEN", &alice)
            .env(
                "STOP_URL",
                format!("http://127.0.0.1:{}/_test/stop", echo.port),
            )
            .output()
            .expect("node"),
    );
    assert!(out["error"].is_null(), "{out}");
    assert_eq!(out["session"], true, "{out}");
    assert!(
        out["server"].as_str().unwrap().contains("Sluice group"),
        "{out}"
    );
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    for want in [
        "echo__echo",
        "echo__slow",
        "everything__echo",
        "everything__get-sum",
    ] {
        assert!(tools.contains(&want), "{want}: {out}");
    }
    assert!(
        !tools.contains(&"everything__get-env"),
        "the group policy hides it: {out}"
    );
    assert!(
        out["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "echo__greet"),
        "{out}"
    );
    assert_eq!(
        out["echo"], "hi (Bearer echo-service-token)",
        "the member's own credential: {out}"
    );
    assert!(
        out["everything_echo"].as_str().unwrap().contains("yo"),
        "{out}"
    );
    assert_eq!(out["slow"], "done", "{out}");
    assert_eq!(out["progress"].as_array().unwrap().len(), 3, "{out}");
    assert_eq!(
        out["announced"], true,
        "a member's GET-stream notification: {out}"
    );
    assert_eq!(
        out["elicited"], 1,
        "a member's elicitation reached the client: {out}"
    );
    assert!(
        out["elicit"].as_str().unwrap().contains("declined"),
        "and the answer went back to it: {out}"
    );
    assert_eq!(out["unknown"], -32603, "{out}");
    assert_eq!(out["refused_code"], -32003, "{out}");
    let after: Vec<&str> = out["tools_after_stop"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(
        !after.is_empty() && after.iter().all(|t| t.starts_with("everything__")),
        "{out}"
    );
    assert_eq!(out["stopped_call"], -32603, "{out}");
    assert!(
        out["everything_after_stop"]
            .as_str()
            .unwrap()
            .contains("still"),
        "{out}"
    );

    // Groups are MCP servers like any: made from the CLI too.
    let made = cli(
        &admin,
        &root,
        &[
            "mcp",
            "create",
            "--name",
            "work2",
            "--members",
            "everything,echo",
        ],
        &[],
    );
    assert!(made.contains("work2"), "{made}");
    let (s, v) = api(&admin, &root, "GET", "/v1/mcp-servers/work2", None).await;
    assert_eq!(
        (s, &v["members"]),
        (200, &json!(["everything", "echo"])),
        "{v}"
    );

    // The group's session is alice's: another principal presenting it is refused.
    let bob = new_token_for(&admin, &root, "bob", None).await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let r = client()
        .post(sluice.url("/mcp/work"))
        .bearer_auth(&alice)
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let r = client()
        .post(sluice.url("/mcp/work"))
        .bearer_auth(&bob)
        .header("mcp-session-id", &sid)
        .header("accept", "application/json, text/event-stream")
        .json(&list)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// A group is checked: members exist, are not groups, and a group has no url or auth.
#[test]
fn groups_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(
        &path,
        "mcp_servers:\n  - { name: a, url: \"http://127.0.0.1:1/mcp\" }\n  - { name: g, members: [a, nope] }\n  - { name: h, members: [a, g], url: \"http://127.0.0.1:1/mcp\" }\n",
    )
    .unwrap();
    let out = Command::new(sluice_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("mcp_servers[1].members[1]") && text.contains("no MCP server named `nope`"),
        "{text}"
    );
    assert!(
        text.contains("mcp_servers[2].members[1]") && text.contains("groups do not nest"),
        "{text}"
    );
    assert!(text.contains("mcp_servers[2].url"), "{text}");
}

/// The outside attack on groups (round 2): a group opens no member wider than the member opens
/// itself (its scopes, client auth), a member's limits count its calls through the group, a
/// member that never answers is left out after its connect timeout instead of holding the
/// group, a list whose cursor never ends stops, and a member's address stays out of errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_opens_no_member_wider_and_bounds_each() {
    let (_everything, upstream) = everything();
    let echo = test_server("echo-server.mjs", &[]);
    let looping = test_server("hostile-member.mjs", &[("MODE", "loop")]);
    let hanging = test_server("hostile-member.mjs", &[("MODE", "hang")]);
    let dead = refused_port();
    let sluice = Sluice::start(&format!(
        r#"mcp_servers:
  - {{ name: echo, url: "http://127.0.0.1:{e}/mcp" }}
  - {{ name: locked, url: "{upstream}", scopes: [admin] }}
  - {{ name: jwtonly, url: "{upstream}", client_auth: jwt }}
  - {{ name: looping, url: "http://127.0.0.1:{l}/mcp" }}
  - {{ name: hanging, url: "http://127.0.0.1:{h}/mcp", timeouts: {{ connect_seconds: 1 }} }}
  - {{ name: dead, url: "http://127.0.0.1:{dead}/internal-mcp" }}
  - name: work
    members: [echo, locked, jwtonly, looping, hanging, dead]
limits:
  - {{ name: echo-limit, mcp_server: echo, per: principal, requests_per_minute: 2 }}
"#,
        e = echo.port,
        l = looping.port,
        h = hanging.port,
    ));
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let alice = new_token_for(&admin, &root, "alice", None).await;
    let url = sluice.url("/mcp/work");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    // Answered although `hanging` never answers (left out after its 1 s).
    let r = post(&url, Some(&alice), None, init).await;
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let answer = rpc_answer(post(&url, Some(&alice), Some(&sid), list).await).await;
    let names: Vec<&str> = answer["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"echo__echo"), "{answer}");
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("locked__") || n.starts_with("jwtonly__")),
        "members alice may not reach directly: {answer}"
    );
    let looped = names.iter().filter(|n| n.starts_with("looping__")).count();
    assert!(
        (1..=2).contains(&looped),
        "a cursor seen twice ends the list: {answer}"
    );
    let call = |id: u64, name: &str| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": {"message": "x", "text": "x"}}});
    let answer =
        rpc_answer(post(&url, Some(&alice), Some(&sid), call(3, "locked__echo")).await).await;
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not open to you"),
        "{answer}"
    );
    // `dead`'s address stays in the log.
    let answer =
        rpc_answer(post(&url, Some(&alice), Some(&sid), call(4, "dead__echo")).await).await;
    let message = answer["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("could not be reached")
            && !message.contains("127.0.0.1")
            && !message.contains("internal-mcp"),
        "{answer}"
    );
    // echo's limit (2 a minute) counts calls through the group.
    let mut statuses = Vec::new();
    for id in 10..13 {
        statuses.push(
            post(&url, Some(&alice), Some(&sid), call(id, "echo__echo"))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 429], "echo's own limit");
    drop((echo, looping, hanging));
}
