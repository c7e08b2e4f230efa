//! The control plane: the store suite on both backends, the admin API's roles, secrets at
//! rest and bad input, and the helpers `control_nodes` shares.

use crate::common::*;
use serde_json::{json, Value};
use sluice::control::store::{Op, SqlStore, Store, StoreError};

use std::time::Duration;

fn create(kind: &str, name: &str, body: Value) -> Op {
    Op::Create {
        kind: kind.into(),
        name: name.into(),
        body,
    }
}

/// The same checks on every backend.
async fn store_suite(url: &str) {
    let store = SqlStore::open(url).await.expect("open");
    assert_eq!(store.revision().await.unwrap(), 0);
    let r1 = store
        .apply(&[create("provider", "a", json!({"n": 1}))])
        .await
        .unwrap();
    assert_eq!(r1, 1);
    let got = store.get("provider", "a").await.unwrap().expect("stored");
    assert_eq!(got.body, json!({"n": 1}));
    assert!(got.created_at > 0);
    // A conflict rolls the whole change back, revision included.
    let err = store
        .apply(&[
            create("provider", "b", json!({})),
            create("provider", "a", json!({})),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(store.revision().await.unwrap(), 1);
    assert!(store.get("provider", "b").await.unwrap().is_none());
    // Several changes, one revision.
    let r2 = store
        .apply(&[
            create("provider", "b", json!({"n": 2})),
            Op::Update {
                kind: "provider".into(),
                name: "a".into(),
                body: json!({"n": 3}),
            },
            create("secret", "K", json!({"sealed": "x"})),
        ])
        .await
        .unwrap();
    assert_eq!(r2, 2);
    let names: Vec<String> = store
        .list("provider")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    let missing = store
        .apply(&[Op::Update {
            kind: "provider".into(),
            name: "zz".into(),
            body: json!({}),
        }])
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::NotFound { .. }));
    let r3 = store
        .apply(&[Op::Delete {
            kind: "provider".into(),
            name: "b".into(),
        }])
        .await
        .unwrap();
    assert_eq!(r3, 3);
    let dump = store.dump().await.unwrap();
    assert_eq!(dump.revision, 3);
    assert_eq!(dump.resources.len(), 2);
    // Token uses: newest wins, and they are not a revision.
    store
        .touch_tokens(&[("t1".into(), 100), ("t2".into(), 50)])
        .await
        .unwrap();
    store
        .touch_tokens(&[("t1".into(), 90), ("t2".into(), 60)])
        .await
        .unwrap();
    let used = store.tokens_last_used().await.unwrap();
    assert_eq!((used["t1"], used["t2"]), (100, 60));
    assert_eq!(store.revision().await.unwrap(), 3);
    drop(store);
    // Reopening re-runs no migration and keeps everything.
    let again = SqlStore::open(url).await.expect("reopen");
    assert_eq!(again.revision().await.unwrap(), 3);
    assert_eq!(
        again.get("provider", "a").await.unwrap().unwrap().body,
        json!({"n": 3})
    );
}

#[tokio::test]
async fn store_suite_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    store_suite(&url).await;
    // One writer: nothing to listen to, the follower polls.
    let store = SqlStore::open(&url).await.unwrap();
    assert!(store.listen().await.unwrap().is_none());
}

#[tokio::test]
async fn store_suite_postgres() {
    let db = PgDatabase::create();
    store_suite(&db.url).await;
}

