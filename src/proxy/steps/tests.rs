use super::*;
use crate::config::{parse, BuildContext};
use crate::error::AuthFailure;
use std::path::Path;

const NOW: u64 = 1_800_000_000;

fn snap() -> (Snapshot, String) {
    std::env::set_var("SLUICE_STEPS_TEST_KEY", "sk-pool-0123456789");
    let (token, id, digest) = crate::auth::opaque::generate().unwrap();
    let src = format!(
        r#"
providers:
  - name: central
    kind: openai
    base_url: https://api.example.com/base
    keys: [{{ id: k1, secret_ref: "env:SLUICE_STEPS_TEST_KEY" }}]
  - name: claude
    kind: anthropic
    base_url: http://127.0.0.1:7
    credentials: byok
  - name: either
    kind: openai-compatible
    base_url: http://127.0.0.1:7
    credentials: prefer-byok
    keys: [{{ id: k1, secret_ref: "env:SLUICE_STEPS_TEST_KEY" }}]
routes:
  - {{ prefix: /central, provider: central, principal_header: x-forwarded-user }}
  - {{ prefix: /claude, provider: claude }}
  - {{ prefix: /either, provider: either, auth: none }}
tokens:
  - {{ id: {id}, name: ci, sha256: "sha256:{}" }}
"#,
        hex::encode(digest)
    );
    let snap = Snapshot::build(
        &parse(&src).unwrap(),
        &Default::default(),
        Path::new("."),
        &BuildContext::default(),
    )
    .unwrap();
    (snap, token)
}

