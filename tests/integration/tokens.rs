//! Opaque tokens end to end: revocation and expiry by config reload, route scopes, owners, BYOK.

use crate::common::*;

fn config(mock: &Mock, tokens: &[&str], owners: &str) -> String {
    let tokens: String = tokens.iter().map(|t| format!("  - {t}\n")).collect();
    format!(
        r#"providers:
  - {{ name: openai, kind: openai, base_url: "{url}", keys: [{{ id: a, secret_ref: "env:KEY_A" }}] }}
  - {{ name: claude, kind: anthropic, base_url: "{url}", credentials: byok }}
routes:
  - {{ prefix: /openai, provider: openai, auth: token, scopes: [llm] }}
  - {{ prefix: /embeddings, provider: openai, auth: token, scopes: [embed] }}
  - {{ prefix: /anthropic, provider: claude, auth: token }}
owners:
{owners}tokens:
{tokens}"#,
        url = mock.url()
    )
}

#[tokio::test]
async fn revocation_expiry_scopes_owners_and_byok() {
    let mock = Mock::start(&[]);
    let alice = opaque_token(", name: alice, owner: alice, scopes: [llm]");
    let bob = opaque_token(", name: bob, owner: bob, scopes: [llm, embed]");
    let owners = "  - { name: alice }\n  - { name: bob }\n";
    let sluice = Sluice::start_with_env(
        &config(&mock, &[&alice.record, &bob.record], owners),
        &[("KEY_A", "sk-tok-pool-000000")],
    );
    let a = format!("Bearer {}", alice.token);
    let b = format!("Bearer {}", bob.token);
    assert_eq!(
        call(
            &sluice,
            "/openai/v1/chat/completions",
            &[("authorization", &a)]
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &sluice,
            "/embeddings/v1/embeddings",
            &[("authorization", &a)]
        )
        .await,
        (403, "missing_scope".into())
    );
    assert_eq!(
        call(&sluice, "/embeddings/v1/models", &[("authorization", &b)])
            .await
            .0,
        200
    );

    // BYOK: Sluice token in X-Sluice-Token, the client's own Anthropic key passes through.
    let byok = [
        ("x-sluice-token", alice.token.as_str()),
        ("x-api-key", "sk-ant-client-own-key"),
    ];
    assert_eq!(call(&sluice, "/anthropic/v1/messages", &byok).await.0, 200);
    assert_eq!(mock.seen("x-api-key: sk-ant-client-own-key").await, 1);
    assert_eq!(
        call(
            &sluice,
            "/anthropic/v1/messages",
            &[("x-api-key", &alice.token)]
        )
        .await,
        (401, "missing_provider_key".into())
    );

    // Revoke alice, expire bob, disable nobody: effective on the next request after the swap.
    let revoked = alice
        .record
        .replace(" }", ", revoked_at: \"2020-01-01T00:00:00Z\" }");
    let expired = bob
        .record
        .replace(" }", ", expires_at: \"2020-01-01T00:00:00Z\" }");
    sluice.rewrite_config(&config(&mock, &[&revoked, &expired], owners));
    sluice.wait_revision(2).await;
    assert_eq!(
        call(
            &sluice,
            "/openai/v1/chat/completions",
            &[("authorization", &a)]
        )
        .await,
        (401, "revoked".into())
    );
    assert_eq!(
        call(
            &sluice,
            "/openai/v1/chat/completions",
            &[("authorization", &b)]
        )
        .await,
        (401, "expired".into())
    );

    // A disabled owner's tokens are refused too.
    let carol = opaque_token(", owner: carol, scopes: [llm]");
    sluice.rewrite_config(&config(
        &mock,
        &[&carol.record],
        "  - { name: carol, enabled: false }\n",
    ));
    sluice.wait_revision(3).await;
    let c = format!("Bearer {}", carol.token);
    assert_eq!(
        call(
            &sluice,
            "/openai/v1/chat/completions",
            &[("authorization", &c)]
        )
        .await,
        (401, "owner_disabled".into())
    );

    // A mistyped token is refused by its checksum.
    let mut typo = carol.token.clone();
    typo.replace_range(20..21, if &typo[20..21] == "x" { "y" } else { "x" });
    assert_eq!(
        call(&sluice, "/openai/v1/models", &[("x-api-key", &typo)]).await,
        (401, "malformed".into())
    );

    // Last use is recorded off the hot path (flushed on shutdown at the latest).
    sluice.proc.signal("TERM");
    let usage = sluice.dir.path().join("data/token-last-used.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !usage.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&usage).unwrap()).unwrap();
    let alice_id = &alice.token[7..19];
    assert!(
        recorded[alice_id].as_u64().unwrap() >= unix_now() - 60,
        "{recorded}"
    );
}
