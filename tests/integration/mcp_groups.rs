//! MCP groups: one endpoint federating several MCP servers, each with its own upstream auth.

use crate::common::*;
use crate::mcp::{everything, mcp_dir, node_json, test_server};
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
