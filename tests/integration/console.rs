//! The web console (`/ui/`) driven in a real headless Chromium through Selenium: sign-in, live
//! key state, a weight change and a drain that move the proxy's traffic (mock stats), a token
//! shown once, an API error next to its field, usage charts from the audit records, and a
//! viewer who sees no write control and whose forged write the API refuses. Screenshots of each
//! page are kept in `target/console-screenshots/`.

use crate::common::*;
use crate::sdk::run_with_env;
use serde_json::{json, Value};

async fn post(admin: &str, token: &str, path: &str, body: Value) {
    let (s, v) = api(admin, token, "POST", path, Some(&body.to_string())).await;
    assert!(s == 201 || s == 200, "{path}: {s} {v}");
}

#[tokio::test]
async fn the_console_in_a_real_browser() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env("", &[("SLUICE_MASTER_KEY", MASTER)]);
    let admin = sluice.admin_url();
    let root = sluice.admin_token();
    post(
        &admin,
        &root,
        "/v1/secrets",
        json!({"name": "OPENAI_A", "value": "sk-console-a-000000"}),
    )
    .await;
    let key_a = json!({"id": "a", "secret_ref": "secret:OPENAI_A", "weight": 1});
    let provider =
        json!({"name": "openai", "kind": "openai", "base_url": mock.url(), "keys": [key_a]});
    post(&admin, &root, "/v1/providers", provider).await;
    // The second key's value is stored as a managed secret.
    let key_b = json!({"id": "b", "value": "sk-console-b-000000", "weight": 1});
    post(&admin, &root, "/v1/providers/openai/keys", key_b).await;
    post(
        &admin,
        &root,
        "/v1/routes",
        json!({"prefix": "/openai", "provider": "openai", "auth": "token"}),
    )
    .await;
    post(
        &admin,
        &root,
        "/v1/limits",
        json!({"name": "per-app", "owner": "app", "requests_per_minute": 1000}),
    )
    .await;
    post(
        &admin,
        &root,
        "/v1/budgets",
        json!({"name": "app-month", "owner": "app", "period": "month", "usd": 50}),
    )
    .await;
    let echo = echo_api().await;
    let agent = json!({"name": "triage", "environments": [
        {"name": "prod", "url": format!("http://127.0.0.1:{echo}"), "auth": "token"}]});
    post(&admin, &root, "/v1/agents", agent).await;
    let client_token = new_token_for(&admin, &root, "app", None).await;
    let viewer = new_token_for(&admin, &root, "view", Some("viewer")).await;
    let mut status = 0;
    for _ in 0..100 {
        let bearer = format!("Bearer {client_token}");
        status = call(
            &sluice,
            "/openai/v1/chat/completions",
            &[("authorization", &bearer)],
        )
        .await
        .0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "the route never served");

    // Served from the binary, locked down: no inline code, no framing, no third party.
    let r = client().get(format!("{admin}/ui/")).send().await.unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = r.text().await.unwrap();
    assert!(!html.contains("<script>") && !html.contains("http://") && !html.contains("https://"));

    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    let proxy = format!("http://127.0.0.1:{}", sluice.port);
    let out = run_with_env(
        "console_browser.py",
        &[
            &admin,
            &root,
            &viewer,
            &proxy,
            &client_token,
            &mock.url(),
            shots.to_str().unwrap(),
        ],
        &[],
    );
    eprintln!(
        "console: page weight {} KB, time to interactive {} ms, load {} ms",
        out["page_weight_kb"], out["time_to_interactive_ms"], out["page_load_ms"]
    );
    assert_eq!(
        out["bad_token_message"], "That token is not valid.",
        "{out}"
    );
    assert!(out["who"].as_str().unwrap().contains("(admin)"), "{out}");
    // 40 requests at 3:1, then 20 with b drained.
    let (a, b) = (
        out["split_3_1"]["a"].as_u64().unwrap(),
        out["split_3_1"]["b"].as_u64().unwrap(),
    );
    assert_eq!(a + b, 40, "{out}");
    assert!((26..=34).contains(&a), "3:1 split: {out}");
    assert_eq!(out["after_drain"], json!({"a": 20, "b": 0}), "{out}");
    assert_eq!(out["token_prefix"], "sluice_", "{out}");
    assert_eq!(out["token_shown_again"], false);
    assert_eq!(out["token_listed"], true);
    assert!(
        out["field_error"]
            .as_str()
            .unwrap()
            .contains("UPPER_SNAKE_CASE"),
        "{out}"
    );
    assert!(
        out["secrets_used_by"]
            .as_str()
            .unwrap()
            .contains("openai/a"),
        "{out}"
    );
    // Requests and tokens, in the last minute's bucket at least.
    assert!(out["usage_bars"].as_u64().unwrap() >= 2, "{out}");
    assert!(
        out["usage_legend"].as_str().unwrap().contains("openai"),
        "{out}"
    );
    assert!(
        out["page_limits"].as_str().unwrap().contains("app-month")
            && out["page_limits"].as_str().unwrap().contains("$0.0000 / "),
        "{out}"
    );
    assert_eq!(
        out["preset_token_endpoint"], "https://github.com/login/oauth/access_token",
        "{out}"
    );
    assert!(
        out["redirect_uri"]
            .as_str()
            .unwrap()
            .ends_with("/oauth/v1/callback"),
        "{out}"
    );
    assert!(
        out["oauth_row"]
            .as_str()
            .unwrap()
            .contains("authorization_code"),
        "{out}"
    );
    assert!(out["app_secret_len"].as_u64().unwrap() >= 20, "{out}");
    let card = out["test_token_card"].as_str().unwrap();
    assert!(
        card.contains("/agents/triage/prod") && card.contains("curl -H"),
        "{out}"
    );
    assert!(
        out["viewer_who"].as_str().unwrap().contains("(viewer)"),
        "{out}"
    );
    assert_eq!(out["viewer_write_controls"], json!([]), "{out}");
    assert_eq!(out["forged_write_status"], 403, "{out}");
    for page in [
        "01-providers",
        "03-token-created",
        "05-usage",
        "10-viewer-providers",
    ] {
        assert!(
            shots.join(format!("{page}.png")).exists(),
            "{page} screenshot"
        );
    }
}
