//! Sluice as the authorization server of its MCP servers: people sign in at the company IdP
//! (oidc-provider), MCP clients register (RFC 7591 or a Client ID Metadata Document) and get
//! tokens for one MCP server with the code grant and PKCE; and the attacks on each step.

use crate::common::*;
use crate::https_upstream::Pki;
use crate::mcp::{everything, mcp_dir, node_json, whoami, Node};
use crate::vault::{browser, idp_post, join, location, url_param, Browser};
use serde_json::{json, Value};
use std::process::Command;

const REDIRECT: &str = "http://127.0.0.1:9/callback";
/// A PKCE verifier and its S256 challenge.
const VERIFIER: &str = "dBjftJeZ4CVP-mJ0RtiAZZ5FDJ8X0wMNeI2ysN4EWOE";
const CHALLENGE: &str = "F6kRivtBh2dJPeuUKyZ7TBxTtUVH2YDYtCE-eshC7js";

struct Env {
    idp: Idp,
    sluice: Sluice,
    _whoami: Node,
    _everything: Node,
}

/// Sluice trusting `pki`'s CA (the metadata documents' https) and fetching from loopback, with
/// the IdP as issuer `corp` where people sign in (through OAuth provider `corp-login`, Sluice's
/// client there, also used for the person's upstream grants), and two MCP servers: `who`
/// (answers with the subject of the IdP token Sluice injects: the person's own grant) and
/// `tools` (server-everything, no upstream auth).
async fn setup(pki: &Pki) -> Env {
    setup_with(pki, |_, _| {}).await
}

/// `setup`, with `edit` changing the issuer before it is created (given it and the admin URL).
async fn setup_with(pki: &Pki, edit: impl FnOnce(&mut Value, &str)) -> Env {
    let idp = Idp::start();
    let who = whoami(&format!("{}/me", idp.issuer()));
    let (everything, _) = everything();
    let ca = pki.path("ca.pem");
    let sluice = Sluice::start_with_env(
        &format!(
            "forward:\n  allow_cidrs: [127.0.0.0/8]\nmcp_servers:\n  - {{ name: who, url: \"http://127.0.0.1:{}/mcp\", auth: oauth_provider, oauth_provider: corp-login }}\n  - {{ name: tools, url: \"http://127.0.0.1:{e}/mcp\" }}\n  - {{ name: admin-tools, url: \"http://127.0.0.1:{e}/mcp\", scopes: [admin] }}\n  - {{ name: closed, url: \"http://127.0.0.1:{e}/mcp\" }}\n",
            who.port, e = everything.port
        ),
        &[("SSL_CERT_FILE", &ca)],
    );
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let reg = idp_post(
        &idp,
        "/reg",
        json!({
            "redirect_uris": [sluice.url("/oauth2/callback"), sluice.url("/oauth/v1/callback")],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_post",
        }),
    )
    .await;
    let secret = json!({"name": "CORP_LOGIN", "value": reg["client_secret"], "scopes": ["mcp"]});
    let provider = json!({"name": "corp-login", "display_name": "Corp sign-in", "issuer": idp.issuer(),
        "client_id": reg["client_id"], "client_secret_ref": "CORP_LOGIN",
        "token_endpoint_auth_method": "client_secret_post", "scopes": ["openid", "groups"]});
    // Open to people who sign in here: all but `closed`.
    let audiences = ["who", "tools", "admin-tools"].map(|n| sluice.url(&format!("/mcp/{n}")));
    let mut issuer = json!({"name": "corp", "issuer": idp.issuer(), "audiences": audiences,
        "sign_in": {"oauth_provider": "corp-login"}});
    edit(&mut issuer, &admin);
    for (path, body) in [
        ("/v1/secrets", secret),
        ("/v1/oauth-providers", provider),
        ("/v1/issuers", issuer),
    ] {
        let (s, v) = api(&admin, &root, "POST", path, Some(&body.to_string())).await;
        assert_eq!(s, 201, "{path}: {v}");
    }
    Env {
        idp,
        sluice,
        _whoami: who,
        _everything: everything,
    }
}

fn signin_client(url: &str, env: &[(&str, &str)]) -> Value {
    let mut cmd = Command::new("node");
    cmd.arg(mcp_dir().join("signin-client.mjs")).arg(url);
    for (k, v) in env {
        cmd.env(k, v);
    }
    node_json(&cmd.output().expect("node"))
}

