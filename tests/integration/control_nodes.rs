//! The control plane across processes: two control-plane replicas on PostgreSQL and two data
//! planes following them, driven by the `sluice` CLI; the admin API and feed over TLS.

use crate::common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_node_postgres_with_two_data_planes() {
    let db = PgDatabase::create();
    let mock = Mock::start(&[]);
    let env = [("SLUICE_MASTER_KEY", MASTER)];
    // Two control-plane replicas: `sluice control-plane` (no proxy listener) and `sluice serve`
    // (the embedded data plane too), on one database.
    let cp1 = Sluice::start_control_plane(&env, &["--database", &db.url]);
    let cp2 = Sluice::start_args("", &env, &["--database", &db.url]);
    assert_eq!(cp1.port, 0, "a control plane only has no proxy listener");
    let (a1, a2) = (cp1.admin_url(), cp2.admin_url());
    let root = cp1.admin_token();

    // A provider whose key is a secret in the store, a route, and the data planes' identity.
    let k1 = "sk-pool-key-one-111111";
    let k2 = "sk-pool-key-two-222222";
    let (s, v) = api(
        &a1,
        &root,
        "POST",
        "/v1/secrets",
        Some(&json!({"name": "LLM_K1", "value": k1}).to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let provider = json!({"name": "llm", "kind": "openai", "base_url": mock.url(), "keys": [{"id": "k1", "secret_ref": "secret:LLM_K1"}]});
    assert_eq!(
        api(
            &a1,
            &root,
            "POST",
            "/v1/providers",
            Some(&provider.to_string())
        )
        .await
        .0,
        201
    );
    let route = json!({"prefix": "/llm", "provider": "llm", "auth": "token"});
    assert_eq!(
        api(&a1, &root, "POST", "/v1/routes", Some(&route.to_string()))
            .await
            .0,
        201
    );
    // A secret for MCP servers only: no data plane receives it.
    let mcp = json!({"name": "MCP_ONLY", "value": "mcp-secret-value", "scopes": ["mcp"]});
    assert_eq!(
        api(&a1, &root, "POST", "/v1/secrets", Some(&mcp.to_string()))
            .await
            .0,
        201
    );
    let dp_token = new_token_for(&a1, &root, "edge", Some("dataplane")).await;
    let dp_args = ["--control-plane", a1.as_str(), "--token", dp_token.as_str()];
    // Data planes run without the master key: the feed is sealed for their token.
    let env: [(&str, &str); 0] = [];
    let mut dp1 = Sluice::start_args("", &env, &dp_args);
    // The second data plane's own file declares a provider the store may later name too.
    let local = format!(
        "providers:\n  - {{ name: clash, kind: openai, base_url: \"{}\", credentials: byok }}\n",
        mock.url()
    );
    let dp2 = Sluice::start_args(&local, &env, &dp_args);

    // A token created with the CLI works on both data planes.
    let out = cli(
        &a1,
        &root,
        &["token", "create", "--name", "agent", "--output", "json"],
        &[],
    );
    let created: Value = serde_json::from_str(&out).expect("json");
    let agent = created["token"].as_str().expect("token").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    let t1 = until_status(dp1.port, &agent, 200).await;
    let t2 = until_status(dp2.port, &agent, 200).await;
    eprintln!("token created → accepted on data planes: {t1:?}, {t2:?}");
    assert!(t1.max(t2) < Duration::from_secs(3), "{t1:?} {t2:?}");
    // The second replica sees the first one's writes, and serves them at once (LISTEN/NOTIFY;
    // its fallback poll is once a second).
    let listed = cli(&a2, &root, &["token", "list"], &[]);
    assert!(listed.contains(&id) && listed.contains("agent"), "{listed}");
    let mut replica = Vec::new();
    for i in 0..10 {
        let started = Instant::now();
        let body = json!({"name": format!("r{i}")}).to_string();
        let (s, v) = api(&a1, &root, "POST", "/v1/tokens", Some(&body)).await;
        assert_eq!(s, 201, "{v}");
        let rev = v["revision"].as_u64().unwrap();
        until_revision(&a2, rev).await;
        replica.push(started.elapsed());
    }
    replica.sort();
    eprintln!(
        "write on replica 1 → serving on replica 2: p50 {:?}, max {:?}",
        replica[4], replica[9]
    );
    assert!(replica[4] < Duration::from_millis(250), "{replica:?}");

    // Revoked with the CLI: refused on both.
    let victim: Value = serde_json::from_str(&cli(
        &a1,
        &root,
        &["token", "create", "--name", "victim", "-o", "json"],
        &[],
    ))
    .unwrap();
    let victim_token = victim["token"].as_str().unwrap().to_owned();
    until_status(dp1.port, &victim_token, 200).await;
    until_status(dp2.port, &victim_token, 200).await;
    cli(
        &a1,
        &root,
        &["token", "revoke", victim["id"].as_str().unwrap()],
        &[],
    );
    let r1 = until_status(dp1.port, &victim_token, 401).await;
    let r2 = until_status(dp2.port, &victim_token, 401).await;
    eprintln!("token revoked → refused on data planes: {r1:?}, {r2:?}");
    assert!(r1.max(r2) < Duration::from_secs(3));

    // Key rotation through the CLI under load: zero non-2xx. Each step waits for requests to
    // complete under the new state before the next one.
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let done = std::sync::Arc::new(AtomicU32::new(0));
    let mut load = Vec::new();
    for port in [dp1.port, dp2.port, dp1.port, dp2.port] {
        let (stop, done, agent) = (stop.clone(), done.clone(), agent.clone());
        load.push(tokio::spawn(async move {
            let mut bad = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match status_with(port, &agent).await {
                    200 => {}
                    other => bad.push(other),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            bad
        }));
    }
    let more = |n: u32| {
        let done = done.clone();
        async move {
            let target = done.load(Ordering::Relaxed) + n;
            let started = Instant::now();
            while done.load(Ordering::Relaxed) < target {
                assert!(started.elapsed() < Duration::from_secs(20), "load stalled");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    more(50).await;
    let add = [
        "provider",
        "key",
        "add",
        "llm",
        "--id",
        "k2",
        "--value-env",
        "NEW_KEY",
        "--weight",
        "1",
    ];
    cli(&a1, &root, &add, &[("NEW_KEY", k2)]);
    more(100).await;
    cli(
        &a1,
        &root,
        &["key", "set", "llm", "k1", "--weight", "0"],
        &[],
    );
    more(100).await;
    cli(&a1, &root, &["provider", "key", "remove", "llm", "k1"], &[]);
    more(100).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for l in load {
        failures.extend(l.await.unwrap());
    }
    let total = done.load(Ordering::Relaxed);
    eprintln!(
        "key rotation under load: {total} requests, {} non-2xx",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} non-2xx during rotation: {failures:?}",
        failures.len()
    );
    assert!(mock.seen(&format!("authorization: Bearer {k2}")).await > 0);
    let secrets = cli(&a1, &root, &["secret", "list"], &[]);
    assert!(
        secrets.contains("LLM_K2_KEY") && secrets.contains("managed-by=sluice"),
        "{secrets}"
    );

    // Propagation: write → serving on both data planes.
    let mut delays = Vec::new();
    for i in 0..30 {
        let started = Instant::now();
        let (s, v) = api(
            &a1,
            &root,
            "POST",
            "/v1/tokens",
            Some(&json!({"name": format!("p{i}")}).to_string()),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let rev = v["revision"].as_u64().unwrap();
        for dp in [&dp1, &dp2] {
            until_revision(&dp.admin_url(), rev).await;
        }
        delays.push(started.elapsed());
    }
    delays.sort();
    eprintln!(
        "revision propagation to both data planes (30 writes): p50 {:?}, p90 {:?}, max {:?}",
        delays[14], delays[26], delays[29]
    );
    assert!(delays[29] < Duration::from_secs(2));

    // A revision one data plane cannot build (its file clashes with it): that data plane keeps
    // serving and persisting its last good state, the other applies it; both catch up after.
    let before = serving_revision(&dp2.admin_url()).await;
    let clash =
        json!({"name": "clash", "kind": "openai", "base_url": mock.url(), "credentials": "byok"});
    let (s, v) = api(
        &a1,
        &root,
        "POST",
        "/v1/providers",
        Some(&clash.to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let bad_rev = v["revision"].as_u64().unwrap();
    until_revision(&dp1.admin_url(), bad_rev).await;
    let started = Instant::now();
    while dp2
        .metric("sluice_config_reload_total{result=\"invalid\"}")
        .await
        < 1.0
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "dp2 never refused it"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(serving_revision(&dp2.admin_url()).await, before);
    assert_eq!(status_with(dp2.port, &agent).await, 200);
    let persisted: Value = serde_json::from_slice(
        &std::fs::read(dp2.dir.path().join("data/control-snapshot.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(persisted["revision"].as_u64(), Some(before));
    let (s, v) = api(&a1, &root, "DELETE", "/v1/providers/clash", None).await;
    assert_eq!(s, 200, "{v}");
    let fixed = v["revision"].as_u64().unwrap();
    until_revision(&dp2.admin_url(), fixed).await;

    // No plaintext key in any database row.
    let rows = db.bodies();
    assert!(rows.contains("LLM_K1") || rows.contains("LLM_K2_KEY"));
    assert!(
        !rows.contains(k1) && !rows.contains(k2),
        "plaintext key in the database"
    );

    // The control plane goes away: the data planes keep serving, and say they are not in sync.
    drop(cp1);
    drop(cp2);
    assert_eq!(status_with(dp1.port, &agent).await, 200);
    assert_eq!(status_with(dp2.port, &agent).await, 200);
    let started = Instant::now();
    while dp1.metric("sluice_config_synchronized").await != 0.0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still synchronized?"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A data plane restarted meanwhile comes up from its persisted snapshot.
    dp1.relaunch();
    assert_eq!(
        status_with(dp1.port, &agent).await,
        200,
        "{}",
        dp1.proc.log_text()
    );
    assert_eq!(dp1.metric("sluice_config_synchronized").await, 0.0);
    let persisted =
        std::fs::read_to_string(dp1.dir.path().join("data/control-snapshot.json")).unwrap();
    assert!(
        persisted.contains("LLM_K2_KEY") && !persisted.contains("MCP_ONLY"),
        "the feed carries the gateway's secrets only"
    );
    assert!(!dp1.dir.path().join("data/master.key").exists());
    // The built-in issuer's keys reach data planes as public halves only, and are served.
    let dump: Value = serde_json::from_str(&persisted).unwrap();
    let keys: Vec<&Value> = dump["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "signing_key")
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "one signing key however many replicas started"
    );
    assert!(keys[0]["body"]["jwk"]["x"].is_string(), "{}", keys[0]);
    assert!(
        keys[0]["body"].get("sealed").is_none(),
        "a signing key's private half reached a data plane"
    );
    let jwks: Value = http_get(format!("http://127.0.0.1:{}/oauth2/jwks", dp1.port))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], keys[0]["body"]["kid"], "{jwks}");
    assert!(
        !persisted.contains(k2),
        "plaintext key in the persisted snapshot"
    );
    // Restarted with another token, the persisted state does not open: the data plane still
    // comes up (from its file), not ready, waiting for its control plane.
    let other = [
        "--control-plane",
        a1.as_str(),
        "--token",
        "sluice_not_the_same_token",
    ];
    dp1.relaunch_with(&other);
    assert_eq!(readyz(&dp1.admin_url()).await["status"], "starting");
    assert!(
        dp1.proc
            .log_text()
            .contains("persisted control-plane state does not build"),
        "{}",
        dp1.proc.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_and_feed_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let issued =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (
        certs.path().join("admin.pem"),
        certs.path().join("admin.key"),
    );
    std::fs::write(&cert, issued.cert.pem()).unwrap();
    std::fs::write(&key, issued.key_pair.serialize_pem()).unwrap();

    // A control plane whose admin listener speaks TLS.
    let mut cp = Sluice::start_control_plane(&[("SLUICE_MASTER_KEY", MASTER)], &[]);
    let root = cp.admin_token();
    cp.stop();
    let admin_line = format!("  admin: 127.0.0.1:{}\n", cp.admin);
    let tls = format!(
        "{admin_line}  admin_tls: {{ cert: {}, key: {} }}\n",
        cert.display(),
        key.display()
    );
    let text = std::fs::read_to_string(&cp.config).unwrap();
    std::fs::write(&cp.config, text.replace(&admin_line, &tls)).unwrap();
    cp.relaunch();
    let https = format!("https://127.0.0.1:{}", cp.admin);

    // Plain HTTP gets no answer; the CLI over HTTPS trusts the certificate through SSL_CERT_FILE.
    let plain = http_get(format!("http://127.0.0.1:{}/healthz", cp.admin)).await;
    assert!(!plain.is_ok_and(|r| r.status().is_success()));
    let trust = [("SSL_CERT_FILE", cert.to_str().unwrap())];
    cli(
        &https,
        &root,
        &["owner", "create", "edge", "--role", "dataplane"],
        &trust,
    );
    let created: Value = serde_json::from_str(&cli(
        &https,
        &root,
        &["token", "create", "--owner", "edge", "-o", "json"],
        &trust,
    ))
    .unwrap();
    let dp_token = created["token"].as_str().unwrap().to_owned();

    // A data plane follows it over HTTPS.
    let dp = Sluice::start_args(
        "",
        &trust,
        &["--control-plane", &https, "--token", &dp_token],
    );
    until_revision(&dp.admin_url(), created["revision"].as_u64().unwrap()).await;

    // A key that does not match its certificate is named by `sluice check`.
    let other = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
    std::fs::write(&key, other.key_pair.serialize_pem()).unwrap();
    let out = Command::new(sluice_bin())
        .args(["check", "--config"])
        .arg(&cp.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("listeners.admin_tls") && text.contains("do not match"),
        "{text}"
    );
}

/// What the rogue control plane answers one feed request with.
enum Answer {
    /// These bytes, as they are.
    Raw(Vec<u8>),
    /// A 200 with this body, signed by `key` for the request's nonce.
    Signed(Vec<u8>, std::sync::Arc<ring::signature::Ed25519KeyPair>),
}

/// A control plane under the test's control: each feed request gets the next queued answer, or
/// a 304 signed with `key` for its nonce when none is queued (unsigned while `unsigned_304`);
/// while `down`, connections are closed unanswered.
struct Rogue {
    port: u16,
    answers: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Answer>>>,
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    unsigned_304: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn query_param(head: &str, name: &str) -> String {
    let target = head.split_whitespace().nth(1).unwrap_or_default();
    let url = reqwest::Url::parse(&format!("http://x{target}")).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn sign_feed(
    key: &ring::signature::Ed25519KeyPair,
    nonce: &str,
    status: u16,
    body: &[u8],
) -> String {
    use base64::Engine;
    let message = sluice::control::crypto::feed_message(nonce, status, body);
    base64::engine::general_purpose::STANDARD.encode(key.sign(&message))
}

impl Rogue {
    fn start(key: std::sync::Arc<ring::signature::Ed25519KeyPair>) -> Rogue {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let rogue = Rogue {
            port,
            answers: Default::default(),
            served: Default::default(),
            down: Default::default(),
            unsigned_304: Default::default(),
        };
        let (answers, served, down, unsigned_304) = (
            rogue.answers.clone(),
            rogue.served.clone(),
            rogue.down.clone(),
            rogue.unsigned_304.clone(),
        );
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                if down.load(Ordering::SeqCst) {
                    continue;
                }
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let nonce = query_param(&head, "nonce");
                let answer = match answers.lock().unwrap().pop_front() {
                    Some(Answer::Raw(bytes)) => bytes,
                    Some(Answer::Signed(body, key)) => {
                        feed_answer(&body, Some(&sign_feed(&key, &nonce, 200, &body)))
                    }
                    None if unsigned_304.load(Ordering::SeqCst) => {
                        b"HTTP/1.1 304 Not Modified\r\nconnection: close\r\n\r\n".to_vec()
                    }
                    None => {
                        let after = query_param(&head, "after");
                        let sig = sign_feed(&key, &nonce, 304, after.as_bytes());
                        format!("HTTP/1.1 304 Not Modified\r\nx-sluice-feed-signature: {sig}\r\nconnection: close\r\n\r\n").into_bytes()
                    }
                };
                let _ = s.write_all(&answer);
                served.fetch_add(1, Ordering::SeqCst);
            }
        });
        rogue
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn queue(&self, answer: Answer) {
        self.answers.lock().unwrap().push_back(answer);
    }

    /// Waits until every queued answer was served, and one request more (the plane has acted
    /// on the last of them).
    async fn until_served(&self) {
        use std::sync::atomic::Ordering;
        for _ in 0..1000 {
            if self.answers.lock().unwrap().is_empty() {
                let heard = self.served.load(Ordering::SeqCst);
                for _ in 0..1000 {
                    if self.served.load(Ordering::SeqCst) > heard {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the data plane stopped asking");
    }
}

fn feed_answer(body: &[u8], signature: Option<&str>) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(sig) = signature {
        out += &format!("x-sluice-feed-signature: {sig}\r\n");
    }
    out += "\r\n";
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The feed's answer for `token` after `after` (the body).
async fn feed(admin: &str, token: &str, after: u64) -> Vec<u8> {
    let r = client()
        .get(format!("{admin}/v1/snapshot?after={after}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-sluice-feed-signature"));
    r.bytes().await.unwrap().to_vec()
}

/// Issue 27, findings 6, 7 and 8. Data planes took any feed (unsigned, replayed, revisions
/// going back, unbounded), served revoked tokens forever once cut off and said they were ready
/// with no state at all; an admin read the "write-only" gateway secrets from the feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_trusts_only_its_control_planes_signed_fresh_feed() {
    let mock = Mock::start(&[]);
    let cp = Sluice::start_args("", &[("SLUICE_MASTER_KEY", MASTER)], &[]);
    let (a, root) = (cp.admin_url(), cp.admin_token());
    let secret = json!({"name": "LLM_K", "value": "sk-gateway-secret-0001"});
    assert_eq!(
        api(&a, &root, "POST", "/v1/secrets", Some(&secret.to_string()))
            .await
            .0,
        201
    );
    let provider = json!({"name": "llm", "kind": "openai", "base_url": mock.url(), "keys": [{"id": "k", "secret_ref": "secret:LLM_K"}]});
    api(
        &a,
        &root,
        "POST",
        "/v1/providers",
        Some(&provider.to_string()),
    )
    .await;
    let route = json!({"prefix": "/llm", "provider": "llm", "auth": "token"});
    api(&a, &root, "POST", "/v1/routes", Some(&route.to_string())).await;
    let dp_token = new_token_for(&a, &root, "edge", Some("dataplane")).await;

    // Finding 7: an admin reading the feed gets no secret; the data plane gets it sealed.
    let admin_body = feed(&a, &root, 0).await;
    let dp_body = feed(&a, &dp_token, 0).await;
    let secrets = |body: &[u8]| {
        let v: Value = serde_json::from_slice(body).unwrap();
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "secret")
            .count()
    };
    assert_eq!(secrets(&admin_body), 0);
    assert_eq!(secrets(&dp_body), 1);
    let audit = cp.dir.path().join("data/audit.jsonl");
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let reads: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["event"] == "feed.read")
            .collect();
        if reads.len() >= 2 {
            assert_eq!(reads[0]["role"], "admin", "{text}");
            assert_eq!(
                (reads[0]["secrets"].as_u64(), reads[1]["secrets"].as_u64()),
                (Some(0), Some(1))
            );
            assert_eq!(reads[1]["role"], "dataplane");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "feed reads not audited: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The key data planes pin; the control plane's key (the test holds its master key, as a
    // compromised replica would) signs an older and a newer state.
    let (s, key) = api(&a, "", "GET", "/v1/snapshot/key", None).await;
    assert_eq!(s, 200, "{key}");
    let pin = key["public_key"].as_str().unwrap().to_owned();
    let master =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, MASTER).unwrap();
    let real = std::sync::Arc::new(
        sluice::control::crypto::MasterKey::from_bytes(&master)
            .unwrap()
            .feed_signer()
            .unwrap(),
    );
    assert_eq!(sluice::control::crypto::feed_public_key(&real), pin);
    let old_body = feed(&a, &dp_token, 0).await;
    let old_rev = serde_json::from_slice::<Value>(&old_body).unwrap()["revision"]
        .as_u64()
        .unwrap();
    let agent = new_token_for(&a, &root, "agent", None).await;
    let new_body = feed(&a, &dp_token, old_rev).await;
    let new_rev = serde_json::from_slice::<Value>(&new_body).unwrap()["revision"]
        .as_u64()
        .unwrap();

    // Finding 8: a data plane pinned to that key, following a rogue control plane.
    let rogue = Rogue::start(real.clone());
    let tampered = String::from_utf8(new_body.clone())
        .unwrap()
        .replace(&format!("\"revision\":{new_rev}"), "\"revision\":100")
        .into_bytes();
    let other_key = std::sync::Arc::new(
        ring::signature::Ed25519KeyPair::from_seed_unchecked(&[9; 32]).unwrap(),
    );
    rogue.queue(Answer::Raw(feed_answer(&tampered, None)));
    rogue.queue(Answer::Signed(tampered.clone(), other_key));
    // A genuine answer replayed: signed by the right key, but for another request's nonce.
    let replayed = sign_feed(&real, "00112233445566778899aabbccddeeff", 200, &new_body);
    rogue.queue(Answer::Raw(feed_answer(&new_body, Some(&replayed))));
    // Larger than a data plane reads: refused from its length alone.
    rogue.queue(Answer::Raw(
        b"HTTP/1.1 200 OK\r\ncontent-length: 70000000\r\nx-sluice-feed-signature: x\r\nconnection: close\r\n\r\n".to_vec(),
    ));
    let stale = "  control_plane_max_staleness_seconds: 2\n  control_plane_stale: refuse\n";
    let dp = Sluice::start_args(
        stale,
        &[("SLUICE_CONTROL_PLANE_KEY", pin.as_str())],
        &["--control-plane", &rogue.url(), "--token", &dp_token],
    );
    rogue.until_served().await;
    // Heard from (a signed 304), but no state yet: not ready.
    assert_eq!(readyz(&dp.admin_url()).await["status"], "starting");
    assert_eq!(dp.metric("sluice_control_revision").await, 0.0);
    let log = dp.proc.log_text();
    assert_eq!(
        log.matches("not signed by the control plane's feed key")
            .count(),
        2,
        "{log}"
    );
    for refusal in ["unsigned", "larger than"] {
        assert!(log.contains(refusal), "{refusal}: {log}");
    }

    // The newer state applies; the older one after it, signed alike, does not.
    rogue.queue(Answer::Signed(new_body.clone(), real.clone()));
    until_revision(&dp.admin_url(), new_rev).await;
    assert_eq!(status_with(dp.port, &agent).await, 200);
    rogue.queue(Answer::Signed(old_body.clone(), real.clone()));
    rogue.until_served().await;
    assert_eq!(serving_revision(&dp.admin_url()).await, new_rev);
    assert!(dp.proc.log_text().contains("revisions never go back"));

    // Finding 6: answered only by unsigned 304s (a man in the middle), or cut off, for longer
    // than allowed, the data plane is not ready and refuses (`control_plane_stale: refuse`);
    // heard from again, it serves.
    for cut in ["unsigned 304s", "down"] {
        let flag = if cut == "down" {
            &rogue.down
        } else {
            &rogue.unsigned_304
        };
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        let started = Instant::now();
        while readyz(&dp.admin_url()).await["status"] == "ready" {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{cut}: still ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = client()
            .post(dp.url("/llm/v1/chat/completions"))
            .bearer_auth(&agent)
            .body(CHAT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{cut}");
        assert_eq!(r.headers()["x-sluice-error"], "control_plane_stale");
        assert!(dp.metric("sluice_control_plane_staleness_seconds").await >= 2.0);
        flag.store(false, std::sync::atomic::Ordering::SeqCst);
        until_status(dp.port, &agent, 200).await;
        assert_eq!(readyz(&dp.admin_url()).await["status"], "ready");
    }
}