#[tokio::test]
async fn postgres_replicas_get_one_revision_per_change() {
    let db = PgDatabase::create();
    let (a, b) = (
        SqlStore::open(&db.url).await.unwrap(),
        SqlStore::open(&db.url).await.unwrap(),
    );
    async fn run(s: &SqlStore, who: &str) -> Vec<u64> {
        let mut revs = Vec::new();
        for i in 0..20 {
            revs.push(
                s.apply(&[create("token", &format!("{who}{i}"), json!({}))])
                    .await
                    .unwrap(),
            );
        }
        revs
    }
    let (ra, rb) = tokio::join!(run(&a, "a"), run(&b, "b"));
    let mut all: Vec<u64> = ra.into_iter().chain(rb).collect();
    all.sort();
    assert_eq!(all, (1..=40).collect::<Vec<u64>>());
    assert_eq!(b.list("token").await.unwrap().len(), 40);

    // A commit by one replica notifies the other's listener; a refused change does not.
    let mut listener = b
        .listen()
        .await
        .unwrap()
        .expect("PostgreSQL has notifications");
    assert!(a.apply(&[create("token", "a0", json!({}))]).await.is_err());
    let quiet = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await;
    assert!(quiet.is_err(), "notified of a rolled-back change");
    a.apply(&[create("token", "late", json!({}))])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("no notification")
        .unwrap();
}