/// The MCP SDK's OAuth client, headless, against Sluice with the IdP behind it: discovery,
/// registration (dynamic for alice, a metadata document for bob), sign-in, consent, token,
/// tools; each person's own upstream grant used by the tool; refresh rotates and a replayed
/// refresh token ends the family; a token for one server is refused by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_clients_sign_people_in_through_sluice() {
    let pki = Pki::new();
    let env = setup(&pki).await;
    let base = env.sluice.url("");
    let url = env.sluice.url("/mcp/who");

    let alice = signin_client(&url, &[("LOGIN", "alice")]);
    assert!(alice["error"].is_null(), "{alice}");
    // A figure, not a check: discovery, registration, sign-in at the IdP, consent, token and
    // the first listing (the first tool call needs the person's upstream grant first).
    eprintln!("sign-in round trip: {} ms", alice["signin_ms"]);
    assert_eq!(
        alice["discovered"]["authorization"],
        base.trim_end_matches('/'),
        "{alice}"
    );
    assert_eq!(alice["discovered"]["resource"], url, "{alice}");
    assert!(
        alice["discovered"]["client_id"]
            .as_str()
            .unwrap()
            .starts_with("mcp-"),
        "{alice}"
    );
    assert_eq!(
        alice["redirect"]["iss"],
        base.trim_end_matches('/'),
        "{alice}"
    );
    assert_eq!(alice["redirect"]["state_returned"], true, "{alice}");
    assert_eq!(alice["token"]["aud"], url, "{alice}");
    assert_eq!(alice["token"]["sub"], "alice", "{alice}");
    assert_eq!(alice["token"]["idp"], "corp", "{alice}");
    assert!(
        alice["token"]["expires_in"].as_u64().unwrap() > 300,
        "{alice}"
    );
    // The consent page named the person signed in at the IdP.
    let named = alice["pages"].as_array().unwrap().iter().any(|p| {
        p["at"] == "/oauth2/consent" && p["identity"].as_str().is_some_and(|i| i.contains("alice"))
    });
    assert!(named, "{alice}");
    assert_eq!(alice["connect_link"], true, "{alice}");
    assert_eq!(alice["tools"], json!(["whoami"]), "{alice}");
    assert_eq!(
        alice["tool_result"], "alice",
        "the person's own grant: {alice}"
    );
    assert_eq!(alice["refreshed"], true, "{alice}");
    assert_eq!(alice["replayed"]["error"], "invalid_grant", "{alice}");
    assert_eq!(
        alice["after_replay"]["error"], "invalid_grant",
        "the family ended: {alice}"
    );

    let bob = signin_client(
        &url,
        &[
            ("LOGIN", "bob"),
            ("CIMD_CERT", &pki.path("leaf.pem")),
            ("CIMD_KEY", &pki.path("leaf.key")),
        ],
    );
    assert!(bob["error"].is_null(), "{bob}");
    let client_id = bob["discovered"]["client_id"].as_str().unwrap();
    assert!(client_id.starts_with("https://127.0.0.1:"), "{bob}");
    assert!(bob["cimd_fetches"].as_u64().unwrap_or(0) >= 1, "{bob}");
    assert_eq!(bob["token"]["sub"], "bob", "{bob}");
    assert_eq!(
        bob["tool_result"], "bob",
        "bob's own grant, not alice's: {bob}"
    );

    // A token for `who` is no token for `tools`: 401 with the challenge to get one.
    let token = alice["access_token"].as_str().unwrap();
    let r = client()
        .post(env.sluice.url("/mcp/tools"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token"),
        "{:?}",
        r.headers()
    );
    drop(env.idp);
}

/// Claude Code, as a person adds a server behind Sluice without a token: `claude mcp list`
/// discovers Sluice from the 401, registers itself, and reports that the server needs
/// authentication (before sign-in existed it said "Failed to connect").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_sees_a_server_that_needs_sign_in() {
    let pki = Pki::new();
    let env = setup(&pki).await;
    let home = tempfile::tempdir().unwrap();
    let claude = |args: &[&str]| {
        let out = Command::new(mcp_dir().join("node_modules/.bin/claude"))
            .args(args)
            .current_dir(home.path())
            .env("HOME", home.path())
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .output()
            .expect("claude");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let url = env.sluice.url("/mcp/tools");
    let added = claude(&["mcp", "add", "--transport", "http", "tools", &url]);
    assert!(added.contains("Added HTTP MCP server tools"), "{added}");
    let listed = claude(&["mcp", "list"]);
    assert!(listed.contains("Needs authentication"), "{listed}");
    // It found Sluice from the 401: the server's metadata, then Sluice's. (Seeing
    // `client_id_metadata_document_supported`, it does not register: its client id is the URL
    // of its own metadata document, fetched at authorization.)
    let audit = std::fs::read_to_string(env.sluice.dir.path().join("data/audit.jsonl")).unwrap();
    assert!(
        audit.contains("\"path\":\"/.well-known/oauth-authorization-server\""),
        "{audit}"
    );
}

