//! The token vault end to end against a real authorization server (oidc-provider): consent
//! with PKCE and `state` driven through its login and consent pages for each client
//! authentication method, the user's token injected upstream (the upstream is the
//! authorization server's own userinfo endpoint, so it says whose token arrived), refresh with
//! one flight for 50 concurrent requests and rotated refresh tokens, `invalid_grant`, scope
//! re-consent, client-secret rotation, disconnect with RFC 7009 revocation, refused states,
//! and RFC 8693 token exchange.

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

const SCOPES: &str = r#"["openid", "offline_access", "repo.read"]"#;

pub(crate) struct Env {
    pub(crate) idp: Idp,
    pub(crate) sluice: Sluice,
    pub(crate) admin: String,
    pub(crate) root: String,
    pub(crate) alice: String,
    pub(crate) client_id: String,
    pub(crate) secret: Option<String>,
    /// The control plane, when `sluice` is a data plane following it.
    pub(crate) _control: Option<Sluice>,
}

pub(crate) async fn idp_post(idp: &Idp, path: &str, body: Value) -> Value {
    client()
        .post(format!("{}{path}", idp.issuer()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("idp")
        .json()
        .await
        .expect("idp json")
}

pub(crate) async fn stats(idp: &Idp) -> Value {
    http_get(format!("{}/_test/stats", idp.issuer()))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json")
}

pub(crate) async fn set_ttl(idp: &Idp, seconds: u64) {
    idp_post(idp, "/_test/ttl", json!({ "access": seconds })).await;
}

/// Registers Sluice at the authorization server (RFC 7591) with `method`; the client id and secret.
pub(crate) async fn register(idp: &Idp, sluice: &Sluice, method: &str) -> (String, Option<String>) {
    let reg = idp_post(
        idp,
        "/reg",
        json!({
            "redirect_uris": [sluice.url("/oauth/v1/callback")],
            "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:token-exchange"],
            "response_types": ["code"],
            "token_endpoint_auth_method": method,
        }),
    )
    .await;
    (
        reg["client_id"].as_str().expect("client_id").to_owned(),
        reg["client_secret"].as_str().map(str::to_owned),
    )
}

/// Sluice with an OAuth provider `corp` (endpoints discovered from the issuer) registered with
/// `method`, an upstream `corp-api` (the server's userinfo) using its grants at `/corp`, and a
/// token for owner alice.
pub(crate) async fn setup(method: &str, grant_types: &[&str]) -> Env {
    let idp = Idp::start();
    let sluice = Sluice::start(&format!(
        "issuers:\n  - {{ name: corp-idp, issuer: \"{}\", audiences: [\"urn:sluice:gateway\"], principal_claim: client_id }}\n",
        idp.issuer()
    ));
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let (client_id, secret, alice) =
        configure(&idp, &sluice, &admin, &root, method, grant_types).await;
    Env {
        idp,
        sluice,
        admin,
        root,
        alice,
        client_id,
        secret,
        _control: None,
    }
}

/// Registers the client at the IdP and creates the OAuth provider, the upstream using it, its
/// route and alice, through the admin API at `admin`; the client id, secret and alice's token.
pub(crate) async fn configure(
    idp: &Idp,
    sluice: &Sluice,
    admin: &str,
    root: &str,
    method: &str,
    grant_types: &[&str],
) -> (String, Option<String>, String) {
    let (admin, root) = (admin.to_owned(), root.to_owned());
    let (client_id, secret) = register(idp, sluice, method).await;
    let mut provider = json!({
        "name": "corp", "display_name": "Corp Directory", "issuer": idp.issuer(),
        "client_id": client_id, "token_endpoint_auth_method": method,
        "scopes": serde_json::from_str::<Value>(SCOPES).unwrap(),
        "grant_types": grant_types,
    });
    if let Some(secret) = &secret {
        let body = json!({"name": "CORP_CLIENT_SECRET", "value": secret, "scopes": ["mcp"]});
        let (s, v) = api(
            &admin,
            &root,
            "POST",
            "/v1/secrets",
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        provider["client_secret_ref"] = json!("CORP_CLIENT_SECRET");
    }
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/oauth-providers",
        Some(&provider.to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let upstream = json!({"name": "corp-api", "kind": "openai-compatible", "base_url": idp.issuer(),
        "credentials": "oauth", "oauth_provider": "corp"});
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/providers",
        Some(&upstream.to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let route = json!({"prefix": "/corp", "provider": "corp-api", "auth": "any"});
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/routes",
        Some(&route.to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let alice = new_token_for(&admin, &root, "alice", None).await;
    (client_id, secret, alice)
}

/// `GET /corp/me` as `token`: the status and the body.
pub(crate) async fn me(env: &Env, token: &str) -> (u16, Value) {
    let r = client()
        .get(env.sluice.url("/corp/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("me");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A connect link asked for with `token` (`POST /oauth/v1/connect/corp`), as a user's own
/// client asks for one.
pub(crate) async fn connect_link(env: &Env, token: &str) -> String {
    let link: Value = client()
        .post(env.sluice.url("/oauth/v1/connect/corp"))
        .bearer_auth(token)
        .send()
        .await
        .expect("connect link")
        .json()
        .await
        .expect("json");
    link["connect_url"]
        .as_str()
        .expect("connect_url")
        .to_owned()
}

/// A browser enough for these pages: keeps cookies (all hosts here are 127.0.0.1), follows no
/// redirect by itself.
pub(crate) struct Browser {
    http: reqwest::Client,
    /// (name, path) → value.
    cookies: std::sync::Mutex<std::collections::BTreeMap<(String, String), String>>,
}

pub(crate) fn browser() -> Browser {
    Browser {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        cookies: Default::default(),
    }
}

impl Browser {
    pub(crate) async fn get(&self, url: &str) -> reqwest::Response {
        self.send(self.http.get(url)).await
    }

    pub(crate) async fn post(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.send(self.http.post(url).form(form)).await
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> reqwest::Response {
        let req = req.build().expect("request");
        let path = req.url().path().to_owned();
        let cookie: Vec<String> = self
            .cookies
            .lock()
            .unwrap()
            .iter()
            .filter(|((_, p), _)| path.starts_with(p.as_str()))
            .map(|((k, _), v)| format!("{k}={v}"))
            .collect();
        let req = reqwest::RequestBuilder::from_parts(self.http.clone(), req);
        let req = if cookie.is_empty() {
            req
        } else {
            req.header("cookie", cookie.join("; "))
        };
        let resp = req.send().await.expect("browser request");
        let mut jar = self.cookies.lock().unwrap();
        for v in resp.headers().get_all("set-cookie") {
            let text = v.to_str().unwrap_or("");
            let mut parts = text.split(';');
            let pair = parts.next().unwrap_or("");
            let attributes: Vec<(String, String)> = parts
                .filter_map(|a| a.trim().split_once('='))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let attribute = |name: &str| {
                attributes
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            let cookie_path = attribute("path").unwrap_or("/").to_owned();
            if let Some((k, v)) = pair.split_once('=') {
                let key = (k.trim().to_owned(), cookie_path);
                // Expired by its attributes only: a random value may well hold "1970" (this
                // test once lost a cookie whose random value did, and failed as oauth_bad_state).
                let gone = attribute("max-age") == Some("0")
                    || attribute("expires").is_some_and(|e| e.contains("1970"));
                if v.is_empty() || gone {
                    jar.remove(&key);
                } else {
                    jar.insert(key, v.to_owned());
                }
            }
        }
        resp
    }
}

/// What a user does in a browser: opens the connect link, checks whose identity it names,
/// continues, logs in as `login` and consents (or aborts), and lands on Sluice's callback.
/// Returns the callback URL and the final page.
pub(crate) async fn consent(
    env: &Env,
    connect_url: &str,
    login: &str,
    abort: bool,
) -> (String, u16, String) {
    let b = browser();
    let page = b.get(connect_url).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!("owner `{login}`")) && html.contains("Corp Directory"),
        "{html}"
    );
    let link = url_param(connect_url, "link").expect("link");
    let nonce = consent_nonce(&html);
    let resp = b
        .post(
            &env.sluice.url("/oauth/v1/connect/corp"),
            &[("link", link.as_str()), ("consent", nonce.as_str())],
        )
        .await;
    assert_eq!(resp.status(), 303, "{:?}", resp.text().await);
    let url = location(&resp, connect_url);
    assert!(
        url.starts_with(&env.idp.issuer()) && url.contains("code_challenge="),
        "{url}"
    );
    through_idp(env, &b, url, login, abort).await
}

/// The consent page's random value, which its form posts back (empty when the page has none:
/// its button is then refused).
pub(crate) fn consent_nonce(html: &str) -> String {
    html.split("name=\"consent\" value=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

/// Follows an authorization URL in browser `b`: logs in as `login` and consents (or aborts)
/// at the IdP, and lands on Sluice's callback. Returns the callback URL and the final page.
pub(crate) async fn through_idp(
    env: &Env,
    b: &Browser,
    mut url: String,
    login: &str,
    abort: bool,
) -> (String, u16, String) {
    let mut form: Option<Vec<(&str, &str)>> = None;
    for _ in 0..12 {
        if url.starts_with(&env.sluice.url("/oauth/v1/callback")) {
            let resp = b.get(&url).await;
            let status = resp.status().as_u16();
            return (url, status, resp.text().await.unwrap_or_default());
        }
        let resp = match form.take() {
            Some(f) => b.post(&url, &f).await,
            None => b.get(&url).await,
        };
        if resp.status().is_redirection() {
            url = location(&resp, &url);
            continue;
        }
        let html = resp.text().await.unwrap();
        if abort {
            url = format!("{}/abort", url.trim_end_matches('/'));
            continue;
        }
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|a| a.split('"').next())
            .unwrap_or_else(|| panic!("no form at {url}: {html}"));
        url = join(&url, action);
        form = Some(if html.contains("name=\"login\"") {
            vec![("prompt", "login"), ("login", login), ("password", "x")]
        } else {
            vec![("prompt", "consent")]
        });
    }
    panic!("the consent flow did not reach Sluice's callback");
}

pub(crate) fn location(resp: &reqwest::Response, base: &str) -> String {
    let loc = resp.headers()["location"].to_str().unwrap();
    join(base, loc)
}

pub(crate) fn join(base: &str, path: &str) -> String {
    reqwest::Url::parse(base)
        .and_then(|b| b.join(path))
        .expect("url")
        .to_string()
}

pub(crate) fn url_param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Connects alice: asks for a link with her token, then consents in the browser.
pub(crate) async fn connect(env: &Env) {
    let (s, v) = me(env, &env.alice).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "oauth_not_connected", "{v}");
    let url = v["error"]["connect_url"]
        .as_str()
        .expect("connect_url")
        .to_owned();
    let (_, status, page) = consent(env, &url, "alice", false).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Corp Directory is connected"), "{page}");
}

fn data_files(env: &Env) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(env.sluice.dir.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    all.extend(env.sluice.proc.log_text().into_bytes());
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn consent_for_each_client_authentication_method_then_the_users_token_goes_upstream() {
    for method in ["client_secret_basic", "client_secret_post", "none"] {
        let env = setup(method, &["authorization_code"]).await;
        let started = std::time::Instant::now();
        connect(&env).await;
        eprintln!("consent round trip ({method}): {:?}", started.elapsed());
        // The upstream (userinfo) saw alice's own token; the agent never held it.
        let (s, v) = me(&env, &env.alice).await;
        assert_eq!((s, &v["sub"]), (200, &json!("alice")), "{method}: {v}");
        // Sealed at rest, never logged.
        let issued = stats(&env.idp).await["issued"].clone();
        let access = issued[0]["access_token"].as_str().unwrap();
        let refresh = issued[0]["refresh_token"].as_str().unwrap();
        let files = data_files(&env);
        assert!(
            !contains(&files, access) && !contains(&files, refresh),
            "{method}: token in the data dir or log"
        );
        // Operators see the connection, never the token.
        let (s, list) = api(&env.admin, &env.root, "GET", "/v1/oauth/connections", None).await;
        assert_eq!(s, 200, "{list}");
        // Alice's principal: her name and the id the control plane gave her.
        let principal = list["data"][0]["principal"].as_str().unwrap();
        assert!(principal.starts_with("owner:alice#"), "{list}");
        assert_eq!(list["data"][0]["refreshable"], true);
        assert!(!list.to_string().contains(access));
        // The user's own view.
        let mine: Value = client()
            .get(env.sluice.url("/oauth/v1/connections"))
            .bearer_auth(&env.alice)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(mine["data"][0]["provider"], "corp", "{mine}");
    }
}

#[tokio::test]
async fn refresh_is_one_flight_for_50_concurrent_requests_and_keeps_the_rotated_token() {
    let env = setup("client_secret_basic", &["authorization_code"]).await;
    // Tokens that enter the refresh window (one minute) two seconds after they are issued.
    set_ttl(&env.idp, 62).await;
    connect(&env).await;
    advance_clock(&[&env.sluice], 2500).await;
    let started = std::time::Instant::now();
    let calls = (0..50).map(|_| me(&env, &env.alice));
    let answers = futures_util::future::join_all(calls).await;
    eprintln!("50 requests around one refresh: {:?}", started.elapsed());
    for (s, v) in &answers {
        assert_eq!((*s, &v["sub"]), (200, &json!("alice")), "{v}");
    }
    assert_eq!(stats(&env.idp).await["grants"]["refresh_token"], 1);
    // The second refresh needs the rotated refresh token: the first one is spent.
    advance_clock(&[&env.sluice], 2500).await;
    let started = std::time::Instant::now();
    let (s, v) = me(&env, &env.alice).await;
    eprintln!("one request with a refresh: {:?}", started.elapsed());
    assert_eq!(s, 200, "{v}");
    let started = std::time::Instant::now();
    let _ = me(&env, &env.alice).await;
    eprintln!("the next request, token cached: {:?}", started.elapsed());
    assert_eq!(stats(&env.idp).await["grants"]["refresh_token"], 2);

    // The client secret rotates (a new value under the same name): grants stay, and the next
    // refresh uses the new value — a wrong one fails without losing the grant.
    let wrong = json!({"value": "not-the-client-secret"});
    let (s, v) = api(
        &env.admin,
        &env.root,
        "PATCH",
        "/v1/secrets/CORP_CLIENT_SECRET",
        Some(&wrong.to_string()),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    advance_clock(&[&env.sluice], 2500).await;
    let (s, v) = me(&env, &env.alice).await;
    assert_eq!(s, 502, "refreshed with the old secret? {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid_client"),
        "{v}"
    );
    let (_, list) = api(&env.admin, &env.root, "GET", "/v1/oauth/connections", None).await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        1,
        "grant kept: {list}"
    );
}

/// A token endpoint that answers every request with 503 and an `invalid_grant` body (a proxy's
/// error page in the provider's words): a transient failure, not a revoked grant.
async fn failing_token_endpoint() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let _ = s.read(&mut buf).await;
                let body = r#"{"error":"invalid_grant","error_description":"upstream busy"}"#;
                let answer = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    url
}

/// Changes the stored `corp` provider with `edit` (PUT); returns it as it was.
async fn edit_provider(env: &Env, edit: impl FnOnce(&mut Value)) -> Value {
    let (_, before) = api(
        &env.admin,
        &env.root,
        "GET",
        "/v1/oauth-providers/corp",
        None,
    )
    .await;
    let mut p = before.clone();
    edit(&mut p);
    for field in ["created_at", "updated_at", "source", "redirect_uri"] {
        p.as_object_mut().unwrap().remove(field);
    }
    let body = p.to_string();
    let (s, v) = api(
        &env.admin,
        &env.root,
        "PUT",
        "/v1/oauth-providers/corp",
        Some(&body),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    before
}

/// Points the provider's token endpoint at `url`; returns the one it had.
async fn set_token_endpoint(env: &Env, url: &str) -> String {
    let before = edit_provider(env, |p| p["token_endpoint"] = json!(url)).await;
    before["token_endpoint"].as_str().unwrap().to_owned()
}

/// Refresh that does not lock people out: the token endpoint unreachable, or answering 5xx
/// (even with an `invalid_grant` body), fails the request (502) and keeps the grant; once the
/// provider is back the same grant refreshes. Only a real `invalid_grant` (a 400) removes it.
#[tokio::test]
async fn transient_refresh_failures_keep_the_grant() {
    let env = setup("client_secret_basic", &["authorization_code"]).await;
    set_ttl(&env.idp, 62).await;
    connect(&env).await;
    let unreachable = format!("http://127.0.0.1:{}/token", refused_port());
    let busy = failing_token_endpoint().await;
    let mut original = None;
    for (what, endpoint) in [("unreachable", &unreachable), ("503 invalid_grant", &busy)] {
        let before = set_token_endpoint(&env, endpoint).await;
        original.get_or_insert(before);
        advance_clock(&[&env.sluice], 2500).await;
        let (s, v) = me(&env, &env.alice).await;
        assert_eq!(s, 502, "{what}: {v}");
        let (_, list) = api(&env.admin, &env.root, "GET", "/v1/oauth/connections", None).await;
        assert_eq!(
            list["data"].as_array().unwrap().len(),
            1,
            "{what}: grant kept: {list}"
        );
    }
    set_token_endpoint(&env, &original.unwrap()).await;
    let (s, v) = me(&env, &env.alice).await;
    assert_eq!(
        (s, &v["sub"]),
        (200, &json!("alice")),
        "the kept grant refreshes: {v}"
    );
    assert_eq!(stats(&env.idp).await["grants"]["refresh_token"], 1);
}

#[tokio::test]
async fn invalid_grant_asks_to_reconnect_and_added_scopes_ask_for_consent_again() {
    let env = setup("client_secret_post", &["authorization_code"]).await;
    set_ttl(&env.idp, 61).await;
    connect(&env).await;
    // The user revokes Sluice's access at the provider: the next refresh gets invalid_grant.
    let issued = stats(&env.idp).await["issued"].clone();
    let refresh = issued[0]["refresh_token"].as_str().unwrap().to_owned();
    let secret = env.secret.clone().unwrap();
    let r = client()
        .post(format!("{}/token/revocation", env.idp.issuer()))
        .form(&[
            ("token", refresh.as_str()),
            ("client_id", env.client_id.as_str()),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    advance_clock(&[&env.sluice], 1500).await;
    let (s, v) = me(&env, &env.alice).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "oauth_not_connected", "{v}");
    let (_, list) = api(&env.admin, &env.root, "GET", "/v1/oauth/connections", None).await;
    assert_eq!(list["data"], json!([]), "the dead grant is gone: {list}");

    // Connected again, then the provider asks for one more scope: re-consent.
    set_ttl(&env.idp, 3600).await;
    connect(&env).await;
    assert_eq!(me(&env, &env.alice).await.0, 200);
    edit_provider(&env, |p| {
        p["scopes"] = json!(["openid", "offline_access", "repo.read", "repo.write"])
    })
    .await;
    // The change applies at once (a cached token belongs to the configuration it was asked under).
    let (s, v) = me(&env, &env.alice).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "oauth_reconsent", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("repo.write"),
        "{v}"
    );
    assert!(v["error"]["connect_url"]
        .as_str()
        .unwrap()
        .contains("/oauth/v1/connect/corp?link="));

    // Disabled: no use and no new consent; deleted: every reference fails naming it, and its
    // grants are swept from the vault.
    edit_provider(&env, |p| {
        p["scopes"] = json!(["openid", "offline_access", "repo.read"]);
        p["enabled"] = json!(false);
    })
    .await;
    let (s, v) = me(&env, &env.alice).await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (503, &json!("oauth_provider_disabled")),
        "{v}"
    );
    let link = client()
        .post(env.sluice.url("/oauth/v1/connect/corp"))
        .bearer_auth(&env.alice)
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), 503);
    let (s, v) = api(
        &env.admin,
        &env.root,
        "DELETE",
        "/v1/oauth-providers/corp",
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = me(&env, &env.alice).await;
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`corp` does not exist"),
        "{v}"
    );
}

#[tokio::test]
async fn disconnect_revokes_upstream_and_states_are_single_use() {
    let env = setup("none", &["authorization_code"]).await;
    connect(&env).await;
    assert_eq!(me(&env, &env.alice).await.0, 200);

    // A callback replayed (the browser's back button, an attacker with the URL): refused.
    // (This link comes from the CLI, as a user gets it.)
    let user_env = [
        ("SLUICE_GATEWAY_URL", env.sluice.url("")),
        ("SLUICE_TOKEN", env.alice.clone()),
    ];
    let user_env: Vec<(&str, &str)> = user_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = cli(
        &env.admin,
        &env.root,
        &["oauth", "connect", "corp", "-o", "json"],
        &user_env,
    );
    let link: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    let url = link["connect_url"]
        .as_str()
        .expect("connect_url")
        .to_owned();
    let (callback, status, _) = consent(&env, &url, "alice", false).await;
    assert_eq!(status, 200);
    let replay = browser().get(&callback).await;
    assert_eq!(replay.status(), 400);
    assert!(replay.text().await.unwrap().contains("oauth_bad_state"));
    // A forged state, and a used link.
    let forged = browser()
        .get(&env.sluice.url("/oauth/v1/callback?state=forged&code=x"))
        .await;
    assert_eq!(forged.status(), 400);
    let used = browser().get(&url).await;
    assert_eq!(used.status(), 400);

    // Continuing without the page's cookie (another site posting the form): refused.
    let l = url_param(&connect_link(&env, &env.alice).await, "link").unwrap();
    let csrf = browser()
        .post(
            &env.sluice.url("/oauth/v1/connect/corp"),
            &[("link", l.as_str())],
        )
        .await;
    assert_eq!(csrf.status(), 403);
    // Nor with a value made up for the form and a cookie to match (the page's value is random
    // and only the page's own browser holds its cookie).
    let forged = browser();
    let made_up = "00112233445566778899aabbccddeeff";
    let forged_post = forged
        .http
        .post(env.sluice.url("/oauth/v1/connect/corp"))
        .form(&[("link", l.as_str()), ("consent", made_up)])
        .send()
        .await
        .unwrap();
    assert_eq!(forged_post.status(), 403);

    // The user says no at the provider: a clear page, nothing stored.
    let bob = new_token_for(&env.admin, &env.root, "bob", None).await;
    let (s, v) = me(&env, &bob).await;
    assert_eq!(s, 401);
    let url = v["error"]["connect_url"].as_str().unwrap().to_owned();
    let (_, status, page) = consent(&env, &url, "bob", true).await;
    assert_eq!(status, 502, "{page}");
    assert!(page.contains("access_denied"), "{page}");
    assert_eq!(me(&env, &bob).await.0, 401);

    // Operators see the redirect URI to register, and the connections.
    let out = cli(&env.admin, &env.root, &["oauth", "get", "corp"], &[]);
    let redirect = format!("redirect_uri: {}", env.sluice.url("/oauth/v1/callback"));
    assert!(out.contains(&redirect), "{out}");
    let out = cli(&env.admin, &env.root, &["oauth", "connections"], &[]);
    assert!(
        out.contains("owner:alice") && !out.contains("owner:bob"),
        "{out}"
    );
    // Disconnect (the user, from the CLI): the grant goes and the refresh token is revoked
    // at the provider.
    let out = cli(
        &env.admin,
        &env.root,
        &["oauth", "disconnect", "corp", "-o", "json"],
        &user_env,
    );
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    assert_eq!(v["revoked"], true, "{v}");
    let st = stats(&env.idp).await;
    assert_eq!(st["revocations"], 1, "{st}");
    assert_eq!(st["revoked"][0], "refresh_token", "{st}");
    assert_eq!(me(&env, &env.alice).await.0, 401);
}

#[tokio::test]
async fn token_exchange_turns_the_callers_jwt_into_a_provider_token_and_caches_it() {
    let env = setup("client_secret_basic", &["token_exchange"]).await;
    let jwt = env.idp.token("rs-client", "llm.invoke").await;
    let started = std::time::Instant::now();
    let (s, v) = me(&env, &jwt).await;
    eprintln!(
        "first request with a token exchange: {:?}",
        started.elapsed()
    );
    assert_eq!((s, &v["sub"]), (200, &json!("rs-client")), "{v}");
    // Cached until shortly before it expires: no second exchange.
    let started = std::time::Instant::now();
    let (s, _) = me(&env, &jwt).await;
    eprintln!("the same request, token cached: {:?}", started.elapsed());
    assert_eq!(s, 200);
    assert_eq!(
        stats(&env.idp).await["grants"]["urn:ietf:params:oauth:grant-type:token-exchange"],
        1
    );
    // An opaque token has no JWT to exchange; a JWT from an untrusted issuer never reaches the
    // exchange.
    let (s, v) = me(&env, &env.alice).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "oauth_needs_jwt", "{v}");
    let untrusted = env
        .idp
        .mint(json!({"claims": {"iss": "https://evil.example", "aud": "urn:sluice:gateway", "sub": "x", "exp": unix_now() + 300}}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(me(&env, &untrusted).await.0, 401);
    assert_eq!(
        stats(&env.idp).await["grants"]["urn:ietf:params:oauth:grant-type:token-exchange"],
        1
    );
}

/// Issue 27, finding 3: a JWT of any trusted issuer was posted as `subject_token` to any
/// token-exchange server (which can replay it), and a `DPoP` token it answered with was
/// injected as a Bearer token. Now an exchange provider receives only its own issuer's JWTs
/// (or those of `subject_issuers`), and only a Bearer token is used.
#[tokio::test]
async fn token_exchange_sends_only_its_own_issuers_jwts_and_takes_only_bearer_tokens() {
    let idp = Idp::start();
    let other = Idp::start();
    let issuer = |name: &str, idp: &Idp| {
        format!(
            "  - {{ name: {name}, issuer: \"{}\", audiences: [\"urn:sluice:gateway\"], principal_claim: client_id }}\n",
            idp.issuer()
        )
    };
    let sluice = Sluice::start(&format!(
        "issuers:\n{}{}",
        issuer("corp-idp", &idp),
        issuer("other-idp", &other)
    ));
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let (client_id, secret, alice) = configure(
        &idp,
        &sluice,
        &admin,
        &root,
        "client_secret_basic",
        &["token_exchange"],
    )
    .await;
    let env = Env {
        idp,
        sluice,
        admin,
        root,
        alice,
        client_id,
        secret,
        _control: None,
    };

    // A JWT of another trusted issuer is admitted by the route but never leaves for corp's
    // token endpoint.
    let foreign = other.token("rs-client", "llm.invoke").await;
    let (s, v) = me(&env, &foreign).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "oauth_exchange_refused", "{v}");
    assert_eq!(stats(&env.idp).await["exchanges_received"], 0);
    // corp's own JWT is exchanged.
    let own = env.idp.token("rs-client", "llm.invoke").await;
    assert_eq!(me(&env, &own).await.0, 200);
    assert_eq!(stats(&env.idp).await["exchanges_received"], 1);

    // A proof-of-possession token is not injected as a Bearer token.
    idp_post(
        &env.idp,
        "/_test/exchange_token_type",
        json!({"token_type": "DPoP"}),
    )
    .await;
    let next = env.idp.token("es-client", "llm.invoke").await;
    let (s, v) = me(&env, &next).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "oauth_exchange_refused", "{v}");
    assert!(v.to_string().contains("DPoP"), "{v}");
    assert_eq!(stats(&env.idp).await["exchanges_received"], 2);

    // `subject_issuers` names the issuers whose JWTs may go (a typo is refused by field).
    let (s, mut provider) = api(
        &env.admin,
        &env.root,
        "GET",
        "/v1/oauth-providers/corp",
        None,
    )
    .await;
    assert_eq!(s, 200, "{provider}");
    // What was written, without what the API adds (timestamps, revision, redirect_uri).
    let written = [
        "name",
        "display_name",
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "revocation_endpoint",
        "grant_types",
        "token_endpoint_auth_method",
        "client_id",
        "client_secret_ref",
        "scopes",
        "require_pkce",
        "enabled",
    ];
    provider
        .as_object_mut()
        .unwrap()
        .retain(|k, _| written.contains(&k.as_str()));
    provider["subject_issuers"] = json!(["other-idpp"]);
    let put = |body: Value| {
        let (admin, root) = (env.admin.clone(), env.root.clone());
        async move {
            let path = "/v1/oauth-providers/corp";
            api(&admin, &root, "PUT", path, Some(&body.to_string())).await
        }
    };
    let (s, v) = put(provider.clone()).await;
    assert!(s == 400 || s == 422, "{s} {v}");
    assert!(v.to_string().contains("subject_issuers[0]"), "{v}");
    provider["subject_issuers"] = json!(["other-idp"]);
    let (s, v) = put(provider).await;
    assert_eq!(s, 200, "{v}");
    idp_post(
        &env.idp,
        "/_test/exchange_token_type",
        json!({"token_type": "Bearer"}),
    )
    .await;
    let foreign = other.token("es-client", "llm.invoke").await;
    me(&env, &foreign).await;
    assert_eq!(stats(&env.idp).await["exchanges_received"], 3);
}

/// Users reach `dp`, which follows the control plane `cp` (API at `admin`, token `root`): the
/// control plane names `dp` in links, the OAuth provider and alice are configured through it,
/// and this returns once `dp` has the route and alice's token (she is asked to connect).
async fn on_data_plane(
    idp: Idp,
    dp: Sluice,
    mut cp: Sluice,
    (admin, root): (String, String),
) -> Env {
    cp.rewrite_config(&format!("public_base_url: \"{}\"\n", dp.url("")));
    cp.relaunch();
    let (client_id, secret, alice) = configure(
        &idp,
        &dp,
        &admin,
        &root,
        "client_secret_basic",
        &["authorization_code"],
    )
    .await;
    let env = Env {
        idp,
        sluice: dp,
        admin,
        root,
        alice,
        client_id,
        secret,
        _control: Some(cp),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while me(&env, &env.alice).await.1["error"]["code"] != "oauth_not_connected" {
        assert!(
            std::time::Instant::now() < deadline,
            "the data plane never got the route and the token"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env
}

/// A data plane following a control plane over PostgreSQL: it holds neither the master key nor
/// the grants, and reaches the vault through the control plane's `/v1/vault`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_plane_uses_the_vault_of_its_control_plane_over_postgres() {
    let db = PgDatabase::create();
    let idp = Idp::start();
    let key = [("SLUICE_MASTER_KEY", MASTER)];
    let cp = Sluice::start_control_plane(&key, &["--database", &db.url]);
    let (admin, root) = (cp.admin_url(), cp.admin_token());
    let dp_token = new_token_for(&admin, &root, "edge", Some("dataplane")).await;
    let no_env: [(&str, &str); 0] = [];
    let dp = Sluice::start_args(
        "",
        &no_env,
        &[
            "--control-plane",
            admin.as_str(),
            "--token",
            dp_token.as_str(),
        ],
    );
    // Users reach the data plane: links and the redirect URI name it.
    let env = on_data_plane(idp, dp, cp, (admin, root)).await;
    connect(&env).await;
    let (s, v) = me(&env, &env.alice).await;
    assert_eq!((s, &v["sub"]), (200, &json!("alice")), "{v}");
    // Sealed in PostgreSQL too.
    let issued = stats(&env.idp).await["issued"].clone();
    let access = issued[0]["access_token"].as_str().unwrap();
    let rows = db.rows("SELECT principal, provider, sealed FROM sluice_grants");
    assert!(
        rows.starts_with("owner:alice#") && rows.contains("|corp|"),
        "{rows}"
    );
    assert!(
        !rows.contains(access),
        "the access token is stored in the clear"
    );
    assert!(!db
        .rows("SELECT sealed FROM sluice_oauth_pending")
        .contains(access));
}

/// Issue 27, finding 2: the one-refresh-per-grant lock was per process. Two control planes on
/// one PostgreSQL, a data plane on each, requests on both as the grant entered its refresh
/// window: the IdP saw two refreshes with one rotating refresh token, the loser deleted the
/// grant and the IdP revoked the winner's as reuse. Now one replica holds the refresh lease and
/// the other waits for what it stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_control_planes_refresh_a_grant_once() {
    let db = PgDatabase::create();
    let idp = Idp::start();
    let key = [("SLUICE_MASTER_KEY", MASTER)];
    let cp1 = Sluice::start_control_plane(&key, &["--database", &db.url]);
    let (admin, root) = (cp1.admin_url(), cp1.admin_token());
    let cp2 = Sluice::start_control_plane(&key, &["--database", &db.url]);
    let dp_token = new_token_for(&admin, &root, "edge", Some("dataplane")).await;
    let no_env: [(&str, &str); 0] = [];
    let follow = |cp: &Sluice| {
        Sluice::start_args(
            "",
            &no_env,
            &["--control-plane", &cp.admin_url(), "--token", &dp_token],
        )
    };
    let (dp1, dp2) = (follow(&cp1), follow(&cp2));
    let dp2_url = dp2.url("/corp/me");
    let env = on_data_plane(idp, dp1, cp1, (admin, root)).await;
    // Tokens that enter the refresh window (one minute) two seconds after they are issued.
    set_ttl(&env.idp, 62).await;
    connect(&env).await;
    let on_dp2 = || async {
        let r = client()
            .get(&dp2_url)
            .bearer_auth(&env.alice)
            .send()
            .await
            .expect("dp2");
        (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while on_dp2().await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "dp2 never served alice"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = stats(&env.idp).await["grants"]["refresh_token"]
        .as_u64()
        .unwrap_or(0);
    let planes = [&env.sluice, env._control.as_ref().unwrap(), &cp2, &dp2];
    advance_clock(&planes, 2500).await;

    // 20 requests at once, half on each data plane (so on each control plane).
    let (env_ref, on_dp2_ref) = (&env, &on_dp2);
    let calls = (0..20).map(|i| async move {
        if i % 2 == 0 {
            me(env_ref, &env_ref.alice).await
        } else {
            on_dp2_ref().await
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    for (s, v) in &answers {
        assert_eq!(
            (*s, &v["sub"]),
            (200, &json!("alice")),
            "{v}\ncp2: {}\ndp2: {}",
            cp2.proc.log_text(),
            dp2.proc.log_text()
        );
    }
    let st = stats(&env.idp).await;
    assert_eq!(
        st["grants"]["refresh_token"].as_u64().unwrap_or(0),
        before + 1,
        "{st}"
    );
    // The grant survived and the rotated refresh token works: the next refresh succeeds.
    advance_clock(&planes, 2500).await;
    assert_eq!(on_dp2().await.0, 200);
    assert_eq!(me(&env, &env.alice).await.0, 200);
    let st = stats(&env.idp).await;
    assert_eq!(
        st["grants"]["refresh_token"].as_u64().unwrap_or(0),
        before + 2,
        "{st}"
    );
    assert!(db
        .rows("SELECT principal FROM sluice_grants")
        .starts_with("owner:alice#"));
    drop(cp2);
}

/// Agents behind the forward proxy: the intercepted provider's requests carry the user's token
/// too — the grant of an opaque token's owner, or the CONNECT's JWT exchanged.
#[tokio::test]
async fn agents_behind_the_forward_proxy_get_their_own_token_injected() {
    let idp = Idp::start();
    let sluice = Sluice::start_forward(
        &format!(
            "issuers:\n  - {{ name: corp-idp, issuer: \"{}\", audiences: [\"urn:sluice:gateway\"], principal_claim: client_id }}\n",
            idp.issuer()
        ),
        &[],
    );
    let (admin, root) = (sluice.admin_url(), sluice.admin_token());
    let grants = ["authorization_code", "token_exchange"];
    let (client_id, secret, alice) =
        configure(&idp, &sluice, &admin, &root, "client_secret_basic", &grants).await;
    let fwd = json!({"name": "corp-fwd", "kind": "openai-compatible", "base_url": idp.issuer(),
        "intercept_hosts": ["api.corp.test"], "credentials": "oauth", "oauth_provider": "corp"});
    let (s, v) = api(
        &admin,
        &root,
        "POST",
        "/v1/providers",
        Some(&fwd.to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let ca = sluice.dir.path().join("agent-ca.pem");
    let pem = http_get(format!("{admin}/ca.pem"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    std::fs::write(&ca, pem).unwrap();
    let proxy = sluice.proxy_url();
    let through_proxy = |credential: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "-x", &proxy, "--proxy-user"])
            .arg(format!("agent:{credential}"))
            .arg("--cacert")
            .arg(&ca)
            .arg("https://api.corp.test/me")
            .output()
            .expect("curl");
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
    };
    // A JWT at CONNECT: exchanged.
    let jwt = idp.token("rs-client", "llm.invoke").await;
    assert_eq!(through_proxy(&jwt)["sub"], "rs-client");
    // An opaque token: its owner's grant, once connected.
    let env = Env {
        idp,
        sluice,
        admin,
        root,
        alice,
        client_id,
        secret,
        _control: None,
    };
    let refused = through_proxy(&env.alice);
    assert_eq!(refused["error"]["code"], "oauth_not_connected", "{refused}");
    connect(&env).await;
    assert_eq!(through_proxy(&env.alice)["sub"], "alice");
}

/// Third review, finding 1 (High): Bob opened his own connect link, pressed the button himself
/// and sent the resulting authorization URL to Alice; her browser, signed in at the IdP,
/// completed the callback and Sluice sealed Alice's upstream token under Bob's principal. The
/// callback now completes only in the browser that pressed the button.
#[tokio::test]
async fn a_callback_completes_only_in_the_browser_that_confirmed() {
    let env = setup("none", &["authorization_code"]).await;
    let bob = new_token_for(&env.admin, &env.root, "bob", None).await;
    let (s, v) = me(&env, &bob).await;
    assert_eq!(s, 401, "{v}");
    let url = v["error"]["connect_url"].as_str().unwrap().to_owned();
    // Bob's browser: his page, his button.
    let bobs = browser();
    let html = bobs.get(&url).await.text().await.unwrap();
    let link = url_param(&url, "link").unwrap();
    let nonce = consent_nonce(&html);
    let resp = bobs
        .post(
            &env.sluice.url("/oauth/v1/connect/corp"),
            &[("link", link.as_str()), ("consent", nonce.as_str())],
        )
        .await;
    assert_eq!(resp.status(), 303);
    let authorize = location(&resp, &url);
    // Alice's browser follows Bob's URL to the end, signed in as herself.
    let (_, status, page) = through_idp(&env, &browser(), authorize, "alice", false).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("oauth_bad_state"), "{page}");
    // Nothing was stored for Bob, and nothing for Alice.
    assert_eq!(me(&env, &bob).await.0, 401);
    assert_eq!(me(&env, &env.alice).await.0, 401);
    // The flow still works for whoever presses the button in their own browser.
    connect(&env).await;
    let (s, v) = me(&env, &env.alice).await;
    assert_eq!(s, 200, "{v}");
}

/// Third review, finding 12: grants outlived their owner, and a new owner of the same name
/// inherited them. A deleted owner's grants go with it, and a recreated owner is another
/// principal (`owner:alice#<new id>`).
#[tokio::test]
async fn a_recreated_owner_is_another_principal() {
    let env = setup("none", &["authorization_code"]).await;
    connect(&env).await;
    assert_eq!(me(&env, &env.alice).await.0, 200);
    let (s, v) = api(&env.admin, &env.root, "GET", "/v1/owners/alice", None).await;
    assert_eq!(s, 200, "{v}");
    let first_id = v["id"].as_str().expect("an owner id").to_owned();
    let (s, v) = api(&env.admin, &env.root, "DELETE", "/v1/owners/alice", None).await;
    assert_eq!(s, 200, "{v}");
    let out = cli(&env.admin, &env.root, &["oauth", "connections"], &[]);
    assert!(
        !out.contains("owner:alice"),
        "a grant outlived its owner: {out}"
    );
    // The first alice's token went with her (revoked with the owner): refused, then and once
    // another alice exists (the outside review of this fix found it taken over by the new one).
    let refused = |token: String| {
        let url = env.sluice.url("/corp/me");
        async move {
            let r = client().get(url).bearer_auth(token).send().await.unwrap();
            let reason = r.headers()["x-sluice-error"].to_str().unwrap().to_owned();
            (r.status().as_u16(), reason)
        }
    };
    let gone = (401, "revoked".to_owned());
    assert_eq!(refused(env.alice.clone()).await, gone);
    let again = new_token_for(&env.admin, &env.root, "alice", None).await;
    let (_, v) = api(&env.admin, &env.root, "GET", "/v1/owners/alice", None).await;
    assert_ne!(v["id"].as_str(), Some(first_id.as_str()), "{v}");
    assert_eq!(refused(env.alice.clone()).await, gone);
    let (s, v) = me(&env, &again).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "oauth_not_connected", "{v}");
}

/// The outside review of the fix for finding 1: one cookie name for every flow made two
/// flows in one browser clash (the first callback failed). Each `state` has its own cookie.
#[tokio::test]
async fn two_consents_in_one_browser_both_complete() {
    let env = setup("none", &["authorization_code"]).await;
    let b = browser();
    let mut authorize = Vec::new();
    for _ in 0..2 {
        let url = connect_link(&env, &env.alice).await;
        let html = b.get(&url).await.text().await.unwrap();
        let l = url_param(&url, "link").unwrap();
        let nonce = consent_nonce(&html);
        let resp = b
            .post(
                &env.sluice.url("/oauth/v1/connect/corp"),
                &[("link", l.as_str()), ("consent", nonce.as_str())],
            )
            .await;
        assert_eq!(resp.status(), 303);
        authorize.push(location(&resp, &url));
    }
    for url in authorize.into_iter().rev() {
        let (_, status, page) = through_idp(&env, &b, url, "alice", false).await;
        assert_eq!(status, 200, "{page}");
    }
    assert_eq!(me(&env, &env.alice).await.0, 200);
}