/// Calls the admin API; returns (status, JSON body).
#[tokio::test]
async fn roles_secrets_at_rest_and_bad_input() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env("", &[("SLUICE_MASTER_KEY", MASTER)]);
    let admin = sluice.admin_url();
    let root = sluice.admin_token();
    let mut tokens = vec![("admin", root.clone())];
    for (owner, role) in [
        ("op", Some("operator")),
        ("view", Some("viewer")),
        ("dp", Some("dataplane")),
        ("nobody", None),
    ] {
        tokens.push((owner, new_token_for(&admin, &root, owner, role).await));
    }

    // Each role against each endpoint family.
    let url = mock.url();
    for (who, token) in &tokens {
        let n = format!("{who}-x");
        let upper = n.to_uppercase().replace('-', "_");
        let cases: Vec<(&str, String, Option<String>, [u16; 5])> = vec![
            //                                                        admin op   view  dp   nobody
            (
                "GET",
                "/v1/providers".into(),
                None,
                [200, 200, 200, 403, 403],
            ),
            (
                "POST",
                "/v1/secrets".into(),
                Some(json!({"name": upper, "value": "sk-role-test-value"}).to_string()),
                [201, 201, 403, 403, 403],
            ),
            (
                "POST",
                "/v1/providers".into(),
                Some(
                    json!({"name": n, "kind": "openai", "base_url": url, "credentials": "byok"})
                        .to_string(),
                ),
                [201, 403, 403, 403, 403],
            ),
            ("GET", "/v1/secrets".into(), None, [200, 200, 200, 403, 403]),
            (
                "POST",
                "/v1/tokens".into(),
                Some("{}".into()),
                [201, 201, 403, 403, 403],
            ),
            ("GET", "/v1/tokens".into(), None, [200, 200, 200, 403, 403]),
            (
                "GET",
                "/v1/snapshot".into(),
                None,
                [200, 403, 403, 200, 403],
            ),
            (
                "POST",
                "/v1/owners".into(),
                Some(json!({"name": format!("o-{who}")}).to_string()),
                [201, 403, 403, 403, 403],
            ),
            ("GET", "/v1/issuers".into(), None, [200, 200, 200, 403, 403]),
            ("GET", "/v1/routes".into(), None, [200, 200, 200, 403, 403]),
        ];
        let col = ["admin", "op", "view", "dp", "nobody"]
            .iter()
            .position(|w| w == who)
            .unwrap();
        for (method, path, body, want) in cases {
            let (status, v) = api(&admin, token, method, &path, body.as_deref()).await;
            assert_eq!(status, want[col], "{who} {method} {path}: {v}");
            if status == 403 {
                assert_eq!(v["error"]["code"], "forbidden", "{v}");
            }
        }
    }
    // Owners and routes changed through the CLI: fields not given are kept.
    cli(
        &admin,
        &root,
        &["owner", "update", "view", "--role", "none"],
        &[],
    );
    let viewer = &tokens[2].1;
    let (s, v) = api(&admin, viewer, "GET", "/v1/providers", None).await;
    assert_eq!(s, 403, "{v}");
    let shown: Value = serde_json::from_str(&cli(
        &admin,
        &root,
        &["owner", "get", "view", "-o", "json"],
        &[],
    ))
    .unwrap();
    assert_eq!(shown["enabled"], true, "{shown}");
    assert!(shown.get("role").is_none(), "{shown}");
    cli(
        &admin,
        &root,
        &["owner", "update", "op", "--enabled", "false"],
        &[],
    );
    let (s, v) = api(&admin, &tokens[1].1, "GET", "/v1/providers", None).await;
    assert_eq!(s, 401, "a disabled owner's token: {v}");
    cli(
        &admin,
        &root,
        &[
            "route",
            "create",
            "--prefix",
            "/cli",
            "--provider",
            "admin-x",
            "--auth",
            "any",
            "--scopes",
            "a",
        ],
        &[],
    );
    cli(
        &admin,
        &root,
        &["route", "update", "/cli", "--auth", "token"],
        &[],
    );
    let route: Value = serde_json::from_str(&cli(
        &admin,
        &root,
        &["route", "get", "/cli", "-o", "json"],
        &[],
    ))
    .unwrap();
    assert_eq!(
        (route["auth"].as_str(), route["scopes"].clone()),
        (Some("token"), json!(["a"])),
        "{route}"
    );

    // An issuer from flags; the API fills in the defaults (nothing is fetched until a JWT comes).
    let out = cli(
        &admin,
        &root,
        &[
            "issuer",
            "create",
            "corp",
            "--issuer",
            "http://127.0.0.1:9/idp",
            "--audience",
            "urn:sluice",
            "--principal-claim",
            "client_id",
            "-o",
            "json",
        ],
        &[],
    );
    assert!(out.contains("revision"), "{out}");
    let issuer: Value = serde_json::from_str(&cli(
        &admin,
        &root,
        &["issuer", "get", "corp", "-o", "json"],
        &[],
    ))
    .unwrap();
    assert_eq!(issuer["audiences"], json!(["urn:sluice"]), "{issuer}");
    assert_eq!(issuer["principal_claim"], "client_id", "{issuer}");
    assert!(
        issuer["algorithms"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{issuer}"
    );

    // No token, a bad token: 401 with a challenge.
    let r = http_get(format!("{admin}/v1/providers")).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let (s, _) = api(
        &admin,
        "sluice_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB000000",
        "GET",
        "/v1/providers",
        None,
    )
    .await;
    assert_eq!(s, 401);

    // Secrets: no one can read a value back; the store file never holds it.
    let (s, v) = api(&admin, &root, "GET", "/v1/secrets/ADMIN_X", None).await;
    assert_eq!(s, 200, "{v}");
    assert!(v.get("value").is_none() && v.get("sealed").is_none(), "{v}");
    assert_eq!(v["scopes"], json!(["gateway"]));
    let listed = api(&admin, &root, "GET", "/v1/secrets", None)
        .await
        .1
        .to_string();
    assert!(
        !listed.contains("sk-role-test-value") && !listed.contains("sealed"),
        "{listed}"
    );
    let db = std::fs::read(sluice.dir.path().join("data/sluice.db")).unwrap();
    let needle = b"sk-role-test-value";
    assert!(
        !db.windows(needle.len()).any(|w| w == needle),
        "plaintext secret in the SQLite file"
    );
    assert!(!sluice.proc.log_text().contains("sk-role-test-value"));

    // Bad input: rejected with the field named, nothing changed.
    let before = api(&admin, &root, "GET", "/readyz", None).await.1["control_revision"].clone();
    let bad: Vec<(&str, &str, String, u16, &str)> = vec![
        ("POST", "/v1/providers", "{not json".into(), 400, ""),
        ("POST", "/v1/providers", json!({"name": "p9", "kind": "openai", "base_url": url, "bogus": 1}).to_string(), 400, "bogus"),
        ("POST", "/v1/providers", json!({"name": "p9", "kind": "gpt", "base_url": url}).to_string(), 400, "kind"),
        ("POST", "/v1/providers", json!({"name": "OpenAI", "kind": "openai", "base_url": url, "credentials": "byok"}).to_string(), 400, "name"),
        ("POST", "/v1/secrets", json!({"name": "lower_case", "value": "v"}).to_string(), 400, "name"),
        ("POST", "/v1/secrets", json!({"name": "OK_NAME", "value": "v", "scopes": ["nope"]}).to_string(), 400, "scopes[0]"),
        ("POST", "/v1/providers", json!({"name": "admin-x", "kind": "openai", "base_url": url, "credentials": "byok"}).to_string(), 409, "name"),
        ("POST", "/v1/providers", json!({"name": "p9", "kind": "openai", "base_url": url, "keys": [{"id": "k", "secret_ref": "secret:MISSING"}]}).to_string(), 422, "store:provider/p9.keys[0].secret_ref"),
        ("POST", "/v1/routes", json!({"prefix": "/r9", "provider": "no-such"}).to_string(), 422, "store:route//r9.provider"),
        ("PUT", "/v1/providers/admin-x", json!({"name": "renamed", "kind": "openai", "base_url": url, "credentials": "byok"}).to_string(), 400, "name"),
        ("POST", "/v1/tokens", json!({"expires_in": "soon"}).to_string(), 400, "expires_in"),
    ];
    for (method, path, body, want, field) in bad {
        let (s, v) = api(&admin, &root, method, path, Some(&body)).await;
        assert_eq!(s, want, "{method} {path} {body}: {v}");
        if !field.is_empty() {
            assert_eq!(v["error"]["field"], field, "{body}: {v}");
        }
    }
    let after = api(&admin, &root, "GET", "/readyz", None).await.1["control_revision"].clone();
    assert_eq!(before, after, "a refused change bumped the revision");
    let (_, providers) = api(&admin, &root, "GET", "/v1/providers", None).await;
    assert_eq!(
        providers["items"].as_array().map(Vec::len),
        Some(1),
        "{providers}"
    );

    // The OpenAPI document is served, and names a permission for each operation.
    let (s, doc) = api(&admin, "", "GET", "/v1/openapi.json", None).await;
    assert_eq!(s, 200);
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/v1/providers",
        "/v1/providers/{name}/keys",
        "/v1/secrets/{name}",
        "/v1/tokens/{id}/rotate",
        "/v1/snapshot",
        "/v1/routes/{prefix}",
        "/v1/agents/{name}",
    ] {
        assert!(paths.contains_key(p), "{p} missing from openapi.json");
    }
    // Every documented operation exists with its method and asks for a credential.
    let mut operations = 0;
    for (path, ops) in paths {
        let concrete = path
            .replace("{name}", "x")
            .replace("{id}", "x")
            .replace("{prefix}", "x");
        for (method, op) in ops.as_object().unwrap() {
            if let Some(perm) = op["x-permission"].as_str() {
                assert!(
                    sluice::control::rbac::Permission::all()
                        .iter()
                        .any(|p| p.name() == perm),
                    "{method} {path}: {perm}"
                );
            }
            let (s, v) = api(&admin, "", &method.to_uppercase(), &concrete, Some("{}")).await;
            let public = [
                "/v1/openapi.json",
                "/v1/snapshot/key",
                "/v1/console/sign-in",
            ];
            let want = if public.contains(&path.as_str()) {
                200
            } else if path == "/v1/console/session" {
                // No credential: the sign-in's code is the proof, and `{}` has none.
                400
            } else {
                401
            };
            assert_eq!(s, want, "{method} {path}: {v}");
            operations += 1;
        }
    }
    assert_eq!(operations, 78);
}
