use super::*;
use crate::config::{parse, BuildContext};
use http::HeaderValue;
use std::path::Path;

fn snap() -> Snapshot {
    // sha256("test")
    let src = r#"
tokens:
  - { id: ci, owner: ci-bot, sha256: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }
"#;
    Snapshot::build(
        &parse(src).unwrap(),
        Path::new("."),
        &BuildContext::default(),
    )
    .unwrap()
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn static_tokens_from_each_header() {
    let s = snap();
    for h in [
        headers(&[("authorization", "Bearer test")]),
        headers(&[("authorization", "bearer test")]),
        headers(&[("x-api-key", "test")]),
        headers(&[("x-sluice-token", "test")]),
        headers(&[("authorization", "Bearer test"), ("x-api-key", "test")]),
    ] {
        let a = authenticate(&h, AuthPolicy::Static, &s).unwrap();
        assert_eq!(a.principal.id, "ci");
        assert_eq!(a.principal.owner.as_deref(), Some("ci-bot"));
        assert!(!a.client_provider_key);
    }
}

#[test]
fn sluice_token_header_leaves_the_provider_key_to_the_client() {
    let h = headers(&[
        ("x-sluice-token", "test"),
        ("authorization", "Bearer sk-client"),
    ]);
    let a = authenticate(&h, AuthPolicy::Static, &snap()).unwrap();
    assert!(a.client_provider_key);
}

#[test]
fn refusals() {
    let s = snap();
    let cases = [
        (headers(&[]), GatewayError::MissingCredential),
        (
            headers(&[("authorization", "Bearer ")]),
            GatewayError::MissingCredential,
        ),
        (
            headers(&[("authorization", "Bearer nope")]),
            GatewayError::InvalidCredential,
        ),
        (
            headers(&[("x-sluice-token", "nope"), ("authorization", "Bearer test")]),
            GatewayError::InvalidCredential,
        ),
        (
            headers(&[("authorization", "Bearer test"), ("x-api-key", "other")]),
            GatewayError::ConflictingCredentials,
        ),
    ];
    for (h, want) in cases {
        assert_eq!(
            authenticate(&h, AuthPolicy::Static, &s).unwrap_err(),
            want,
            "{h:?}"
        );
    }
}

#[test]
fn no_auth_routes_note_a_client_key() {
    let s = snap();
    let a = authenticate(&headers(&[("x-api-key", "sk-ant")]), AuthPolicy::None, &s).unwrap();
    assert_eq!(a.principal.id, "anonymous");
    assert!(a.client_provider_key);
    let a = authenticate(&headers(&[]), AuthPolicy::None, &s).unwrap();
    assert!(!a.client_provider_key);
}
