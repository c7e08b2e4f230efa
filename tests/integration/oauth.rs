//! Upstream OAuth providers as a resource: the admin API (with discovery against a real
//! authorization server), the CLI with presets, the config file, roles, and bad input.

use crate::common::*;
use serde_json::{json, Value};

async fn revision(admin: &str) -> Value {
    readyz(admin).await["control_revision"].clone()
}

#[tokio::test]
async fn oauth_providers_through_the_api_the_cli_and_the_file() {
    let idp = Idp::start();
    let dynamic = "oauth_providers:\n  - { name: corp-idp, token_endpoint: \"https://login.example.com/token\", authorization_endpoint: \"https://login.example.com/auth\", client_id: sluice, token_endpoint_auth_method: none }\n";
    let sluice = Sluice::start(dynamic);
    let admin = sluice.admin_url();
    let root = sluice.admin_token();
    for (name, scopes) in [
        ("RAMP_CLIENT_SECRET", json!(["mcp"])),
        ("GW_ONLY", json!(["gateway"])),
    ] {
        let body = json!({"name": name, "value": "client-secret-value", "scopes": scopes});
        let (s, v) = api(
            &admin,
            &root,
            "POST",
            "/v1/secrets",
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }

    // From flags, as the operators type them.
    let out = cli(
        &admin,
        &root,
        &[
            "oauth",
            "create",
            "--name",
            "ramp",
            "--display-name",
            "Ramp",
            "--auth-endpoint",
            "http://127.0.0.1:9/authorize",
            "--token-endpoint",
            "http://127.0.0.1:9/token",
            "--client-id",
            "ramp-client",
            "--client-secret-ref",
            "RAMP_CLIENT_SECRET",
            "--scopes",
            "a,b",
            "--grant-types",
            "authorization_code",
            "--auth-method",
            "client_secret_basic",
            "--pkce",
            "--enabled",
            "-o",
            "json",
        ],
        &[],
    );
    assert!(out.contains("revision"), "{out}");
    let (s, ramp) = api(&admin, &root, "GET", "/v1/oauth-providers/ramp", None).await;
    assert_eq!(s, 200, "{ramp}");
    assert_eq!(ramp["display_name"], "Ramp");
    assert_eq!(ramp["scopes"], json!(["a", "b"]));
    assert_eq!(ramp["require_pkce"], true);
    assert!(ramp["created_at"].is_string(), "{ramp}");

    // Fields not given are kept.
    cli(
        &admin,
        &root,
        &["oauth", "update", "ramp", "--scopes", "a,b,c"],
        &[],
    );
    let (_, ramp) = api(&admin, &root, "GET", "/v1/oauth-providers/ramp", None).await;
    assert_eq!(
        (ramp["scopes"].clone(), ramp["client_id"].clone()),
        (json!(["a", "b", "c"]), json!("ramp-client"))
    );

    // A preset fills the endpoints and scopes; a flag wins over it.
    cli(
        &admin,
        &root,
        &[
            "oauth",
            "create",
            "--name",
            "gh",
            "--preset",
            "github",
            "--client-id",
            "x",
            "--client-secret-ref",
            "RAMP_CLIENT_SECRET",
            "--scopes",
            "repo",
        ],
        &[],
    );
    let (_, gh) = api(&admin, &root, "GET", "/v1/oauth-providers/gh", None).await;
    assert_eq!(
        gh["token_endpoint"],
        "https://github.com/login/oauth/access_token"
    );
    assert_eq!(gh["display_name"], "GitHub");
    assert_eq!(gh["scopes"], json!(["repo"]));

    // Discovery from the real authorization server fills what was not given.
    let body = json!({"name": "idp", "issuer": idp.issuer(), "client_id": "c", "token_endpoint_auth_method": "none"});
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/oauth-providers",
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        v["item"]["token_endpoint"],
        format!("{}/token", idp.issuer()),
        "{v}"
    );
    assert_eq!(
        v["item"]["authorization_endpoint"],
        format!("{}/auth", idp.issuer()),
        "{v}"
    );
    assert_eq!(
        v["item"]["revocation_endpoint"],
        format!("{}/token/revocation", idp.issuer()),
        "{v}"
    );

    // The file's provider is listed, read-only, beside the store's.
    let listed = cli(&admin, &root, &["oauth", "list", "-o", "json"], &[]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let sources: Vec<(String, String)> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_owned(),
                i["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        sources.contains(&("corp-idp".into(), "file".into())),
        "{sources:?}"
    );
    assert!(
        sources.contains(&("ramp".into(), "store".into())),
        "{sources:?}"
    );

    // Bad input: the field is named and nothing is written.
    let before = revision(&admin).await;
    let base = json!({"name": "bad", "authorization_endpoint": "https://a.example/auth", "token_endpoint": "https://a.example/token", "client_id": "c", "client_secret_ref": "RAMP_CLIENT_SECRET"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b.to_string()
    };
    let cases = [
        (
            with("token_endpoint", json!("http://a.example/token")),
            422,
            "store:oauth_provider/bad.token_endpoint",
        ),
        (
            with("grant_types", json!(["implicit"])),
            400,
            "grant_types[0]",
        ),
        (
            with("token_endpoint_auth_method", json!("none")),
            422,
            "store:oauth_provider/bad.client_secret_ref",
        ),
        (
            with("client_secret_ref", json!("NO_SUCH_SECRET")),
            422,
            "client_secret_ref",
        ),
        (
            with("client_secret_ref", json!("GW_ONLY")),
            422,
            "client_secret_ref",
        ),
        (with("name", json!("Bad")), 400, "name"),
        (
            with("scopes", json!(["a b"])),
            422,
            "store:oauth_provider/bad.scopes[0]",
        ),
        (
            with("issuer", json!("http://127.0.0.1:9"))
                .replace("\"authorization_endpoint\":\"https://a.example/auth\",", ""),
            422,
            "issuer",
        ),
        (with("bogus", json!(1)), 400, "bogus"),
    ];
    for (body, want, field) in cases {
        let (s, v) = api(&admin, &root, "POST", "/v1/oauth-providers", Some(&body)).await;
        assert_eq!(
            (s, v["error"]["field"].as_str()),
            (want, Some(field)),
            "{body}: {v}"
        );
    }
    assert_eq!(
        revision(&admin).await,
        before,
        "a refused change was written"
    );

    // Roles: operators and viewers read, only admins change them.
    let op = new_token_for(&admin, &root, "op", Some("operator")).await;
    let view = new_token_for(&admin, &root, "view", Some("viewer")).await;
    for token in [&op, &view] {
        assert_eq!(
            api(&admin, token, "GET", "/v1/oauth-providers", None)
                .await
                .0,
            200
        );
        let (s, v) = api(&admin, token, "DELETE", "/v1/oauth-providers/ramp", None).await;
        assert_eq!(s, 403, "{v}");
    }
    cli(&admin, &root, &["oauth", "delete", "ramp"], &[]);
    assert_eq!(
        api(&admin, &root, "GET", "/v1/oauth-providers/ramp", None)
            .await
            .0,
        404
    );
}

/// An owner with named permissions (a custom role) and a token for it.
async fn custom_owner(admin: &str, root: &str, name: &str, permissions: &[&str]) -> String {
    let body = json!({"name": name, "permissions": permissions});
    let (s, v) = api(admin, root, "POST", "/v1/owners", Some(&body.to_string())).await;
    assert_eq!(s, 201, "{v}");
    let body = json!({"name": name, "owner": name});
    let (s, v) = api(admin, root, "POST", "/v1/tokens", Some(&body.to_string())).await;
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn attaching_an_oauth_provider_is_its_own_permission() {
    let sluice = Sluice::start("oauth_providers:\n  - { name: corp, authorization_endpoint: \"https://login.example.com/auth\", token_endpoint: \"https://login.example.com/token\", client_id: sluice, token_endpoint_auth_method: none }\n");
    let admin = sluice.admin_url();
    let root = sluice.admin_token();
    // May attach, may not edit OAuth providers.
    let attacher = custom_owner(
        &admin,
        &root,
        "mcp-editor",
        &[
            "provider_create",
            "provider_update",
            "provider_get",
            "oauth_provider_attach",
        ],
    )
    .await;
    // May edit OAuth providers (and providers), may not attach.
    let idp_admin = custom_owner(
        &admin,
        &root,
        "idp-admin",
        &[
            "oauth_provider_get",
            "oauth_provider_update",
            "oauth_provider_create",
            "provider_create",
            "provider_update",
            "provider_get",
        ],
    )
    .await;
    let operator = new_token_for(&admin, &root, "ops", Some("operator")).await;
    let provider = |name: &str, oauth: Option<&str>| {
        let mut p = json!({"name": name, "kind": "openai-compatible", "base_url": "https://api.example.com", "credentials": "oauth"});
        match oauth {
            Some(o) => p["oauth_provider"] = json!(o),
            None => {
                p["credentials"] = json!("byok");
            }
        }
        p.to_string()
    };

    let (s, v) = api(
        &admin,
        &attacher,
        "POST",
        "/v1/providers",
        Some(&provider("tools", Some("corp"))),
    )
    .await;
    assert_eq!(s, 201, "attach granted alone: {v}");
    let (s, v) = api(
        &admin,
        &idp_admin,
        "POST",
        "/v1/providers",
        Some(&provider("tools2", Some("corp"))),
    )
    .await;
    assert_eq!(s, 403, "attach withheld alone: {v}");
    assert_eq!(v["error"]["field"], "oauth_provider");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("oauth_provider_attach"),
        "{v}"
    );
    let (s, v) = api(
        &admin,
        &operator,
        "POST",
        "/v1/providers",
        Some(&provider("tools3", Some("corp"))),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    // Without a reference the same owner may create; keeping an existing reference while
    // editing something else is not a new attachment.
    let (s, v) = api(
        &admin,
        &idp_admin,
        "POST",
        "/v1/providers",
        Some(&provider("plain", None)),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let mut edited: Value = serde_json::from_str(&provider("tools", Some("corp"))).unwrap();
    edited["quarantine_seconds"] = json!(120);
    let (s, v) = api(
        &admin,
        &idp_admin,
        "PUT",
        "/v1/providers/tools",
        Some(&edited.to_string()),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // Moving where the users' tokens go is as good as a new attachment (third review,
    // finding 3).
    edited["base_url"] = json!("https://api2.example.com");
    let (s, v) = api(
        &admin,
        &idp_admin,
        "PUT",
        "/v1/providers/tools",
        Some(&edited.to_string()),
    )
    .await;
    assert_eq!((s, &v["error"]["field"]), (403, &json!("base_url")), "{v}");
    // …but pointing `plain` at an OAuth provider is.
    let (s, _) = api(
        &admin,
        &idp_admin,
        "PUT",
        "/v1/providers/plain",
        Some(&provider("plain", Some("corp"))),
    )
    .await;
    assert_eq!(s, 403);

    // Editing the OAuth provider: the idp admin may, the attacher may not.
    let corp = json!({"name": "ramp", "authorization_endpoint": "https://r.example.com/a", "token_endpoint": "https://r.example.com/t", "client_id": "c", "token_endpoint_auth_method": "none"});
    let (s, v) = api(
        &admin,
        &idp_admin,
        "POST",
        "/v1/oauth-providers",
        Some(&corp.to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api(
        &admin,
        &attacher,
        "PUT",
        "/v1/oauth-providers/ramp",
        Some(&corp.to_string()),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("oauth_provider_update"),
        "{v}"
    );

    // An unknown OAuth provider, an unknown permission name: named, nothing written.
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/providers",
        Some(&provider("tools4", Some("nope"))),
    )
    .await;
    assert_eq!(
        (s, &v["error"]["field"]),
        (422, &json!("oauth_provider")),
        "{v}"
    );
    let body = json!({"name": "typo", "permissions": ["oauth_provider_atach"]});
    let (s, v) = api(&admin, &root, "POST", "/v1/owners", Some(&body.to_string())).await;
    assert_eq!(
        (s, &v["error"]["field"]),
        (400, &json!("permissions[0]")),
        "{v}"
    );
    // Owners with named permissions are privileged: an operator cannot mint their tokens.
    let body = json!({"name": "x", "owner": "mcp-editor"});
    let (s, _) = api(
        &admin,
        &operator,
        "POST",
        "/v1/tokens",
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(s, 403);
    let (s, who) = api(&admin, &attacher, "GET", "/v1/whoami", None).await;
    assert_eq!(s, 200);
    assert_eq!(who["permissions"][3], "oauth_provider_attach", "{who}");
}