/// Operators sign in to the console at the company IdP in a real browser, their role from the
/// IdP's `groups` claim: alice (sluice-admins) is an admin, viewer1 (sluice-viewers) a viewer,
/// mallory (staff only) does not get in. The console's token works at the admin API only, and
/// a role unmapped in the configuration is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_sign_in_to_the_console_at_the_idp() {
    let pki = Pki::new();
    let env = setup_with(&pki, |issuer, admin| {
        issuer["sign_in"]["console"] = json!({"url": admin,
            "roles": {"sluice-admins": "admin", "sluice-viewers": "viewer"}});
    })
    .await;
    let admin = env.sluice.admin_url();
    new_client(&env.sluice).await;
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    let out = crate::sdk::run_with_env(
        "console_signin.py",
        &[
            &admin,
            shots.to_str().unwrap(),
            "alice",
            "viewer1",
            "mallory",
        ],
        &[],
    );
    let [alice, viewer, mallory] = [&out[0], &out[1], &out[2]];
    assert_eq!(alice["button"], "Sign in with your corp account", "{out}");
    assert_eq!(alice["who"], "jwt:corp:alice (admin)", "{out}");
    assert_eq!(alice["page"], "providers", "{out}");
    assert_eq!(alice["may_create_tokens"], true, "{out}");
    assert!(
        !alice["url"].as_str().unwrap().contains("signin="),
        "the code leaves the URL: {out}"
    );
    assert_eq!(alice["clients"], json!(["attacker's test"]), "{out}");
    assert_eq!(viewer["who"], "jwt:corp:viewer1 (viewer)", "{out}");
    assert_eq!(viewer["may_create_tokens"], false, "{out}");
    assert_eq!(mallory["who"], "", "{out}");
    assert!(
        mallory["error"]
            .as_str()
            .unwrap()
            .contains("no console role"),
        "{out}"
    );

    // The console's token, as the API sees it: the admin API only, the role of the moment.
    let b = browser();
    let tab = "a-state-this-tab-kept-0123456789";
    // Not started from a console tab (no state): refused.
    let r = b.get(&env.sluice.url("/oauth2/signin?next=console")).await;
    assert_eq!(r.status(), 400);
    let sign_in_code = || async {
        let start = env
            .sluice
            .url(&format!("/oauth2/signin?next=console&state={tab}"));
        let url = browse(&b, start, "alice", |u| u.starts_with(&admin)).await;
        url.split("#signin=")
            .nth(1)
            .expect("code in the fragment")
            .to_owned()
    };
    let session = |code: String, state: &'static str| {
        let admin = admin.clone();
        async move {
            let r = client()
                .post(format!("{admin}/v1/console/session"))
                .json(&json!({ "code": code, "state": state }))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // A code sent to another tab (login CSRF: a victim signed in as someone else) is refused
    // there, and used up.
    let code = sign_in_code().await;
    let (st, v) = session(code.clone(), "another-tab-state-0123456789ab").await;
    assert_eq!(st, 400, "{v}");
    let (st, _) = session(code, tab).await;
    assert_eq!(st, 400, "used up by the wrong tab");
    let code = sign_in_code().await;
    let (st, v) = session(code.clone(), tab).await;
    assert_eq!(st, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let (st, _) = session(code, tab).await;
    assert_eq!(st, 400, "a code is single use");
    let (st, me) = api(&admin, &token, "GET", "/v1/whoami", None).await;
    assert_eq!((st, me["role"].as_str()), (200, Some("admin")), "{me}");
    // Not a credential anywhere else: an MCP server refuses it.
    assert_eq!(mcp_status(&env.sluice, "tools", &token).await, 401);
    // The mapping changes: the same token is refused at once.
    let open = ["who", "tools", "admin-tools"].map(|n| env.sluice.url(&format!("/mcp/{n}")));
    let (st, v) = api(
        &admin,
        &env.sluice.admin_token(),
        "PUT",
        "/v1/issuers/corp",
        Some(&json!({"name": "corp", "issuer": env.idp.issuer(), "audiences": open,
            "sign_in": {"oauth_provider": "corp-login", "console": {"url": admin, "roles": {"sluice-viewers": "viewer"}}}}).to_string()),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = api(&admin, &token, "GET", "/v1/whoami", None).await;
    assert_eq!(st, 403, "{v}");
}

/// Operators see the clients people signed in with and revoke one: its access token, its
/// refresh token and new authorizations are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_and_revoke_signed_in_clients() {
    let pki = Pki::new();
    let env = setup(&pki).await;
    let s = &env.sluice;
    let tools = s.url("/mcp/tools");
    let client_id = new_client(s).await;
    let b = browser();
    let tokens = tokens_for(s, &b, &client_id, &tools).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(mcp_status(s, "tools", access).await, 200);

    let (admin, root) = (s.admin_url(), s.admin_token());
    let (st, list) = api(&admin, &root, "GET", "/v1/oauth-clients", None).await;
    assert_eq!(st, 200, "{list}");
    assert_eq!(list["items"][0]["client_id"], client_id.as_str(), "{list}");
    assert!(list["items"][0]["last_used_at"].is_string(), "{list}");
    let listed = cli(&admin, &root, &["oauth", "clients"], &[]);
    assert!(listed.contains(&client_id), "{listed}");
    let revoked = cli(&admin, &root, &["oauth", "revoke-client", &client_id], &[]);
    assert!(revoked.contains("true"), "{revoked}");

    until_refused(s, "tools", &[access]).await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (st, v) = refresh_with(s, &client_id, refresh).await;
    assert_refused(st, &v, "invalid_grant");
    let r = b.get(&authorize_url(s, &client_id, &tools, &[])).await;
    assert_eq!(r.status(), 400);
    let (_, list) = api(&admin, &root, "GET", "/v1/oauth-clients", None).await;
    assert_eq!(list["items"], json!([]), "{list}");
}

/// An operator signs a person out everywhere (offboarding, a stolen laptop): their access and
/// refresh tokens and their browser session stop working at the next revision, and their next
/// sign-in works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_a_person_out_everywhere() {
    let pki = Pki::new();
    let env = setup(&pki).await;
    let s = &env.sluice;
    let tools = s.url("/mcp/tools");
    let client_id = new_client(s).await;
    let b = browser();
    let tokens = tokens_for(s, &b, &client_id, &tools).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(mcp_status(s, "tools", access).await, 200);

    let (admin, root) = (s.admin_url(), s.admin_token());
    let out = cli(&admin, &root, &["oauth", "sign-out", "jwt:corp:alice"], &[]);
    assert!(out.contains("jwt:corp:alice"), "{out}");
    until_refused(s, "tools", &[access]).await;
    let (st, v) = refresh_with(s, &client_id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_refused(st, &v, "invalid_grant");
    // The browser's session is over: authorizing sends it to the IdP again.
    let url = authorize_url(s, &client_id, &tools, &[]);
    let r = b.get(&url).await;
    assert!(
        location(&r, &url).starts_with(&env.idp.issuer()),
        "the old session was used"
    );
    // Signing in again works at once.
    let tokens = tokens_for(s, &b, &client_id, &tools).await;
    assert_eq!(
        mcp_status(s, "tools", tokens["access_token"].as_str().unwrap()).await,
        200
    );
    // Only a person can be signed out.
    let (st, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/people/owner:alice/sign-out",
        Some("{}"),
    )
    .await;
    assert_eq!(st, 400, "{v}");
}

/// Sign-in through a data plane that follows a control plane over PostgreSQL: tickets,
/// sessions, codes, clients and refresh-token families live in the shared store and every step
/// reaches the control plane's vault (`/v1/vault`); the data plane holds no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn people_sign_in_through_a_data_plane() {
    let db = PgDatabase::create();
    let idp = Idp::start();
    let (_everything, upstream) = everything();
    let key = [("SLUICE_MASTER_KEY", MASTER)];
    let mut cp = Sluice::start_control_plane(&key, &["--database", &db.url]);
    let (admin, root) = (cp.admin_url(), cp.admin_token());
    let dp_token = new_token_for(&admin, &root, "edge", Some("dataplane")).await;
    let no_env: [(&str, &str); 0] = [];
    let dp = Sluice::start_args(
        "",
        &no_env,
        &["--control-plane", &admin, "--token", &dp_token],
    );
    cp.rewrite_config(&format!("public_base_url: \"{}\"\n", dp.url("")));
    cp.relaunch();
    let reg = idp_post(
        &idp,
        "/reg",
        json!({"redirect_uris": [dp.url("/oauth2/callback")], "grant_types": ["authorization_code"],
            "response_types": ["code"], "token_endpoint_auth_method": "client_secret_post"}),
    )
    .await;
    let tools = dp.url("/mcp/tools");
    let secret = json!({"name": "CORP_LOGIN", "value": reg["client_secret"], "scopes": ["mcp"]});
    let provider = json!({"name": "corp-login", "issuer": idp.issuer(), "client_id": reg["client_id"],
        "client_secret_ref": "CORP_LOGIN", "token_endpoint_auth_method": "client_secret_post", "scopes": ["openid"]});
    let server = json!({"name": "tools", "url": upstream});
    let issuer = json!({"name": "corp", "issuer": idp.issuer(), "audiences": [tools],
        "sign_in": {"oauth_provider": "corp-login"}});
    for (path, body) in [
        ("/v1/secrets", secret),
        ("/v1/oauth-providers", provider),
        ("/v1/mcp-servers", server),
        ("/v1/issuers", issuer),
    ] {
        let (s, v) = api(&admin, &root, "POST", path, Some(&body.to_string())).await;
        assert_eq!(s, 201, "{path}: {v}");
    }
    let revision = serving_revision(&admin).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while serving_revision(&dp.admin_url()).await < revision {
        assert!(
            std::time::Instant::now() < deadline,
            "the data plane never caught up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = signin_client(&tools, &[("LOGIN", "alice"), ("TOOL", "get-sum")]);
    assert!(out["error"].is_null(), "{out}");
    assert_eq!(
        out["discovered"]["authorization"],
        dp.url("").trim_end_matches('/'),
        "{out}"
    );
    assert_eq!(out["token"]["aud"], tools, "{out}");
    assert_eq!(out["token"]["sub"], "alice", "{out}");
    assert!(
        out["tools"].as_array().unwrap().iter().any(|t| t == "echo"),
        "{out}"
    );
    assert_eq!(out["refreshed"], true, "{out}");
    assert_eq!(out["replayed"]["error"], "invalid_grant", "{out}");
    // In the shared store, sealed: the client registered, the family ended by the replay.
    assert!(db
        .rows("SELECT id FROM sluice_oauth_clients")
        .contains("mcp-"));
    let access = out["access_token"].as_str().unwrap();
    assert!(!db
        .rows("SELECT sealed FROM sluice_oauth_pending")
        .contains(access));
}

/// A registered client's authorization request as the client builds it.
fn authorize_url(
    sluice: &Sluice,
    client_id: &str,
    resource: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut u = reqwest::Url::parse(&sluice.url("/oauth2/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("state", "st-1")
        .append_pair("resource", resource)
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

async fn register(sluice: &Sluice, body: Value) -> (u16, Value) {
    let r = client()
        .post(sluice.url("/oauth2/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn new_client(sluice: &Sluice) -> String {
    let (s, v) = register(
        sluice,
        json!({"redirect_uris": [REDIRECT], "client_name": "attacker's test"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v["client_id"].as_str().unwrap().to_owned()
}

/// Follows `url` in `b` as `login` through the IdP and Sluice's consent (Allow) to the client's
/// redirect; returns the redirect URL.
async fn sign_in(b: &Browser, url: String, login: &str) -> String {
    browse(b, url, login, |u| u.starts_with(REDIRECT)).await
}

/// Follows `url` in `b` through the IdP's pages (logging in as `login`, consenting) and
/// Sluice's consent page (Allow) until `arrived` says so of the URL it is sent to (not
/// opened); returns that URL.
async fn browse(
    b: &Browser,
    mut url: String,
    login: &str,
    arrived: impl Fn(&str) -> bool,
) -> String {
    let mut form: Option<Vec<(String, String)>> = None;
    for _ in 0..16 {
        if arrived(&url) {
            return url;
        }
        let resp = match form.take() {
            Some(f) => {
                let f: Vec<(&str, &str)> =
                    f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                b.post(&url, &f).await
            }
            None => b.get(&url).await,
        };
        if resp.status().is_redirection() {
            url = location(&resp, &url);
            continue;
        }
        let status = resp.status();
        let html = resp.text().await.unwrap();
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|a| a.split('"').next())
            .unwrap_or_else(|| panic!("no form at {url} ({status}): {html}"));
        url = join(&url, action);
        form = Some(if html.contains("name=\"decision\"") {
            let mut f = hidden_inputs(&html);
            f.push(("decision".into(), "allow".into()));
            f
        } else if html.contains("name=\"login\"") {
            vec![
                ("prompt".into(), "login".into()),
                ("login".into(), login.into()),
                ("password".into(), "x".into()),
            ]
        } else {
            vec![("prompt".into(), "consent".into())]
        });
    }
    panic!("the browser did not arrive from {url}");
}

fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .filter_map(|rest| {
            let (name, rest) = rest.split_once('"')?;
            let value = rest.split("value=\"").nth(1)?.split('"').next()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

async fn token(sluice: &Sluice, form: &[(&str, &str)]) -> (u16, Value) {
    let r = client()
        .post(sluice.url("/oauth2/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn exchange(
    sluice: &Sluice,
    client_id: &str,
    code: &str,
    verifier: &str,
    resource: &str,
) -> (u16, Value) {
    token(
        sluice,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
            ("resource", resource),
        ],
    )
    .await
}

/// alice's tokens for `resource` through `client_id`: sign-in (or the session `b` holds),
/// consent, code exchange.
async fn tokens_for(s: &Sluice, b: &Browser, client_id: &str, resource: &str) -> Value {
    let redirect = sign_in(b, authorize_url(s, client_id, resource, &[]), "alice").await;
    let code = url_param(&redirect, "code").unwrap();
    let (st, tokens) = exchange(s, client_id, &code, VERIFIER, resource).await;
    assert_eq!(st, 200, "{tokens}");
    tokens
}

/// A refresh-token request of `client_id`.
async fn refresh_with(s: &Sluice, client_id: &str, refresh_token: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", client_id),
        ("refresh_token", refresh_token),
    ];
    token(s, &form).await
}

/// An OAuth error answer (400) with this `error`.
fn assert_refused(status: u16, v: &Value, error: &str) {
    assert_eq!((status, v["error"].as_str()), (400, Some(error)), "{v}");
}

/// Waits (a revocation applies from the next revision) until every token is refused at `server`.
async fn until_refused(s: &Sluice, server: &str, tokens: &[&str]) {
    for _ in 0..100 {
        let mut all = true;
        for t in tokens {
            all &= mcp_status(s, server, t).await == 401;
        }
        if all {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("still accepted at {server}: a revoked token");
}

async fn mcp_status(sluice: &Sluice, server: &str, token: &str) -> u16 {
    client()
        .post(sluice.url(&format!("/mcp/{server}")))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A leaked connect link is of no use: a person who signs in at Sluice connects an upstream
/// account only in a browser signed in as them. Mallory, signed in, opening alice's link is
/// sent to sign in (as alice); a browser that is not signed in too; alice's own browser gets
/// the consent page; and the link, not used up by the refusals, still works for her.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_link_opens_only_in_its_persons_browser() {
    let pki = Pki::new();
    let env = setup(&pki).await;
    let s = &env.sluice;
    let who = s.url("/mcp/who");
    let client_id = new_client(s).await;
    let (alice, mallory) = (browser(), browser());
    let redirect = sign_in(&alice, authorize_url(s, &client_id, &who, &[]), "alice").await;
    let code = url_param(&redirect, "code").unwrap();
    let (st, tokens) = exchange(s, &client_id, &code, VERIFIER, &who).await;
    assert_eq!(st, 200, "{tokens}");
    let link = connect_link(s, tokens["access_token"].as_str().unwrap()).await;
    let redirect = sign_in(&mallory, authorize_url(s, &client_id, &who, &[]), "mallory").await;
    let code = url_param(&redirect, "code").unwrap();
    let (_, theirs) = exchange(s, &client_id, &code, VERIFIER, &who).await;
    let own_link = connect_link(s, theirs["access_token"].as_str().unwrap()).await;
    for stranger in [&mallory, &browser()] {
        let r = stranger.get(&link).await;
        assert_eq!(r.status(), 303);
        let to = location(&r, &link);
        assert!(to.starts_with(&s.url("/oauth2/signin?next=")), "{to}");
        // Sign-in comes back to the link, and nowhere else.
        let r = stranger.get(&to).await;
        assert!(location(&r, &to).starts_with(&env.idp.issuer()));
    }
    // Mallory posting alice's link with the page nonce of her own link's consent page: the
    // anti-forgery check passes, the person check does not, and the link is not used up.
    let own_page = mallory.get(&own_link).await;
    assert_eq!(own_page.status(), 200);
    let own_nonce = crate::vault::consent_nonce(&own_page.text().await.unwrap());
    let link_secret = url_param(&link, "link").unwrap();
    let r = mallory
        .post(
            &s.url("/oauth/v1/connect/corp-login"),
            &[
                ("link", link_secret.as_str()),
                ("consent", own_nonce.as_str()),
            ],
        )
        .await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("oauth_sign_in_first"));
    let nonce = {
        let page = alice.get(&link).await;
        assert_eq!(page.status(), 200);
        crate::vault::consent_nonce(&page.text().await.unwrap())
    };
    // An open redirect through `next` is refused.
    let r = mallory
        .get(&s.url("/oauth2/signin?next=https://evil.example/"))
        .await;
    assert_eq!(r.status(), 400);
    // alice completes her own connection.
    let r = alice
        .post(
            &s.url("/oauth/v1/connect/corp-login"),
            &[("link", link_secret.as_str()), ("consent", nonce.as_str())],
        )
        .await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    assert!(location(&r, &link).starts_with(&env.idp.issuer()));
}

/// The connect link `initialize` answers with while the token's person has no upstream grant.
async fn connect_link(s: &Sluice, token: &str) -> String {
    let r = client()
        .post(s.url("/mcp/who"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    answer["error"]["data"]["connect_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no connect_url: {answer}"))
        .to_owned()
}

/// Every step attacked: registration (redirect URIs, auth methods, floods), authorization
/// (unregistered redirect, no PKCE, another resource, a metadata URL at a private address),
/// consent (forged POST), sign-in (the IdP's answer in another browser), code (wrong verifier,
/// replay, another resource), refresh (another client) and revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_of_sign_in_refuses_its_attacks() {
    let pki = Pki::new();
    let env = setup(&pki).await;
    let s = &env.sluice;
    let (who, tools) = (s.url("/mcp/who"), s.url("/mcp/tools"));

    // Metadata: Sluice names itself for its MCP servers, with registration and PKCE.
    let meta: Value = http_get(s.url("/.well-known/oauth-authorization-server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["registration_endpoint"],
        s.url("/oauth2/register"),
        "{meta}"
    );
    assert_eq!(
        meta["code_challenge_methods_supported"],
        json!(["S256"]),
        "{meta}"
    );
    assert_eq!(meta["response_types_supported"], json!(["code"]), "{meta}");
    assert_eq!(
        meta["client_id_metadata_document_supported"], true,
        "{meta}"
    );
    let prm: Value = http_get(s.url("/.well-known/oauth-protected-resource/mcp/tools"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        prm["authorization_servers"][0],
        s.url("").trim_end_matches('/'),
        "{prm}"
    );

    // Registration: redirect URIs loopback or https, no wildcard; public clients only.
    for bad in [
        json!({"redirect_uris": ["http://evil.example/cb"]}),
        json!({"redirect_uris": ["https://*.example.com/cb"]}),
        json!({"redirect_uris": []}),
    ] {
        let (st, v) = register(s, bad.clone()).await;
        assert_eq!(
            (st, v["error"].as_str()),
            (400, Some("invalid_redirect_uri")),
            "{bad}: {v}"
        );
    }
    let (st, v) = register(
        s,
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_basic"}),
    )
    .await;
    assert_refused(st, &v, "invalid_client_metadata");
    let client_id = new_client(s).await;

    // Authorization: an unregistered redirect URI is shown an error, never redirected to.
    let b = browser();
    let evil = authorize_url(s, &client_id, &who, &[]).replace("127.0.0.1%3A9", "evil.example");
    let r = b.get(&evil).await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    // Without PKCE, or for a resource that is no MCP server here: back to the client with the error.
    let no_pkce = authorize_url(s, &client_id, &who, &[])
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let r = b.get(&no_pkce).await;
    assert_eq!(
        url_param(&location(&r, &no_pkce), "error").as_deref(),
        Some("invalid_request")
    );
    let elsewhere = authorize_url(s, &client_id, "https://other.example/mcp", &[]);
    let r = b.get(&elsewhere).await;
    assert_eq!(
        url_param(&location(&r, &elsewhere), "error").as_deref(),
        Some("invalid_target")
    );
    // A metadata document at a private address is never fetched.
    let private = authorize_url(s, "https://10.255.255.1/client.json", &who, &[]);
    let r = b.get(&private).await;
    assert_eq!(r.status(), 400);
    // The page does not say why (nothing about what resolves or answers); the log does.
    assert!(r.text().await.unwrap().contains("could not be used"));
    assert!(s.proc.log_text().contains("private or internal"));

    // The IdP's answer taken to another browser (login CSRF) is refused.
    let r = b.get(&authorize_url(s, &client_id, &who, &[])).await;
    let to_idp = location(&r, &s.url("/"));
    assert!(to_idp.starts_with(&env.idp.issuer()), "{to_idp}");
    let other = browser();
    let callback = s.url("/oauth2/callback");
    let url = browse(&other, to_idp, "mallory", |u| u.starts_with(&callback)).await;
    // `other` has the IdP's cookies, not the cookie Sluice gave `b`.
    let r = other.get(&url).await;
    assert_eq!(r.status(), 400, "{}", r.text().await.unwrap());

    let redirect = sign_in(&b, authorize_url(s, &client_id, &who, &[]), "alice").await;
    let code = url_param(&redirect, "code").unwrap();
    // A consent posted by another page into alice's signed-in browser (a sibling site can
    // send her session and plant any cookie): without the value bound to her session and
    // this request, refused; the request is not used up.
    let r = b.get(&authorize_url(s, &client_id, &who, &[])).await;
    let consent = location(&r, &who);
    let ticket = url_param(&consent, "ticket").unwrap();
    let r = b
        .post(
            &s.url("/oauth2/consent"),
            &[
                ("ticket", ticket.as_str()),
                ("consent", "planted"),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(r.status(), 403);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("did not come from the page"));
    let page = b.get(&consent).await.text().await.unwrap();
    assert!(page.contains("id=\"allow\""), "{page}");
    // Not open to this issuer's people: refused (back to a loopback client with the error).
    let closed = authorize_url(s, &client_id, &s.url("/mcp/closed"), &[]);
    let r = b.get(&closed).await;
    assert_eq!(
        url_param(&location(&r, &closed), "error").as_deref(),
        Some("invalid_target")
    );
    // A client with an https redirect URI gets no redirect before the person said yes: its
    // errors are a page (no open redirector for anyone who registers).
    let (_, v) = register(s, json!({"redirect_uris": ["https://evil.example/phish"]})).await;
    let phish = authorize_url(s, v["client_id"].as_str().unwrap(), &who, &[])
        .replace("127.0.0.1%3A9%2Fcallback", "evil.example%2Fphish")
        .replace("response_type=code", "response_type=token");
    let r = b.get(&phish).await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());

    // Scopes are what the IdP grants the person: mallory asks for `admin` and does not get it.
    let m = browser();
    let admin_tools = s.url("/mcp/admin-tools");
    for (who_, browser_, granted) in [("mallory", &m, 403), ("alice", &b, 200)] {
        let url = authorize_url(s, &client_id, &admin_tools, &[("scope", "admin")]);
        let redirect = sign_in(browser_, url, who_).await;
        let code = url_param(&redirect, "code").unwrap();
        let (st, v) = exchange(s, &client_id, &code, VERIFIER, &admin_tools).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(
            mcp_status(s, "admin-tools", v["access_token"].as_str().unwrap()).await,
            granted,
            "{who_}: {v}"
        );
    }

    // Code: a wrong verifier uses it up; the right one then finds nothing.
    let (st, v) = exchange(s, &client_id, &code, &"x".repeat(43), &who).await;
    assert_refused(st, &v, "invalid_grant");
    let (st, v) = exchange(s, &client_id, &code, VERIFIER, &who).await;
    assert_refused(st, &v, "invalid_grant");
    // A code for `who` asked as a token for `tools`.
    let redirect = sign_in(&b, authorize_url(s, &client_id, &who, &[]), "alice").await;
    let code = url_param(&redirect, "code").unwrap();
    let (st, v) = exchange(s, &client_id, &code, VERIFIER, &tools).await;
    assert_refused(st, &v, "invalid_grant");

    // A good exchange, then the same code again: refused, and what it gave is revoked.
    let redirect = sign_in(
        &b,
        authorize_url(s, &client_id, &tools, &[("scope", "offline_access")]),
        "alice",
    )
    .await;
    let code = url_param(&redirect, "code").unwrap();
    let (st, good) = exchange(s, &client_id, &code, VERIFIER, &tools).await;
    assert_eq!(st, 200, "{good}");
    let access = good["access_token"].as_str().unwrap();
    assert_eq!(mcp_status(s, "tools", access).await, 200);
    assert_eq!(
        mcp_status(s, "who", access).await,
        401,
        "a token for one server on another"
    );
    let (st, v) = exchange(s, &client_id, &code, VERIFIER, &tools).await;
    assert_refused(st, &v, "invalid_grant");
    let refresh = good["refresh_token"].as_str().unwrap();
    let (st, v) = refresh_with(s, &client_id, refresh).await;
    assert_refused(st, &v, "invalid_grant");
    until_refused(s, "tools", &[access]).await;

    // Refresh by another client: refused, and the rightful client's refresh still works.
    let redirect = sign_in(&b, authorize_url(s, &client_id, &tools, &[]), "alice").await;
    let code = url_param(&redirect, "code").unwrap();
    let (_, good) = exchange(s, &client_id, &code, VERIFIER, &tools).await;
    let refresh = good["refresh_token"].as_str().unwrap().to_owned();
    let other_client = new_client(s).await;
    let (st, v) = refresh_with(s, &other_client, &refresh).await;
    assert_refused(st, &v, "invalid_grant");
    let (st, v) = token(
        s,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", &refresh),
            ("scope", "admin"),
        ],
    )
    .await;
    assert_refused(st, &v, "invalid_scope");
    let (st, fresh) = refresh_with(s, &client_id, &refresh).await;
    assert_eq!(st, 200, "{fresh}");
    // Revoked by its client (RFC 7009), the new refresh token is dead.
    let fresh_refresh = fresh["refresh_token"].as_str().unwrap();
    let r = client()
        .post(s.url("/oauth2/revoke"))
        .form(&[("client_id", client_id.as_str()), ("token", fresh_refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (st, v) = refresh_with(s, &client_id, fresh_refresh).await;
    assert_refused(st, &v, "invalid_grant");
    // Every access token of the family goes with it, the earlier one too.
    let (first, latest) = (
        good["access_token"].as_str().unwrap(),
        fresh["access_token"].as_str().unwrap(),
    );
    until_refused(s, "tools", &[first, latest]).await;

    // A registration flood from one address meets 429 (within any minute window of 25 tries).
    let mut limited = false;
    for _ in 0..25 {
        let (st, _) = register(s, json!({"redirect_uris": [REDIRECT]})).await;
        if st == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "registrations are limited per address");
}
