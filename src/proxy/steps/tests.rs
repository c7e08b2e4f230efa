use super::*;
use crate::config::{parse, BuildContext};
use std::path::Path;

fn snap() -> Snapshot {
    std::env::set_var("SLUICE_STEPS_TEST_KEY", "sk-pool-0123456789");
    let src = r#"
providers:
  - name: central
    kind: openai
    base_url: https://api.example.com/base
    keys: [{ id: k1, secret_ref: "env:SLUICE_STEPS_TEST_KEY" }]
  - name: claude
    kind: anthropic
    base_url: http://127.0.0.1:7
    credentials: byok
  - name: either
    kind: openai-compatible
    base_url: http://127.0.0.1:7
    credentials: prefer-byok
    keys: [{ id: k1, secret_ref: "env:SLUICE_STEPS_TEST_KEY" }]
routes:
  - { prefix: /central, provider: central }
  - { prefix: /claude, provider: claude }
  - { prefix: /either, provider: either, auth: none }
tokens:
  - { id: ci, sha256: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }
"#;
    Snapshot::build(
        &parse(src).unwrap(),
        Path::new("."),
        &BuildContext::default(),
    )
    .unwrap()
}

fn req(path: &str, headers: &[(&'static str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("POST", path.as_bytes(), None).unwrap();
    for (k, v) in headers {
        r.append_header(*k, *v).unwrap();
    }
    r
}

#[test]
fn centralized_route_picks_a_pool_key_and_rewrites() {
    let s = snap();
    let mut r = req(
        "/central/v1/chat/completions?x=1",
        &[
            ("authorization", "Bearer test"),
            ("x-sluice-trace", "1"),
            ("api-key", "sk-client"),
            ("proxy-authorization", "Basic x"),
        ],
    );
    let admitted = admit(&r, &s, 0).unwrap();
    assert_eq!(admitted.principal.id, "ci");
    let route = &s.routes[admitted.route];
    let key = admitted.key.map(|k| &route.provider.keys[k]);
    rewrite(&mut r, &route.prefix, &route.provider, key).unwrap();
    assert_eq!(r.uri.to_string(), "/base/v1/chat/completions?x=1");
    assert_eq!(r.headers["host"], "api.example.com");
    assert_eq!(r.headers["authorization"], "Bearer sk-pool-0123456789");
    for gone in ["x-sluice-trace", "api-key", "proxy-authorization"] {
        assert!(r.headers.get(gone).is_none(), "{gone} must be stripped");
    }
}

#[test]
fn byok_passes_the_client_key_and_requires_one() {
    let s = snap();
    let mut r = req(
        "/claude/v1/messages",
        &[("x-sluice-token", "test"), ("x-api-key", "sk-ant-client")],
    );
    let admitted = admit(&r, &s, 0).unwrap();
    assert_eq!(admitted.key, None);
    let route = &s.routes[admitted.route];
    rewrite(&mut r, &route.prefix, &route.provider, None).unwrap();
    assert_eq!(r.headers["x-api-key"], "sk-ant-client");
    assert!(r.headers.get("x-sluice-token").is_none());
    assert_eq!(r.headers["host"], "127.0.0.1:7");

    let refused = admit(&req("/claude/v1/messages", &[("x-api-key", "test")]), &s, 0).unwrap_err();
    assert_eq!(
        refused,
        Refusal {
            error: GatewayError::MissingProviderKey,
            shape: ErrorShape::Anthropic
        }
    );
}

#[test]
fn prefer_byok_falls_back_to_the_pool() {
    let s = snap();
    assert_eq!(
        admit(
            &req("/either/v1/models", &[("authorization", "Bearer sk-mine")]),
            &s,
            0
        )
        .unwrap()
        .key,
        None
    );
    assert_eq!(
        admit(&req("/either/v1/models", &[]), &s, 0).unwrap().key,
        Some(0)
    );
}

#[test]
fn refusals_use_the_route_shape() {
    let s = snap();
    assert_eq!(
        admit(&req("/nowhere", &[]), &s, 0).unwrap_err().error,
        GatewayError::NoRoute
    );
    let r = admit(
        &req("/central/v1/models", &[("authorization", "Bearer wrong")]),
        &s,
        0,
    )
    .unwrap_err();
    assert_eq!(
        r,
        Refusal {
            error: GatewayError::InvalidCredential,
            shape: ErrorShape::OpenAi
        }
    );
    s.providers[0].pool.members()[0].health.block(
        crate::balance::KeyState::CoolingDown,
        0,
        std::time::Duration::from_secs(5),
    );
    let r = admit(
        &req("/central/v1/models", &[("authorization", "Bearer test")]),
        &s,
        10,
    )
    .unwrap_err();
    assert_eq!(r.error, GatewayError::NoHealthyKey);
}
