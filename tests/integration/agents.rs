//! Agents' HTTP APIs at `/agents/{agent}/{env}/…`: per-environment upstreams and auth
//! settings, open operations, changes through the admin API served at the next revision, bad
//! input named by field.

use crate::common::*;
use serde_json::{json, Value};

async fn send(
    sluice: &Sluice,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = client().request(method, sluice.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The status of a POST to `path` (with `token`, if any) once it is `want` (a change reaches
/// the data plane at the next revision), or the last one seen after 5 s.
async fn settle(sluice: &Sluice, path: &str, token: Option<&str>, want: u16) -> u16 {
    let mut seen = 0;
    for _ in 0..50 {
        seen = send(sluice, reqwest::Method::POST, path, token).await.0;
        if seen == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    seen
}

/// PyJWT's `PyJWKClient` verifies `token` from Sluice's JWKS alone (signature with `alg` only,
/// audience, issuer); prints `sub agent env scope`.
fn third_party_verifies(sluice: &Sluice, token: &str, resource: &str, alg: &str) -> String {
    let script = r#"
import sys, jwt
client = jwt.PyJWKClient(sys.argv[1])
token = sys.argv[2]
key = client.get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=[sys.argv[5]], audience=sys.argv[3], issuer=sys.argv[4])
print(claims["sub"], claims["agent"], claims["env"], claims["scope"])
"#;
    let out = std::process::Command::new(crate::sdk::python())
        .args([
            "-c",
            script,
            &sluice.url("/oauth2/jwks"),
            token,
            &sluice.url(resource),
            &sluice.url(""),
            alg,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "PyJWT: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn upstream_line(answer: &Value) -> String {
    answer["head"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_environments_with_their_own_policies() {
    let port = echo_api().await;
    let invoker = opaque_token(", scopes: [invoke]");
    let dynamic = format!(
        r#"tokens:
  - {}
  - {}
agents:
  - name: research
    display_name: Research agent
    environments:
      - {{ name: dev, url: "http://127.0.0.1:{port}/dev", auth: none }}
      - name: prod
        url: "http://127.0.0.1:{port}/prod"
        auth: token
        scopes: [invoke]
        exceptions: [{{ method: GET, path: /health }}, {{ method: "*", path: /docs/* }}]
      - {{ name: old, url: "http://127.0.0.1:{port}/old", auth: none, enabled: false }}
"#,
        tok().record,
        invoker.record
    );
    let sluice = Sluice::start(&dynamic);
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;

    // dev is open; its upstream gets the path under the environment.
    let (s, v) = send(&sluice, post.clone(), "/agents/research/dev/invoke", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(upstream_line(&v), "POST /dev/invoke HTTP/1.1");
    // prod takes tokens with the scope; the credential stays here.
    let (s, _) = send(&sluice, post.clone(), "/agents/research/prod/invoke", None).await;
    assert_eq!(s, 401);
    let (s, _) = send(
        &sluice,
        post.clone(),
        "/agents/research/prod/invoke",
        Some(&tok().token),
    )
    .await;
    assert_eq!(s, 403, "a token without the scope");
    let (s, v) = send(
        &sluice,
        post.clone(),
        "/agents/research/prod/invoke",
        Some(&invoker.token),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(upstream_line(&v), "POST /prod/invoke HTTP/1.1");
    assert!(!v["head"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("authorization"));
    // Open operations: exact path and method, or a prefix.
    let (s, _) = send(&sluice, get.clone(), "/agents/research/prod/health", None).await;
    assert_eq!(s, 200);
    for (method, path) in [
        (post.clone(), "/agents/research/prod/health"),
        (get.clone(), "/agents/research/prod/health/deep"),
        (get.clone(), "/agents/research/prod/healthz"),
        (get.clone(), "/agents/research/prod/docs"),
    ] {
        let (s, _) = send(&sluice, method.clone(), path, None).await;
        assert_eq!(s, 401, "{method} {path} is not open");
    }
    let (s, _) = send(
        &sluice,
        post.clone(),
        "/agents/research/prod/docs/a/b",
        None,
    )
    .await;
    assert_eq!(s, 200);
    // A disabled environment and an unknown one are not served.
    let (s, _) = send(&sluice, post.clone(), "/agents/research/old/invoke", None).await;
    assert_eq!(s, 404);
    let (s, _) = send(&sluice, post.clone(), "/agents/research/qa/invoke", None).await;
    assert_eq!(s, 404);

    // Through the admin API: the invoke URLs are shown; turning prod open applies at the next
    // revision; bad input is named by field and changes nothing.
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let billing = json!({"name": "billing", "environments": [
        {"name": "prod", "url": format!("http://127.0.0.1:{port}/billing"), "auth": "none"}
    ]});
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/agents",
        Some(&billing.to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let served = settle(&sluice, "/agents/billing/prod/run", None, 200).await;
    assert_eq!(served, 200, "the new agent is served at the next revision");
    let (s, v) = api(&admin, &root, "GET", "/v1/agents/billing", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["invoke_urls"]["prod"], sluice.url("/agents/billing/prod"));
    // Closing it (auth: token) applies at the next revision too.
    let mut closed = billing.clone();
    closed["environments"][0]["auth"] = json!("token");
    let (s, v) = api(
        &admin,
        &root,
        "PUT",
        "/v1/agents/billing",
        Some(&closed.to_string()),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let served = settle(&sluice, "/agents/billing/prod/run", None, 401).await;
    assert_eq!(served, 401, "auth: token applies at the next revision");
    // The CLI: an agent with two environments, then one opened with an exception.
    let out = cli(
        &admin,
        &root,
        &[
            "agent",
            "--output",
            "json",
            "create",
            "--name",
            "cli-agent",
            "--env",
            &format!("dev=http://127.0.0.1:{port}/a"),
            "--env",
            &format!("prod=http://127.0.0.1:{port}/b"),
        ],
        &[],
    );
    let created: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    assert_eq!(created["item"]["environments"][1]["auth"], "token", "{out}");
    let out = cli(
        &admin,
        &root,
        &[
            "agent",
            "--output",
            "json",
            "env",
            "cli-agent",
            "prod",
            "--auth",
            "none",
            "--exception",
            "GET /health",
        ],
        &[],
    );
    let changed: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    let envs = &changed["item"]["environments"];
    assert_eq!(envs[1]["auth"], "none", "{out}");
    assert_eq!(envs[1]["exceptions"][0]["path"], "/health", "{out}");
    assert_eq!(
        envs[0]["auth"], "token",
        "the other environment is kept: {out}"
    );

    let bad = [
        (
            json!({"name": "x1", "environments": [{"name": "prod", "url": "ftp://x"}]}),
            "store:agent/x1.environments[0].url",
        ),
        (
            json!({"name": "x2", "environments": [{"name": "prod", "url": format!("http://127.0.0.1:{port}"), "exceptions": [{"method": "get", "path": "/health"}]}]}),
            "store:agent/x2.environments[0].exceptions[0]",
        ),
        (
            json!({"name": "x3", "environments": [{"name": "prod", "url": format!("http://127.0.0.1:{port}"), "auth": "none", "scopes": ["a"]}]}),
            "store:agent/x3.environments[0].scopes",
        ),
        (
            json!({"name": "x4", "environments": [{"name": "prod", "url": format!("http://127.0.0.1:{port}"), "auth": "oauth-and-token"}]}),
            "environments[0].auth",
        ),
        (json!({"name": "X5", "environments": []}), "name"),
        (
            json!({"name": "x6", "environments": [], "token_lifetime_seconds": 5}),
            "store:agent/x6.token_lifetime_seconds",
        ),
    ];
    for (body, field) in bad {
        let (s, v) = api(&admin, &root, "POST", "/v1/agents", Some(&body.to_string())).await;
        assert!(s == 400 || s == 422, "{body}: {s} {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
    }
}

/// `auth: oauth` environments take tokens of Sluice's own issuer for exactly that environment:
/// its keys are generated and sealed by the control plane, published at `/oauth2/jwks` (a
/// third party, PyJWT's `PyJWKClient`, verifies a token from there), and trusted by the data
/// plane without fetching anything. Test tokens need `agent_test_token`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_environments_take_tokens_of_sluices_issuer() {
    let port = echo_api().await;
    let dynamic = format!(
        r#"agents:
  - name: research
    environments:
      - {{ name: dev, url: "http://127.0.0.1:{port}/dev", auth: oauth }}
      - {{ name: prod, url: "http://127.0.0.1:{port}/prod", auth: oauth, scopes: [invoke] }}
      - {{ name: open, url: "http://127.0.0.1:{port}/open", auth: none }}
"#
    );
    let sluice = Sluice::start(&dynamic);
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let post = reqwest::Method::POST;

    let jwks: Value = http_get(sluice.url("/oauth2/jwks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    assert_eq!(
        (keys[0]["kty"].as_str(), keys[0]["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert!(
        keys[0].get("d").is_none(),
        "a private part in the JWKS: {jwks}"
    );

    let test_token = |env: &'static str| {
        let (admin, root) = (admin.clone(), root.clone());
        async move {
            let path = format!("/v1/agents/research/environments/{env}/test-token");
            api(&admin, &root, "POST", &path, None).await
        }
    };
    let (s, prod) = test_token("prod").await;
    assert_eq!(s, 201, "{prod}");
    assert_eq!(prod["invoke_url"], sluice.url("/agents/research/prod"));
    assert!(prod["curl"]
        .as_str()
        .unwrap()
        .contains("Authorization: Bearer"));
    let prod_token = prod["access_token"].as_str().unwrap().to_owned();
    let (s, v) = send(
        &sluice,
        post.clone(),
        "/agents/research/prod/invoke",
        Some(&prod_token),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(upstream_line(&v), "POST /prod/invoke HTTP/1.1");
    assert!(!v["head"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("authorization"));

    // Without a token: the challenge; a token for dev is not one for prod.
    let r = client()
        .post(sluice.url("/agents/research/prod/invoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The challenge names the protected-resource metadata (RFC 9728), which names the resource
    // (the audience to ask for) and Sluice's issuer, for this path and any path below it.
    let metadata = sluice.url("/.well-known/oauth-protected-resource/agents/research/prod");
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.starts_with("Bearer ")
            && challenge.contains(&format!(r#"resource_metadata="{metadata}""#)),
        "{challenge}"
    );
    for url in [metadata.clone(), format!("{metadata}/invoke")] {
        let doc: Value = http_get(url).await.unwrap().json().await.unwrap();
        assert_eq!(
            doc["resource"],
            sluice.url("/agents/research/prod"),
            "{doc}"
        );
        assert_eq!(doc["authorization_servers"], json!([sluice.url("")]));
        assert_eq!(doc["scopes_supported"], json!(["invoke"]));
    }
    let r = http_get(sluice.url("/.well-known/oauth-protected-resource/agents/research/open"))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "an environment without oauth has no metadata"
    );
    let (s, dev) = test_token("dev").await;
    assert_eq!(s, 201, "{dev}");
    let dev_token = dev["access_token"].as_str().unwrap().to_owned();
    let r = client()
        .post(sluice.url("/agents/research/prod/invoke"))
        .bearer_auth(&dev_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "a dev token on prod: not a token for this resource"
    );
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="invalid_token""#) && challenge.contains("resource_metadata="),
        "{challenge}"
    );
    assert_eq!(r.headers()["x-sluice-error"], "wrong_audience");
    let (s, _) = send(
        &sluice,
        post.clone(),
        "/agents/research/dev/invoke",
        Some(&dev_token),
    )
    .await;
    assert_eq!(s, 200);
    // The same claims signed by another P-256 key under the published kid are refused.
    let forged = {
        let master = sluice::control::crypto::MasterKey::from_bytes(&[9u8; 32]).unwrap();
        let other = sluice::control::issuer::KeyDoc::generate(
            &master,
            0,
            sluice::config::wire::SigningAlgorithm::ES256,
        )
        .unwrap();
        // Another key pretending to be the published one: same kid, its own private half.
        let mut signer = other.signer(&master).unwrap();
        signer.kid = keys[0]["kid"].as_str().unwrap().to_owned();
        let payload = prod_token.split('.').nth(1).unwrap();
        use base64::Engine;
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        signer.sign(&claims, "at+jwt").unwrap()
    };
    let (s, _) = send(
        &sluice,
        post.clone(),
        "/agents/research/prod/invoke",
        Some(&forged),
    )
    .await;
    assert_eq!(s, 401, "a token signed by another key");
    // Only oauth environments, only with the permission.
    let (s, v) = test_token("open").await;
    assert_eq!(s, 409, "{v}");
    let (s, _) = test_token("qa").await;
    assert_eq!(s, 404);
    let viewer = new_token_for(&admin, &root, "watcher", Some("viewer")).await;
    let (s, v) = api(
        &admin,
        &viewer,
        "POST",
        "/v1/agents/research/environments/prod/test-token",
        None,
    )
    .await;
    assert_eq!(s, 403, "{v}");

    // A third party verifies the token from the JWKS alone.
    let said = third_party_verifies(&sluice, &prod_token, "/agents/research/prod", "ES256");
    assert!(said.trim().ends_with("research prod invoke"), "{said}");
    assert!(said.starts_with("test:"), "{said}");

    // Rotation: the new key is published at once (JWKS and data plane) but signs only after
    // the publish delay, so tokens keep the old kid for now; the old key's tokens still verify.
    let kid_of = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let old_kid = kid_of(&prod_token);
    let out = cli(
        &admin,
        &root,
        &["issuer", "--output", "json", "rotate"],
        &[],
    );
    let rotated: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    let items = rotated["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{out}");
    let signing: Vec<&Value> = items.iter().filter(|k| k["signing"] == true).collect();
    assert_eq!(signing.len(), 1, "{out}");
    assert_eq!(
        signing[0]["kid"],
        old_kid.as_str(),
        "the new key signs only once published"
    );
    let mut published = 0;
    for _ in 0..50 {
        let jwks: Value = http_get(sluice.url("/oauth2/jwks"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        published = jwks["keys"].as_array().map_or(0, Vec::len);
        if published == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(published, 2, "both keys in the JWKS during the overlap");
    let (s, _) = send(
        &sluice,
        post.clone(),
        "/agents/research/prod/invoke",
        Some(&prod_token),
    )
    .await;
    assert_eq!(s, 200, "a token of the old key after the rotation");
    let out = cli(
        &admin,
        &root,
        &[
            "agent",
            "--output",
            "json",
            "test-token",
            "research",
            "--env",
            "prod",
        ],
        &[],
    );
    let fresh: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    assert_eq!(kid_of(fresh["access_token"].as_str().unwrap()), old_kid);

    // Issuance is audited, never with the token.
    let record = wait_audit(&sluice, |r| r["event"] == "issuer.test_token").await;
    let record = record.expect("no audit record of the test token");
    assert_eq!(record["agent"], "research");
    let audit = std::fs::read_to_string(sluice.dir.path().join("data/audit.jsonl")).unwrap();
    assert!(!audit.contains(&prod_token), "a token in the audit log");
}

/// Consumers get a token from Sluice's token endpoint with a real OAuth client (authlib's
/// client-credentials flow, both client authentication methods) and call the agent with it;
/// bad token requests get the RFC 6749 error; a regenerated secret replaces the old one at
/// once; a revoked app's tokens are refused at the next revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_get_client_credentials_tokens_from_sluice() {
    let port = echo_api().await;
    let dynamic = format!(
        r#"agents:
  - name: research
    token_lifetime_seconds: 120
    environments:
      - {{ name: dev, url: "http://127.0.0.1:{port}/dev", auth: oauth }}
      - {{ name: prod, url: "http://127.0.0.1:{port}/prod", auth: oauth, scopes: [invoke] }}
      - {{ name: open, url: "http://127.0.0.1:{port}/open", auth: none }}
"#
    );
    let sluice = Sluice::start(&dynamic);
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let token_url = sluice.url("/oauth2/token");
    // Clients find the token endpoint and keys from the issuer (RFC 8414).
    let metadata: Value = http_get(sluice.url("/.well-known/oauth-authorization-server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["issuer"], sluice.url(""));
    assert_eq!(metadata["token_endpoint"], token_url);
    assert_eq!(metadata["jwks_uri"], sluice.url("/oauth2/jwks"));
    assert_eq!(metadata["grant_types_supported"][0], "client_credentials");
    // The authorization endpoint clients insist on exists; without sign-in it issues nothing.
    let r = http_get(
        metadata["authorization_endpoint"]
            .as_str()
            .unwrap()
            .to_owned()
            + "?response_type=code&client_id=x",
    )
    .await
    .unwrap();
    // A page for the person (never a redirect to an unchecked URI): no such client.
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("data-reason=\"invalid_client\""));
    let out = cli(
        &admin,
        &root,
        &[
            "app",
            "--output",
            "json",
            "create",
            "--agent",
            "research",
            "--env",
            "prod",
            "--name",
            "billing-bot",
        ],
        &[],
    );
    let app: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    let (id, secret) = (
        app["client_id"].as_str().unwrap().to_owned(),
        app["client_secret"].as_str().unwrap().to_owned(),
    );
    assert!(id.starts_with("research-prod-"), "{app}");
    assert_eq!(app["token_endpoint"], token_url);
    let (s, v) = api(&admin, &root, "GET", "/v1/apps", None).await;
    assert_eq!(s, 200);
    assert!(!v.to_string().contains(&secret), "a secret in the app list");
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/agents/research/environments/open/apps",
        Some(r#"{"name":"x"}"#),
    )
    .await;
    assert_eq!(s, 409, "{v}");

    // authlib, client_secret_basic and client_secret_post.
    let script = r#"
import json, sys
from authlib.integrations.httpx_client import OAuth2Client
token_url, client_id, secret, invoke, method = sys.argv[1:6]
client = OAuth2Client(client_id, secret, token_endpoint_auth_method=method)
token = client.fetch_token(token_url, grant_type="client_credentials")
r = client.post(invoke + "/invoke", json={"input": "hi"})
print(json.dumps({"token": token, "status": r.status_code, "answer": r.json()}))
"#;
    let invoke = sluice.url("/agents/research/prod");
    let mut prod_token = String::new();
    for method in ["client_secret_basic", "client_secret_post"] {
        let out = std::process::Command::new(crate::sdk::python())
            .args(["-c", script, &token_url, &id, &secret, &invoke, method])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "authlib {method}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["status"], 200, "{method}: {v}");
        assert_eq!(v["token"]["token_type"], "Bearer");
        assert_eq!(v["token"]["scope"], "invoke");
        assert_eq!(v["token"]["expires_in"], 120, "the agent's token lifetime");
        assert_eq!(upstream_line(&v["answer"]), "POST /prod/invoke HTTP/1.1");
        prod_token = v["token"]["access_token"].as_str().unwrap().to_owned();
    }
    let claims: Value = {
        use base64::Engine;
        let payload = prod_token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims["client_id"], id.as_str());
    assert_eq!(claims["aud"], invoke.as_str());
    assert_eq!(
        (claims["agent"].as_str(), claims["env"].as_str()),
        (Some("research"), Some("prod"))
    );
    let post = reqwest::Method::POST;
    let (s, _) = send(
        &sluice,
        post.clone(),
        "/agents/research/dev/invoke",
        Some(&prod_token),
    )
    .await;
    assert_eq!(s, 401, "a prod token on dev");

    // Bad token requests: the RFC 6749 error for each, never a secret in the log.
    let form = |body: &str| {
        client()
            .post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
    };
    let basic = |user: &str, pass: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (form("grant_type=client_credentials").header("authorization", basic(&id, "wrong-secret")), 401, "invalid_client"),
        (form("grant_type=client_credentials").header("authorization", basic("research-prod-00000000", &secret)), 401, "invalid_client"),
        (form(&format!("client_id={id}&client_secret={secret}")), 400, "invalid_request"),
        (form(&format!("grant_type=password&client_id={id}&client_secret={secret}")), 400, "unsupported_grant_type"),
        (form("grant_type=client_credentials").header("authorization", "Basic !!!"), 401, "invalid_client"),
        (form("grant_type=client_credentials"), 401, "invalid_client"),
        (form(&format!("grant_type=client_credentials&client_secret={secret}")).header("authorization", basic(&id, &secret)), 400, "invalid_request"),
        (form(&format!("grant_type=client_credentials&scope=admin&client_id={id}&client_secret={secret}")), 400, "invalid_scope"),
        (form(&format!("grant_type=client_credentials&resource=https://elsewhere&client_id={id}&client_secret={secret}")), 400, "invalid_target"),
        (form(&format!("grant_type=client_credentials&pad={}", "x".repeat(64 * 1024))), 400, "invalid_request"),
    ];
    for (i, (req, status, error)) in cases.into_iter().enumerate() {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "case {i}");
        if status == 401 {
            assert!(r.headers().contains_key("www-authenticate"), "case {i}");
        }
        assert_eq!(r.headers()["cache-control"], "no-store", "case {i}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], error, "case {i}: {v}");
    }

    // Introspection (RFC 7662): the app learns what the token is; revocation (RFC 7009): the
    // app's own token is refused from the next revision on, and is no longer active.
    let at = |path: &str, body: String| {
        client()
            .post(sluice.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let creds = format!("client_id={id}&client_secret={secret}");
    let r = at("/oauth2/introspect", format!("token={prod_token}&{creds}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["active"].as_bool(), v["client_id"].as_str()),
        (Some(true), Some(id.as_str())),
        "{v}"
    );
    let r = at("/oauth2/introspect", format!("token=not-a-token&{creds}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["active"], false);
    let r = at(
        "/oauth2/introspect",
        format!("token={prod_token}&client_id={id}&client_secret=nope"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 401, "introspection needs the app's credentials");
    let extra = form(&format!("grant_type=client_credentials&{creds}"))
        .send()
        .await
        .unwrap();
    let extra = extra.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = at("/oauth2/revoke", format!("token={extra}&{creds}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status = settle(&sluice, "/agents/research/prod/invoke", Some(&extra), 401).await;
    assert_eq!(status, 401, "a revoked token");
    let r = at("/oauth2/introspect", format!("token={extra}&{creds}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["active"], false);
    let (s, _) = send(
        &sluice,
        post.clone(),
        "/agents/research/prod/invoke",
        Some(&prod_token),
    )
    .await;
    assert_eq!(s, 200, "the app's other tokens still work");

    // Regenerated: the old secret is refused at once, the new one works.
    let out = cli(
        &admin,
        &root,
        &["app", "--output", "json", "regenerate", &id],
        &[],
    );
    let regenerated: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    let new_secret = regenerated["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let grant = |secret: &str| {
        form(&format!(
            "grant_type=client_credentials&client_id={id}&client_secret={secret}"
        ))
    };
    let r = grant(&secret).send().await.unwrap();
    assert_eq!(r.status(), 401, "the old secret after regeneration");
    let r = grant(&new_secret).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Revoked: its live tokens are refused at the next revision.
    let out = cli(
        &admin,
        &root,
        &["app", "--output", "json", "revoke", &id],
        &[],
    );
    assert!(
        out.contains("\"revoked\": true") || out.contains("\"revoked\":true"),
        "{out}"
    );
    let status = settle(
        &sluice,
        "/agents/research/prod/invoke",
        Some(&prod_token),
        401,
    )
    .await;
    assert_eq!(status, 401, "a revoked app's token");
    let r = grant(&new_secret).send().await.unwrap();
    assert_eq!(r.status(), 401, "a revoked app gets no token");

    // Failed client authentications are limited per client id.
    let mut last = 0;
    for _ in 0..12 {
        last = form("grant_type=client_credentials&client_id=guess-me&client_secret=x")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
    }
    assert_eq!(last, 429, "guessing is slowed down");

    let log = sluice.proc.log_text();
    assert!(
        !log.contains(&secret) && !log.contains(&new_secret),
        "a secret in the log"
    );
    let audit =
        std::fs::read_to_string(sluice.dir.path().join("data/audit.jsonl")).unwrap_or_default();
    assert!(
        !audit.contains(&secret) && !audit.contains(&prod_token),
        "a secret in the audit log"
    );
    assert!(audit.contains("issuer.token"), "issuance not audited");
}

/// Across nodes: data planes following a control plane serve an agent created through the API,
/// hand out app tokens (the request answered by the control plane, which alone holds secrets and
/// keys), and refuse a revoked app's token within a second of the revocation, both of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_across_data_planes() {
    let port = echo_api().await;
    // Every node names the same public URL (the load balancer's): it is the issuer and the
    // audiences' base.
    let shared = "public_base_url: \"https://gw.example.test\"\n";
    let cp = Sluice::start(shared);
    let (admin, root) = (cp.admin_url(), cp.admin_token());
    let agent = json!({"name": "research", "environments": [
        {"name": "prod", "url": format!("http://127.0.0.1:{port}/prod"), "auth": "oauth"}
    ]});
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/agents",
        Some(&agent.to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let dp_token = new_token_for(&admin, &root, "edge", Some("dataplane")).await;
    let dp_args = [
        "--control-plane",
        admin.as_str(),
        "--token",
        dp_token.as_str(),
    ];
    let env: [(&str, &str); 0] = [];
    let dp1 = Sluice::start_args(shared, &env, &dp_args);
    let dp2 = Sluice::start_args(shared, &env, &dp_args);
    let (s, app) = api(
        &admin,
        &root,
        "POST",
        "/v1/agents/research/environments/prod/apps",
        Some(r#"{"name":"bot"}"#),
    )
    .await;
    assert_eq!(s, 201, "{app}");
    let (id, secret) = (
        app["client_id"].as_str().unwrap(),
        app["client_secret"].as_str().unwrap(),
    );
    until_revision(&dp1.admin_url(), app["revision"].as_u64().unwrap()).await;
    until_revision(&dp2.admin_url(), app["revision"].as_u64().unwrap()).await;

    let r = client()
        .post(dp1.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={id}&client_secret={secret}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a data plane's token endpoint");
    let token = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for dp in [&dp1, &dp2] {
        let (s, v) = send(
            dp,
            reqwest::Method::POST,
            "/agents/research/prod/invoke",
            Some(&token),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }

    let (s, v) = api(&admin, &root, "DELETE", &format!("/v1/apps/{id}"), None).await;
    assert_eq!(s, 200, "{v}");
    let revoked_at = std::time::Instant::now();
    for dp in [&dp1, &dp2] {
        loop {
            let (s, _) = send(
                dp,
                reqwest::Method::POST,
                "/agents/research/prod/invoke",
                Some(&token),
            )
            .await;
            if s == 401 {
                break;
            }
            assert!(
                revoked_at.elapsed() < std::time::Duration::from_secs(1),
                "a data plane still takes the revoked app's token after a second"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Who may do what with agents, apps, test tokens and the issuer's keys: admins everything;
/// operators credentials (apps, test tokens) but not configuration (agents, key rotation);
/// viewers read; an owner without a role only what its named permissions say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_issuer_permissions() {
    let port = echo_api().await;
    let sluice = Sluice::start(&format!(
        "agents:\n  - name: research\n    environments:\n      - {{ name: prod, url: \"http://127.0.0.1:{port}\", auth: oauth }}\n"
    ));
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let operator = new_token_for(&admin, &root, "ops", Some("operator")).await;
    let viewer = new_token_for(&admin, &root, "watch", Some("viewer")).await;
    let body = json!({"name": "tester", "permissions": ["agent_test_token", "app_list"]});
    let (s, v) = api(&admin, &root, "POST", "/v1/owners", Some(&body.to_string())).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/tokens",
        Some(r#"{"name":"t","owner":"tester"}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let tester = v["token"].as_str().unwrap().to_owned();

    let agent = |name: &str| json!({"name": name, "environments": []}).to_string();
    let cases: Vec<(&str, String, Option<String>, [u16; 4])> = vec![
        // (method, path, body, [admin, operator, viewer, tester])
        ("GET", "/v1/agents".into(), None, [200, 200, 200, 403]),
        (
            "POST",
            "/v1/agents".into(),
            Some(agent("a1")),
            [201, 403, 403, 403],
        ),
        (
            "POST",
            "/v1/agents/research/environments/prod/test-token".into(),
            None,
            [201, 201, 403, 201],
        ),
        (
            "POST",
            "/v1/agents/research/environments/prod/apps".into(),
            Some(r#"{"name":"x"}"#.into()),
            [201, 201, 403, 403],
        ),
        ("GET", "/v1/apps".into(), None, [200, 200, 200, 200]),
        ("GET", "/v1/issuer/keys".into(), None, [200, 200, 200, 403]),
        (
            "POST",
            "/v1/issuer/keys/rotate".into(),
            None,
            [201, 403, 403, 403],
        ),
    ];
    for (method, path, body, want) in cases {
        for (who, token, want) in [
            ("admin", &root, want[0]),
            ("operator", &operator, want[1]),
            ("viewer", &viewer, want[2]),
            ("tester", &tester, want[3]),
        ] {
            let (s, v) = api(&admin, token, method, &path, body.as_deref()).await;
            assert_eq!(s, want, "{who}: {method} {path}: {v}");
        }
    }
    // Regenerating and revoking apps are credentials too.
    let (_, app) = api(
        &admin,
        &root,
        "POST",
        "/v1/agents/research/environments/prod/apps",
        Some(r#"{"name":"y"}"#),
    )
    .await;
    let id = app["client_id"].as_str().unwrap();
    let (s, _) = api(
        &admin,
        &viewer,
        "POST",
        &format!("/v1/apps/{id}/regenerate"),
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = api(&admin, &viewer, "DELETE", &format!("/v1/apps/{id}"), None).await;
    assert_eq!(s, 403);
    let (s, _) = api(
        &admin,
        &operator,
        "POST",
        &format!("/v1/apps/{id}/regenerate"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = api(&admin, &operator, "DELETE", &format!("/v1/apps/{id}"), None).await;
    assert_eq!(s, 200);
}

/// Turning OAuth on for an environment through the API provisions its app (secret shown once);
/// turning it off deletes the environment's apps, so their secrets stop working; turning it on
/// again provisions a new app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabling_oauth_provisions_an_app() {
    let port = echo_api().await;
    let sluice = Sluice::start("");
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let agent = |auth: &str| {
        json!({"name": "triage", "environments": [
            {"name": "prod", "url": format!("http://127.0.0.1:{port}"), "auth": auth},
            {"name": "dev", "url": format!("http://127.0.0.1:{port}"), "auth": "none"}
        ]})
        .to_string()
    };
    let (s, v) = api(&admin, &root, "POST", "/v1/agents", Some(&agent("token"))).await;
    assert_eq!(s, 201, "{v}");
    assert!(v.get("provisioned").is_none(), "{v}");
    let grant = |id: &str, secret: &str| {
        client()
            .post(sluice.url("/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&client_id={id}&client_secret={secret}"
            ))
            .send()
    };

    let (s, v) = api(
        &admin,
        &root,
        "PUT",
        "/v1/agents/triage",
        Some(&agent("oauth")),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let provisioned = v["provisioned"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(provisioned.len(), 1, "{v}");
    assert_eq!(provisioned[0]["env"], "prod");
    let id = provisioned[0]["client_id"].as_str().unwrap().to_owned();
    let secret = provisioned[0]["client_secret"].as_str().unwrap().to_owned();
    assert!(id.starts_with("triage-prod-"), "{id}");
    let r = grant(&id, &secret).await.unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        settle(&sluice, "/agents/triage/prod/x", Some(&token), 200).await,
        200
    );
    // Writing the same policy again provisions nothing more.
    let (_, v) = api(
        &admin,
        &root,
        "PUT",
        "/v1/agents/triage",
        Some(&agent("oauth")),
    )
    .await;
    assert!(v.get("provisioned").is_none(), "{v}");

    // Off: the app and its secret are gone.
    let (s, v) = api(
        &admin,
        &root,
        "PUT",
        "/v1/agents/triage",
        Some(&agent("token")),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, apps) = api(&admin, &root, "GET", "/v1/apps", None).await;
    assert!(!apps.to_string().contains(&id), "{apps}");
    assert_eq!(grant(&id, &secret).await.unwrap().status(), 401);
    // On again: a new app.
    let (_, v) = api(
        &admin,
        &root,
        "PUT",
        "/v1/agents/triage",
        Some(&agent("oauth")),
    )
    .await;
    let again = v["provisioned"][0]["client_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"));
    assert_ne!(again, id);
    // Deleting the agent deletes its apps.
    let (s, _) = api(&admin, &root, "DELETE", "/v1/agents/triage", None).await;
    assert_eq!(s, 200);
    let (_, apps) = api(&admin, &root, "GET", "/v1/apps", None).await;
    assert_eq!(apps["items"].as_array().map(Vec::len), Some(0), "{apps}");
}

/// `builtin_issuer`: Ed25519 keys (EdDSA tokens, verified by the gateway and by PyJWT from the
/// JWKS) and the scheduled rotation (a new key when the newest is `rotate_after_seconds` old,
/// the older one kept published); a rotation by command may choose the algorithm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_keys_and_scheduled_rotation() {
    let port = echo_api().await;
    let dynamic = format!(
        r#"builtin_issuer: {{ algorithm: EdDSA, rotate_after_seconds: 2 }}
agents:
  - name: research
    environments:
      - {{ name: prod, url: "http://127.0.0.1:{port}/prod", auth: oauth }}
"#
    );
    let sluice = Sluice::start(&dynamic);
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let meta: Value = http_get(sluice.url("/.well-known/oauth-authorization-server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["id_token_signing_alg_values_supported"],
        json!(["EdDSA"])
    );
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/agents/research/environments/prod/test-token",
        None,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let token = v["access_token"].as_str().unwrap().to_owned();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let first_kid = header.kid.unwrap();
    let jwks: Value = http_get(sluice.url("/oauth2/jwks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            jwks["keys"][0]["kty"].as_str(),
            jwks["keys"][0]["crv"].as_str()
        ),
        (Some("OKP"), Some("Ed25519")),
        "{jwks}"
    );
    let (s, v) = send(
        &sluice,
        reqwest::Method::POST,
        "/agents/research/prod/invoke",
        Some(&token),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let said = third_party_verifies(&sluice, &token, "/agents/research/prod", "EdDSA");
    assert!(said.starts_with("test:"), "{said}");

    // Rotated on schedule: a second Ed25519 key, the first one still published (and the token
    // it signed still taken).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let keys = loop {
        let (s, v) = api(&admin, &root, "GET", "/v1/issuer/keys", None).await;
        assert_eq!(s, 200, "{v}");
        let items = v["items"].as_array().unwrap().clone();
        if items.len() >= 2 {
            break items;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled rotation: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(keys.iter().all(|k| k["alg"] == "EdDSA"), "{keys:?}");
    assert!(
        keys.iter().any(|k| k["kid"] == first_kid.as_str()),
        "{keys:?}"
    );
    let s = settle(&sluice, "/agents/research/prod/invoke", Some(&token), 200).await;
    assert_eq!(s, 200, "the first key's token after the rotation");

    // By command, with another algorithm; a bad one names the field.
    let out = cli(
        &admin,
        &root,
        &["issuer", "rotate", "--algorithm", "ES256"],
        &[],
    );
    assert!(out.contains("ES256"), "{out}");
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/issuer/keys/rotate",
        Some(r#"{"algorithm":"HS256"}"#),
    )
    .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("algorithm")),
        "{v}"
    );
}
