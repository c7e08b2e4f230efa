//! `kind: azure-openai`: Azure OpenAI deployments behind Sluice, through the openai SDK's
//! `AzureOpenAI` client: the Sluice token in `api-key`, a pool key injected there, the
//! deployment recorded as the model, keys judged by Azure's own 401.

use crate::common::*;
use crate::sdk::run_with_env;
use crate::security::quarantined;

const KEYS: [(&str, &str); 2] = [
    ("KEY_Z1", "az-pool-one-000000"),
    ("KEY_Z2", "az-pool-two-000000"),
];

fn config(mock: &Mock) -> String {
    two_key_config(mock, "azure-openai", "azure", 'z')
}

#[tokio::test]
async fn the_azure_openai_client_through_sluice() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&config(&mock), &KEYS);
    let endpoint = sluice.url("/azure");
    let out = run_with_env("azure_client.py", &[&endpoint, &tok().token], &[]);
    assert_eq!(
        out["chat"], "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ",
        "{out}"
    );
    assert_eq!(
        out["stream"], "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ",
        "{out}"
    );
    assert_eq!(out["stream_usage"], 8);
    let stats = mock.stats().await;
    let credentials = stats["credentials"].to_string();
    assert!(!credentials.contains(&tok().token), "{credentials}");
    assert!(credentials.contains("api-key: az-pool-"), "{credentials}");
    // The deployment's path reached Azure with its api-version.
    assert!(
        stats["paths"]
            .to_string()
            .contains("/openai/deployments/team-gpt/chat/completions"),
        "{stats}"
    );
    let record = wait_audit(&sluice, |r| r["provider"] == "azure" && r["stream"] == true)
        .await
        .unwrap();
    assert_eq!(record["model"], "team-gpt", "{record}");
    assert_eq!(record["usage"]["output"], 8, "{record}");

    let bad = run_with_env(
        "azure_client.py",
        &[&endpoint, "not-a-valid-token", "--expect-auth-error"],
        &[],
    );
    assert_eq!(bad["status"], 401, "{bad}");

    // Azure's own "invalid subscription key" 401 benches that key; the other serves.
    let path = "/azure/openai/deployments/team-gpt/chat/completions?api-version=2024-10-21";
    let send = |extra: &'static [(&'static str, &'static str)]| {
        let mut req = client()
            .post(sluice.url(path))
            .header("api-key", &tok().token)
            .header("content-type", "application/json")
            .body(r#"{"messages":[{"role":"user","content":"hi"}]}"#);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let invalid = &[("x-mock-status", "401"), ("x-mock-error-code", "401")];
    assert_eq!(send(invalid).await, 401);
    let benched = [
        quarantined(&sluice, "azure", "z1").await,
        quarantined(&sluice, "azure", "z2").await,
    ];
    assert_eq!(benched.iter().filter(|q| **q).count(), 1, "{benched:?}");
    assert_eq!(send(&[]).await, 200);
}

/// Azure's other key spellings (`Ocp-Apim-Subscription-Key`, `?subscription-key=`) never
/// reach it beside the pool key. (Found by an outside attack.)
#[tokio::test]
async fn azures_other_key_spellings_are_stripped() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&config(&mock), &KEYS);
    let path = "/azure/openai/deployments/team-gpt/chat/completions?api-version=2024-10-21&subscription-key=client-junk";
    let status = client()
        .post(sluice.url(path))
        .header("api-key", &tok().token)
        .header("ocp-apim-subscription-key", "client-junk")
        .header("content-type", "application/json")
        .body(r#"{"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let stats = mock.stats().await;
    assert!(
        !stats["credentials"].to_string().contains("client-junk"),
        "{stats}"
    );
    assert!(
        stats["credentials"]
            .to_string()
            .contains("api-key: az-pool-"),
        "{stats}"
    );
}
