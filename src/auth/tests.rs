use super::*;
use crate::config::{parse, BuildContext, Snapshot};
use http::HeaderValue;
use std::path::Path;

struct Fixture {
    snap: Snapshot,
    good: String,
    expired: String,
    revoked: String,
    disabled: String,
}

fn record(token_id: &str, digest: [u8; 32], extra: &str) -> String {
    format!(
        "  - {{ id: {token_id}, sha256: \"sha256:{}\"{extra} }}\n",
        hex::encode(digest)
    )
}

fn fixture() -> Fixture {
    let mut tokens = String::new();
    let mut make = |extra: &str| {
        let (token, id, digest) = opaque::generate().unwrap();
        tokens.push_str(&record(&id, digest, extra));
        token
    };
    let good = make(", name: ci, owner: ci-bot, scopes: [llm, embed]");
    let expired = make(", expires_at: \"2020-01-01T00:00:00Z\"");
    let revoked = make(", revoked_at: \"2020-01-01T00:00:00Z\"");
    let disabled = make(", owner: mallory");
    let src = format!(
        r#"
providers:
  - {{ name: p, kind: openai, base_url: "http://127.0.0.1:1", credentials: byok }}
routes:
  - {{ prefix: /any, provider: p }}
  - {{ prefix: /scoped, provider: p, scopes: [llm, admin] }}
  - {{ prefix: /jwt, provider: p, auth: jwt }}
owners:
  - {{ name: mallory, enabled: false }}
tokens:
{tokens}"#
    );
    let snap = Snapshot::build(
        &parse(&src).unwrap(),
        &Default::default(),
        Path::new("."),
        &BuildContext::default(),
    )
    .unwrap();
    Fixture {
        snap,
        good,
        expired,
        revoked,
        disabled,
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn route<'a>(f: &'a Fixture, prefix: &str) -> &'a crate::config::Access {
    &f.snap
        .routes
        .iter()
        .find(|r| r.prefix == prefix)
        .unwrap()
        .access
}

const NOW: u64 = 1_800_000_000;

#[tokio::test]
async fn opaque_tokens_from_each_header() {
    let f = fixture();
    let t = f.good.as_str();
    let bearer = format!("Bearer {t}");
    let lower = format!("bearer {t}");
    for h in [
        headers(&[("authorization", &bearer)]),
        headers(&[("authorization", &lower)]),
        headers(&[("x-api-key", t)]),
        headers(&[("x-sluice-token", t)]),
        headers(&[("authorization", &bearer), ("x-api-key", t)]),
    ] {
        let a = authenticate((&h, None), route(&f, "/any"), &f.snap, NOW)
            .await
            .unwrap();
        assert_eq!(&*a.principal.key, "owner:ci-bot");
        assert_eq!(a.principal.kind, CredentialKind::Opaque);
        assert_eq!(a.principal.owner_name(), Some("ci-bot"));
        assert!(!a.client_provider_key);
    }
}

#[tokio::test]
async fn sluice_token_header_leaves_the_provider_key_to_the_client() {
    let f = fixture();
    let h = headers(&[
        ("x-sluice-token", &f.good),
        ("authorization", "Bearer sk-client"),
    ]);
    let a = authenticate((&h, None), route(&f, "/any"), &f.snap, NOW)
        .await
        .unwrap();
    assert!(a.client_provider_key);
}

#[tokio::test]
async fn refusals_name_their_reason() {
    let f = fixture();
    let mut wrong_secret = f.good.clone().into_bytes();
    wrong_secret[25] = if wrong_secret[25] == b'a' { b'b' } else { b'a' };
    let wrong_secret = String::from_utf8(wrong_secret).unwrap();
    let (unknown, _, _) = opaque::generate().unwrap();
    let cases: Vec<(HeaderMap, GatewayError)> = vec![
        (headers(&[]), GatewayError::MissingCredential),
        (
            headers(&[("authorization", "Bearer ")]),
            GatewayError::MissingCredential,
        ),
        (
            headers(&[("authorization", "Bearer nope")]),
            GatewayError::InvalidCredential(AuthFailure::Malformed),
        ),
        (
            headers(&[("x-api-key", &wrong_secret)]),
            GatewayError::InvalidCredential(AuthFailure::Malformed),
        ),
        (
            headers(&[("x-api-key", &unknown)]),
            GatewayError::InvalidCredential(AuthFailure::Unknown),
        ),
        (
            headers(&[("x-api-key", &f.expired)]),
            GatewayError::InvalidCredential(AuthFailure::Expired),
        ),
        (
            headers(&[("x-api-key", &f.revoked)]),
            GatewayError::InvalidCredential(AuthFailure::Revoked),
        ),
        (
            headers(&[("x-api-key", &f.disabled)]),
            GatewayError::InvalidCredential(AuthFailure::OwnerDisabled),
        ),
        (
            headers(&[
                ("x-sluice-token", "nope"),
                ("authorization", &format!("Bearer {}", f.good)),
            ]),
            GatewayError::InvalidCredential(AuthFailure::Malformed),
        ),
        (
            headers(&[
                ("authorization", &format!("Bearer {}", f.good)),
                ("x-api-key", &f.expired),
            ]),
            GatewayError::ConflictingCredentials,
        ),
    ];
    for (h, want) in cases {
        assert_eq!(
            authenticate((&h, None), route(&f, "/any"), &f.snap, NOW)
                .await
                .unwrap_err(),
            want,
            "{h:?}"
        );
    }
}

