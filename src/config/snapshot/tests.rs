use super::*;
use crate::config::{locate::Lines, parse};
use std::time::Duration;

fn build(src: &str) -> Result<Snapshot, Vec<ConfigError>> {
    let config = parse(src).map_err(|e| vec![e])?;
    Snapshot::build(
        &config,
        &Default::default(),
        Path::new("."),
        &BuildContext::default(),
    )
}

const GOOD: &str = r#"
providers:
  - name: openai
    kind: openai
    base_url: https://api.openai.com/v1/
    keys:
      - { id: a, secret_ref: "env:SLUICE_SNAPSHOT_TEST_KEY", weight: 3 }
      - { id: b, secret_ref: "env:SLUICE_SNAPSHOT_TEST_KEY", weight: 0 }
  - name: claude
    kind: anthropic
    base_url: http://127.0.0.1:9/
    credentials: byok
routes:
  - { prefix: /openai, provider: openai }
  - { prefix: /openai/special, provider: claude, auth: none }
tokens:
  - { id: ci0123456789, sha256: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }
"#;

fn set_key() {
    std::env::set_var("SLUICE_SNAPSHOT_TEST_KEY", "sk-test-0123456789");
}

#[test]
fn builds_precomputed_snapshot() {
    set_key();
    let snap = build(GOOD).unwrap();
    let openai = &snap.providers[0];
    assert_eq!(openai.upstream.base_path, "/v1");
    assert_eq!(openai.upstream.authority, "api.openai.com");
    assert!(openai.upstream.tls);
    assert_eq!(openai.keys[0].header_value, "Bearer sk-test-0123456789");
    assert!(openai.keys[0].header_value.is_sensitive());
    assert_eq!(snap.providers[1].upstream.authority, "127.0.0.1:9");
    assert_eq!(snap.providers[1].key_header(), "x-api-key");
    // Longest prefix wins, on segment boundaries only.
    assert_eq!(
        snap.route("/openai/special/x")
            .map(|(_, r)| r.provider.name.as_str()),
        Some("claude")
    );
    assert_eq!(
        snap.route("/openai/v1/chat")
            .map(|(_, r)| r.provider.name.as_str()),
        Some("openai")
    );
    assert_eq!(
        snap.route("/openai").map(|(_, r)| r.provider.name.as_str()),
        Some("openai")
    );
    assert!(snap.route("/openaix/v1").is_none());
    assert_eq!(snap.tokens["ci0123456789"].digest[0], 0x9f);
}

#[test]
fn reports_every_error_with_its_field_and_line() {
    let src = r#"listeners:
  proxy: nonsense
providers:
  - name: Bad_Name
    kind: openai
    base_url: ftp://x
    keys:
      - { id: a, secret_ref: "env:SLUICE_SURELY_UNSET_123" }
      - { id: a, secret_ref: "env:SLUICE_SURELY_UNSET_123" }
routes:
  - { prefix: openai/, provider: nobody }
  - { prefix: /bad, provider: Bad_Name }
tokens:
  - { id: t00000000000, sha256: "sk-oops-this-is-a-token" }
issuers:
  - { name: idp, issuer: "https://idp.example", audiences: [], algorithms: [RS256, HS256] }
"#;
    let errors = build(src).unwrap_err();
    let lines = Lines::of(src);
    let located: Vec<(String, Option<usize>)> = errors
        .iter()
        .map(|e| (e.path.clone(), lines.line(&e.path)))
        .collect();
    let expect = [
        ("listeners.proxy", 2),
        ("providers[0].name", 4),
        ("providers[0].base_url", 6),
        ("providers[0].keys[0].secret_ref", 8),
        ("providers[0].keys[1].id", 9),
        ("routes[0].prefix", 11),
        ("routes[0].provider", 11),
        ("tokens[0].sha256", 14),
        ("issuers[0].audiences", 16),
        ("issuers[0].algorithms[1]", 16),
    ];
    for (path, line) in expect {
        assert!(
            located.contains(&(path.to_owned(), Some(line))),
            "missing {path}:{line} in {located:?}"
        );
    }
    // The route to the broken provider is not reported twice; a token value is never echoed.
    assert!(
        !errors.iter().any(|e| e.path == "routes[1].provider"),
        "{errors:?}"
    );
    assert!(
        !errors.iter().any(|e| e.message.contains("sk-oops")),
        "{errors:?}"
    );
}