fn req(path: &str, headers: &[(&'static str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("POST", path.as_bytes(), None).unwrap();
    for (k, v) in headers {
        r.append_header(*k, *v).unwrap();
    }
    r
}

#[tokio::test]
async fn centralized_route_picks_a_pool_key_and_rewrites() {
    let (s, token) = snap();
    let bearer = format!("Bearer {token}");
    let mut r = req(
        "/central/v1/chat/completions?x=1",
        &[
            ("authorization", &bearer),
            ("x-sluice-trace", "1"),
            ("api-key", "sk-client"),
            ("proxy-authorization", "Basic x"),
        ],
    );
    let admitted = admit(&r, &s, Peer::default(), 0, NOW).await.unwrap();
    // The token's name is shown, never its key: an owner-less token is its id.
    assert_eq!(admitted.principal.name, "ci");
    let token_id = admitted.principal.token_id.clone().unwrap();
    assert_eq!(&*admitted.principal.key, format!("token:{token_id}"));
    let route = &s.routes[admitted.route];
    let key = admitted.key.map(|k| &route.provider.keys[k]);
    rewrite(
        &mut r,
        route,
        &route.provider,
        Inject::of(route.provider.credentials, key, None),
        Some(&admitted.principal),
    )
    .unwrap();
    assert_eq!(r.uri.to_string(), "/base/v1/chat/completions?x=1");
    assert_eq!(r.headers["host"], "api.example.com");
    assert_eq!(r.headers["authorization"], "Bearer sk-pool-0123456789");
    assert_eq!(
        r.headers["x-forwarded-user"],
        format!("token:{token_id}").as_str()
    );
    for gone in ["x-sluice-trace", "api-key", "proxy-authorization"] {
        assert!(r.headers.get(gone).is_none(), "{gone} must be stripped");
    }
}

#[tokio::test]
async fn byok_passes_the_client_key_and_requires_one() {
    let (s, token) = snap();
    let mut r = req(
        "/claude/v1/messages",
        &[("x-sluice-token", &token), ("x-api-key", "sk-ant-client")],
    );
    let admitted = admit(&r, &s, Peer::default(), 0, NOW).await.unwrap();
    assert_eq!(admitted.key, None);
    let route = &s.routes[admitted.route];
    rewrite(&mut r, route, &route.provider, Inject::ClientKey, None).unwrap();
    assert_eq!(r.headers["x-api-key"], "sk-ant-client");
    assert!(r.headers.get("x-sluice-token").is_none());
    assert_eq!(r.headers["host"], "127.0.0.1:7");

    let refused = admit(
        &req("/claude/v1/messages", &[("x-api-key", &token)]),
        &s,
        Peer::default(),
        0,
        NOW,
    )
    .await
    .unwrap_err();
    assert_eq!(
        refused,
        Refusal {
            error: GatewayError::MissingProviderKey,
            shape: ErrorShape::Anthropic
        }
    );
}

#[tokio::test]
async fn prefer_byok_falls_back_to_the_pool() {
    let (s, _) = snap();
    let mine = admit(
        &req("/either/v1/models", &[("authorization", "Bearer sk-mine")]),
        &s,
        Peer::default(),
        0,
        NOW,
    )
    .await;
    assert_eq!(mine.unwrap().key, None);
    assert_eq!(
        admit(&req("/either/v1/models", &[]), &s, Peer::default(), 0, NOW)
            .await
            .unwrap()
            .key,
        Some(0)
    );
}

#[tokio::test]
async fn refusals_use_the_route_shape() {
    let (s, token) = snap();
    let bearer = format!("Bearer {token}");
    assert_eq!(
        admit(&req("/nowhere", &[]), &s, Peer::default(), 0, NOW)
            .await
            .unwrap_err()
            .error,
        GatewayError::NoRoute
    );
    let r = admit(
        &req("/central/v1/models", &[("authorization", "Bearer wrong")]),
        &s,
        Peer::default(),
        0,
        NOW,
    )
    .await
    .unwrap_err();
    assert_eq!(
        r,
        Refusal {
            error: GatewayError::InvalidCredential(AuthFailure::Malformed),
            shape: ErrorShape::OpenAi
        }
    );
    s.providers[0].pool.members()[0].health.block(
        crate::balance::KeyState::CoolingDown,
        0,
        std::time::Duration::from_secs(5),
    );
    let r = admit(
        &req("/central/v1/models", &[("authorization", &bearer)]),
        &s,
        Peer::default(),
        10,
        NOW,
    )
    .await
    .unwrap_err();
    assert_eq!(r.error, GatewayError::NoHealthyKey);
}

/// Third review, finding 6: what Tomcat, Jetty and Spring read as `..` (path parameters),
/// long segments and double encoding are refused like `..`; dots inside names are not.
#[test]
fn every_spelling_of_a_dot_segment_is_refused() {
    for path in [
        "/a/../b",
        "/a/..;/b",
        "/a/%2e%2e;/b",
        "/a/..%3B/b",
        "/a/..%3b/b",
        "/a/..;jsessionid=0123456789/b",
        "/a/%252e%252e/b",
        "/a/%25252e%25252e/b",
        "/a/.;x/b",
        "/a/.",
        "/a/%2525252e%2525252e/b",
        "/a/%c0%ae%c0%ae/b",
        "/a/..%00/b",
        "/a/..%20/b",
        "/a/.../b",
    ] {
        assert_eq!(check_path(path), Err(BadRequest::DotSegment), "{path}");
    }
    // Encoded five times or more: refused whatever it hides.
    let deep = format!("/a/%{}2e", "25".repeat(5));
    for path in ["/a/%252f/b", "/a/%255c", "/a%2Fb", deep.as_str()] {
        assert_eq!(
            check_path(path),
            Err(BadRequest::EncodedSeparator),
            "{path}"
        );
    }
    for path in [
        "/v1.2/a..b",
        "/models/gpt-4.1",
        "/a/.x",
        "/a/x...",
        "/a/%41b",
        "/a/..x",
    ] {
        assert_eq!(check_path(path), Ok(()), "{path}");
    }
}

#[test]
fn absolute_form_targets() {
    assert_eq!(
        absolute_target(b"http://api.openai.com/v1/models?x=1"),
        Some(("api.openai.com".into(), "/v1/models?x=1".into()))
    );
    assert_eq!(
        absolute_target(b"http://127.0.0.1:8080"),
        Some(("127.0.0.1:8080".into(), "/".into()))
    );
    assert_eq!(absolute_target(b"https://api.openai.com/"), None);
    assert_eq!(absolute_target(b"/v1/models"), None);
    assert_eq!(absolute_target(b"http://user:pw@host/"), None);
}

#[test]
fn models_named_in_paths() {
    use crate::config::ProviderKind::*;
    let p = model_in_path;
    let gemini = "/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent";
    assert_eq!(p(Gemini, gemini).as_deref(), Some("gemini-2.5-flash"));
    let azure = "/azure/openai/deployments/team-gpt/chat/completions";
    assert_eq!(p(AzureOpenAi, azure).as_deref(), Some("team-gpt"));
    assert_eq!(p(AzureOpenAi, "/azure/openai/v1/chat/completions"), None);
    assert_eq!(p(OpenAi, gemini), None);
    assert_eq!(
        p(Gemini, "/gemini/v1beta/models/").as_deref(),
        Some("(unread)")
    );
    let encoded = "/gemini/v1beta/models/%67emini-2.5-pro:generateContent";
    assert_eq!(p(Gemini, encoded).as_deref(), Some("gemini-2.5-pro"));
    let tuned = "/gemini/v1beta/tunedModels/mine:generateContent";
    assert_eq!(p(Gemini, tuned).as_deref(), Some("(unread)"));
    let long = format!("/gemini/v1beta/models/{}:generateContent", "m".repeat(200));
    assert_eq!(p(Gemini, &long).as_deref(), Some("(unread)"));
}