#[tokio::test]
async fn a_typo_in_the_secret_is_caught_by_the_checksum_and_a_wrong_secret_by_the_digest() {
    let f = fixture();
    // Same id, a different (well-formed) secret: found by id, refused by the digest comparison.
    let (other, _, _) = opaque::generate().unwrap();
    let forged = format!(
        "{}{}",
        &f.good[..opaque::PREFIX.len() + opaque::ID_LEN + 1],
        &other[opaque::PREFIX.len() + opaque::ID_LEN + 1..]
    );
    let body = &forged[..forged.len() - opaque::CHECK_LEN];
    // Recompute the checksum so only the secret is wrong.
    let check = opaque::checksum_for_tests(body);
    let forged = format!("{body}{check}");
    let err = authenticate(
        (&headers(&[("x-api-key", &forged)]), None),
        route(&f, "/any"),
        &f.snap,
        NOW,
    )
    .await
    .unwrap_err();
    assert_eq!(err, GatewayError::InvalidCredential(AuthFailure::Unknown));
}

#[tokio::test]
async fn scopes_and_credential_kinds_are_403() {
    let f = fixture();
    let h = headers(&[("x-api-key", &f.good)]);
    let err = authenticate((&h, None), route(&f, "/scoped"), &f.snap, NOW)
        .await
        .unwrap_err();
    assert_eq!(err, GatewayError::Forbidden(Forbidden::MissingScope));
    assert_eq!(err.status(), 403);
    let err = authenticate((&h, None), route(&f, "/jwt"), &f.snap, NOW)
        .await
        .unwrap_err();
    assert_eq!(err, GatewayError::Forbidden(Forbidden::CredentialKind));
}

/// Third review, finding 4: every identity has one rendering, and different identities never
/// share one (names people choose are never part of a token's key).
#[test]
fn identities_render_once_and_apart() {
    let cases = [
        (Identity::Anonymous, "anonymous"),
        (
            Identity::Token {
                id: "a1B2c3D4e5F6".into(),
            },
            "token:a1B2c3D4e5F6",
        ),
        (
            Identity::Owner {
                name: "alice".into(),
                uid: None,
            },
            "owner:alice",
        ),
        (
            Identity::Owner {
                name: "alice".into(),
                uid: Some("Q1w2E3r4T5y6".into()),
            },
            "owner:alice#Q1w2E3r4T5y6",
        ),
        (
            Identity::Jwt {
                issuer: "corp".into(),
                subject: "a:b".into(),
            },
            "jwt:corp:a:b",
        ),
        (
            Identity::App {
                client_id: "research-dev-1".into(),
                subject: "research-dev-1".into(),
            },
            "app:research-dev-1",
        ),
        (
            Identity::App {
                client_id: "sluice-test".into(),
                subject: "owner:alice".into(),
            },
            "app:sluice-test:owner:alice",
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    for (identity, rendering) in &cases {
        assert_eq!(identity.render(), *rendering);
        assert!(seen.insert(identity.render()), "{rendering} twice");
    }
    // Names that could forge another kind's rendering are not names.
    for bad in ["a:b", "alice#1", "", "a b", "x\n"] {
        assert!(!valid_principal_name(bad), "{bad:?}");
    }
    for good in ["alice", "ci-bot", "team.a", "a@example.com", "A_1+x"] {
        assert!(valid_principal_name(good), "{good}");
    }
}

#[tokio::test]
async fn two_tokens_with_one_name_are_two_principals() {
    let (t1, id1, d1) = opaque::generate().unwrap();
    let (t2, id2, d2) = opaque::generate().unwrap();
    let src = format!(
        "providers:\n  - {{ name: p, kind: openai, base_url: \"http://127.0.0.1:1\", credentials: byok }}\nroutes:\n  - {{ prefix: /any, provider: p }}\ntokens:\n{}{}",
        record(&id1, d1, ", name: laptop"),
        record(&id2, d2, ", name: laptop")
    );
    let snap = Snapshot::build(
        &parse(&src).unwrap(),
        &Default::default(),
        Path::new("."),
        &BuildContext::default(),
    )
    .unwrap();
    let access = &snap.routes[0].access;
    let p1 = verify(&t1, access, &snap, NOW).await.unwrap();
    let p2 = verify(&t2, access, &snap, NOW).await.unwrap();
    assert_ne!(p1.key, p2.key);
    assert_eq!((p1.name.as_str(), p2.name.as_str()), ("laptop", "laptop"));
    assert_eq!(&*p1.key, format!("token:{id1}"));
}