#[test]
fn unknown_fields_and_kinds_are_syntax_errors_with_lines() {
    let e =
        parse("providers:\n  - name: a\n    kind: openai\n    base_url: http://x\n    wieght: 2\n")
            .unwrap_err();
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("wieght"), "{e}");
    let e = parse("providers:\n  - name: a\n    kind: gpt\n    base_url: http://x\n").unwrap_err();
    assert!(e.message.contains("gpt"), "{e}");
}

#[test]
fn optional_keys_that_do_not_resolve_are_left_out_with_a_warning() {
    let src = r#"
providers:
  - name: p
    kind: openai
    base_url: http://127.0.0.1:1
    credentials: prefer-byok
    keys: [{ id: a, secret_ref: "env:SLUICE_SURELY_UNSET_456", optional: true }]
"#;
    let snap = build(src).unwrap();
    assert!(snap.providers[0].keys.is_empty());
    assert!(!snap.providers[0].pool.is_serving());
    assert!(snap.warnings[0].contains("SLUICE_SURELY_UNSET_456"));
}

#[test]
fn centralized_provider_without_keys_is_an_error() {
    let errors =
        build("providers:\n  - { name: p, kind: openai, base_url: 'http://h' }\n").unwrap_err();
    assert_eq!(errors[0].path, "providers[0].keys");
}

#[test]
fn health_survives_rebuilds_unless_the_secret_changes() {
    set_key();
    let ctx = BuildContext::default();
    let config = parse(GOOD).unwrap();
    let first = Snapshot::build(&config, &Default::default(), Path::new("."), &ctx).unwrap();
    first.providers[0].pool.members()[0].health.block(
        crate::balance::KeyState::Quarantined,
        0,
        Duration::from_secs(60),
    );
    let second = Snapshot::build(&config, &Default::default(), Path::new("."), &ctx).unwrap();
    assert!(!second.providers[0].pool.members()[0].health.is_available(1));
    std::env::set_var("SLUICE_SNAPSHOT_TEST_KEY2", "sk-rotated-0000000");
    let rotated = parse(
        &GOOD
            .replace("key\", weight: 3", "key2\", weight: 3")
            .replace(
                "SLUICE_SNAPSHOT_TEST_KEY\", weight: 3",
                "SLUICE_SNAPSHOT_TEST_KEY2\", weight: 3",
            ),
    )
    .unwrap();
    let third = Snapshot::build(&rotated, &Default::default(), Path::new("."), &ctx).unwrap();
    assert!(third.providers[0].pool.members()[0].health.is_available(1));
}

#[test]
fn design_names_parse() {
    // DESIGN.md's config shape writes `auth: static` for opaque-token routes.
    let config =
        parse("routes:\n  - { prefix: /openai, provider: openai, auth: static }\n").unwrap();
    assert_eq!(config.routes[0].auth, wire::AuthPolicy::Token);
}

