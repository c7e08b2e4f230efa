//! JWTs from a real identity provider (oidc-provider): acceptance, every rejection reason,
//! key rotation with one refetch, and no fetch storm from made-up key ids.

use crate::common::*;
use serde_json::json;
use std::time::Duration;

fn config(mock: &Mock, idp: &Idp) -> String {
    format!(
        r#"providers:
  - {{ name: openai, kind: openai, base_url: "{mock}", keys: [{{ id: a, secret_ref: "env:KEY_A" }}] }}
routes:
  - {{ prefix: /openai, provider: openai, auth: any }}
  - {{ prefix: /admin-only, provider: openai, auth: jwt, scopes: [admin] }}
issuers:
  - {{ name: idp, issuer: "{iss}", audiences: ["urn:sluice:gateway"], principal_claim: client_id }}
"#,
        mock = mock.url(),
        iss = idp.issuer()
    )
}

async fn bearer(sluice: &Sluice, path: &str, token: &str) -> (u16, String) {
    call(
        sluice,
        path,
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
}

#[tokio::test]
async fn idp_tokens_are_accepted_and_bad_ones_refused_with_their_reason() {
    let idp = Idp::start();
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&config(&mock, &idp), &[("KEY_A", "sk-jwt-pool-000000")]);

    for client_id in ["rs-client", "es-client"] {
        let token = idp.token(client_id, "llm.invoke").await;
        assert_eq!(
            bearer(&sluice, "/openai/v1/chat/completions", &token).await,
            (200, String::new()),
            "{client_id}"
        );
        // Cached: the second use costs no signature check.
        assert_eq!(
            bearer(&sluice, "/openai/v1/chat/completions", &token)
                .await
                .0,
            200
        );
    }
    assert!(
        sluice
            .metric("sluice_jwt_cache_total{result=\"hit\"}")
            .await
            >= 2.0
    );
    assert_eq!(
        mock.seen("authorization: Bearer sk-jwt-pool-000000").await,
        4
    );

    // Scopes: the route needs `admin`.
    let llm_only = idp.token("rs-client", "llm.invoke").await;
    assert_eq!(
        bearer(&sluice, "/admin-only/v1/models", &llm_only).await,
        (403, "missing_scope".into())
    );
    let admin = idp.token("rs-client", "admin").await;
    assert_eq!(
        bearer(&sluice, "/admin-only/v1/models", &admin).await.0,
        200
    );

    let now = unix_now();
    let iss = idp.issuer();
    let claims = |extra: serde_json::Value| {
        let mut c = json!({"iss": iss, "aud": "urn:sluice:gateway", "client_id": "minted", "sub": "minted", "exp": now + 300, "iat": now});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let minted = |body: serde_json::Value| {
        let idp = &idp;
        async move { idp.mint(body).await["token"].as_str().unwrap().to_owned() }
    };
    // Within the 30 s leeway is still valid; beyond it is not.
    let just_expired = minted(json!({"claims": claims(json!({"exp": now - 10}))})).await;
    assert_eq!(
        bearer(&sluice, "/openai/v1/models", &just_expired).await.0,
        200
    );
    let cases = [
        (
            json!({"claims": claims(json!({"exp": now - 120}))}),
            "expired",
        ),
        (
            json!({"claims": claims(json!({"nbf": now + 300}))}),
            "not_yet_valid",
        ),
        (
            json!({"claims": claims(json!({"aud": "urn:someone:else"}))}),
            "wrong_audience",
        ),
        (
            json!({"claims": claims(json!({"iss": "http://127.0.0.1:1"}))}),
            "unknown_issuer",
        ),
        (
            json!({"alg": "ES256", "claims": claims(json!({"client_id": null}))}),
            "missing_claim",
        ),
        (
            json!({"hs256WithPublicKey": true, "claims": claims(json!({}))}),
            "unsupported_alg",
        ),
    ];
    for (request, reason) in cases {
        let token = minted(request.clone()).await;
        assert_eq!(
            bearer(&sluice, "/openai/v1/models", &token).await,
            (401, reason.to_owned()),
            "{request}"
        );
    }
    let no_exp = {
        let mut c = claims(json!({}));
        c.as_object_mut().unwrap().remove("exp");
        minted(json!({"claims": c})).await
    };
    assert_eq!(
        bearer(&sluice, "/openai/v1/models", &no_exp).await,
        (401, "missing_claim".into())
    );

    // Tampered signature: flip a character in the middle of the signature.
    let good = idp.token("rs-client", "llm.invoke").await;
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mid = parts[2].len() / 2;
    let flipped = if &parts[2][mid..mid + 1] == "A" {
        "B"
    } else {
        "A"
    };
    parts[2].replace_range(mid..mid + 1, flipped);
    assert_eq!(
        bearer(&sluice, "/openai/v1/models", &parts.join(".")).await,
        (401, "bad_signature".into())
    );

    // alg: none with the same claims and no signature.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims(json!({})).to_string())
    );
    assert_eq!(
        bearer(&sluice, "/openai/v1/models", &none).await,
        (401, "unsupported_alg".into())
    );

    assert!(mock.stats().await["requests"].as_u64().unwrap() >= 6);
    let log = sluice.proc.log_text();
    assert!(
        !log.contains(&good[good.len() - 20..]),
        "a token reached the log"
    );
}

#[tokio::test]
async fn key_rotation_needs_one_refetch_and_unknown_kids_cannot_cause_a_storm() {
    let idp = Idp::start();
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&config(&mock, &idp), &[("KEY_A", "sk-jwt-pool-000000")]);
    let token = idp.token("rs-client", "llm.invoke").await;
    assert_eq!(bearer(&sluice, "/openai/v1/models", &token).await.0, 200);
    let before = idp.jwks_fetches().await;
    assert!(before >= 1);

    // New keys at the IdP: the first token with the new kid triggers exactly one refetch.
    idp.rotate().await;
    let rotated = idp.token("rs-client", "llm.invoke").await;
    assert_eq!(
        bearer(&sluice, "/openai/v1/models", &rotated).await,
        (200, String::new())
    );
    assert_eq!(idp.jwks_fetches().await, before + 1);
    // Tokens signed with the old key stay valid (the IdP still publishes it).
    assert_eq!(bearer(&sluice, "/openai/v1/models", &token).await.0, 200);

    // 1,000 requests with random unknown kids, 50 at a time: at most one more fetch in the
    // debounce window (and here none, since a fetch just happened).
    let now = unix_now();
    let minted = idp
        .mint(json!({"count": 1000, "claims": {"iss": idp.issuer(), "aud": "urn:sluice:gateway", "client_id": "x", "exp": now + 300}}))
        .await;
    let tokens: Vec<String> = minted["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tokens.len(), 1000);
    let fetches_before_burst = idp.jwks_fetches().await;
    let c = client();
    let mut refused = 0;
    for chunk in tokens.chunks(50) {
        let calls = chunk.iter().map(|t| {
            let c = c.clone();
            let url = sluice.url("/openai/v1/models");
            async move { c.post(url).bearer_auth(t).send().await.unwrap() }
        });
        for r in futures_util::future::join_all(calls).await {
            assert_eq!(r.status(), 401);
            assert_eq!(r.headers()["x-sluice-error"], "unknown_kid");
            refused += 1;
        }
    }
    assert_eq!(refused, 1000);
    let during = idp.jwks_fetches().await - fetches_before_burst;
    assert!(during <= 1, "{during} JWKS fetches during the burst");
    eprintln!("JWKS fetches caused by 1,000 unknown kids: {during}");
    tokio::time::sleep(Duration::from_millis(10)).await;
}