#[test]
fn oauth_credentials_public_base_url_and_reserved_prefixes_are_checked() {
    let base = "providers:\n  - { name: tools, kind: openai-compatible, base_url: \"https://t.example\", credentials: oauth, oauth_provider: corp }\nroutes:\n  - { prefix: /tools, provider: tools, auth: none }\n";
    let snap = build(base).unwrap();
    assert_eq!(snap.providers[0].oauth_provider.as_deref(), Some("corp"));
    assert!(build(&base.replace("prefix: /tools", "prefix: /mcptools")).is_ok());
    assert!(
        snap.warnings
            .iter()
            .any(|w| w.contains("`corp`, which does not exist")),
        "{:?}",
        snap.warnings
    );
    for (change, path) in [
        (
            ("oauth_provider: corp", "keys: []"),
            "providers[0].oauth_provider",
        ),
        (("credentials: oauth, ", ""), "providers[0].oauth_provider"),
        (
            ("oauth_provider: corp", "oauth_provider: Corp"),
            "providers[0].oauth_provider",
        ),
        (
            ("prefix: /tools", "prefix: /oauth/v1/tools"),
            "routes[0].prefix",
        ),
        (
            ("prefix: /tools", "prefix: /.well-known"),
            "routes[0].prefix",
        ),
        (("prefix: /tools", "prefix: /mcp/"), "routes[0].prefix"),
        (("prefix: /tools", "prefix: /mcp/tools"), "routes[0].prefix"),
    ] {
        let src = base.replace(change.0, change.1);
        let errors = build(&src).err().unwrap_or_default();
        assert!(errors.iter().any(|e| e.path == path), "{src}: {errors:?}");
    }
    for bad in ["gateway.example.com", "ftp://x", "https://x/?q=1"] {
        let errors = build(&format!("public_base_url: \"{bad}\"\n{base}"))
            .err()
            .unwrap_or_default();
        assert!(errors.iter().any(|e| e.path == "public_base_url"), "{bad}");
    }
    let config = parse(&format!(
        "public_base_url: \"https://gw.example.com/sluice/\"\n{base}"
    ))
    .unwrap();
    assert_eq!(config.public_base_url(), "https://gw.example.com/sluice");
    // Unset, it is the proxy listener's address, https when that listener has TLS.
    let plain = parse(&format!("listeners:\n  proxy: 10.1.2.3:8443\n{base}")).unwrap();
    assert_eq!(plain.public_base_url(), "http://10.1.2.3:8443");
    let tls = parse(&format!(
        "listeners:\n  proxy: 10.1.2.3:8443\n  proxy_tls: {{ cert: c.pem, key: k.pem }}\n{base}"
    ))
    .unwrap();
    assert_eq!(tls.public_base_url(), "https://10.1.2.3:8443");
}

#[test]
fn http_apis_take_credentials_none_without_keys() {
    let base = "providers:\n  - { name: agent, kind: http, base_url: \"http://127.0.0.1:9/api\", credentials: none }\nroutes:\n  - { prefix: /agents/agent, provider: agent }\n";
    let snap = build(base).unwrap();
    assert_eq!(snap.providers[0].kind, crate::config::ProviderKind::Http);
    let with_key = base.replace(
        "credentials: none",
        "credentials: none, keys: [{ id: a, secret_ref: \"env:HOME\" }]",
    );
    let errors = build(&with_key).err().unwrap_or_default();
    assert!(
        errors.iter().any(|e| e.path == "providers[0].keys"),
        "{errors:?}"
    );
    let errors = build(&base.replace(", credentials: none", ""))
        .err()
        .unwrap_or_default();
    assert!(
        errors
            .iter()
            .any(|e| e.path == "providers[0].keys" && e.message.contains("credentials: none")),
        "{errors:?}"
    );
}

#[test]
fn a_fallback_chain_is_bounded_field_by_field() {
    set_key();
    let src = r#"
providers:
  - name: openai
    kind: openai
    base_url: https://api.openai.com
    keys: [{ id: a, secret_ref: "env:SLUICE_SNAPSHOT_TEST_KEY" }]
routes:
  - prefix: /openai
    provider: openai
    fallback: { to: [], timeout_seconds: 0, max_body_bytes: 1000000000 }
"#;
    let errors = build(src).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for field in ["to", "timeout_seconds", "max_body_bytes"] {
        let path = format!("routes[0].fallback.{field}");
        assert!(
            fields.contains(&path.as_str()),
            "{path} missing in {errors:?}"
        );
    }
}
