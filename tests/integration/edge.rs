//! The public edge: HTTPS and HTTP/2 on the proxy listener for real clients (curl, the
//! openai and anthropic SDKs, httpx with HTTP/2, Node's fetch), certificates chosen by SNI and
//! replaced under load without a failed handshake, HTTP/2 floods refused, and the client's
//! address from a trusted load balancer's PROXY protocol header.

use crate::common::*;
use crate::sdk::{python, run_with_env};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `sluice tls self-signed` into `dir`: (ca.pem, cert.pem, key.pem).
fn self_signed(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let out = Command::new(sluice_bin())
        .args(["tls", "self-signed", "--out"])
        .arg(dir)
        .args(names)
        .output()
        .expect("sluice tls self-signed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("proxy_tls:"), "{text}");
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

fn config(mock: &Mock, server: &str) -> String {
    format!(
        r#"server:
{server}audit:
  sink: file
providers:
  - {{ name: openai, kind: openai, base_url: "{url}", keys: [{{ id: o, secret_ref: "env:KEY_O" }}] }}
  - {{ name: anthropic, kind: anthropic, base_url: "{url}", keys: [{{ id: a, secret_ref: "env:KEY_A" }}] }}
routes:
  - {{ prefix: /openai, provider: openai }}
  - {{ prefix: /anthropic, provider: anthropic }}
tokens:
  - {sha}
"#,
        url = mock.url(),
        sha = tok().record
    )
}

const KEYS: [(&str, &str); 2] = [
    ("KEY_O", "sk-openai-pool-000000"),
    ("KEY_A", "sk-ant-pool-0000000"),
];

const CHAT: &str = r#"{"model":"gpt-mock","messages":[{"role":"user","content":"hello"}]}"#;
const STREAM: &str =
    r#"{"model":"gpt-mock","stream":true,"messages":[{"role":"user","content":"hello"}]}"#;

fn tls_yaml(cert: &Path, key: &Path) -> String {
    format!("{{ cert: {}, key: {} }}", cert.display(), key.display())
}

/// curl over HTTPS with `version` (`--http2`, `--http1.1`): (HTTP version, body).
fn curl(ca: &Path, version: &str, url: &str, body: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-N", version, "--cacert"])
        .arg(ca)
        .args(["-H", &format!("authorization: Bearer {}", tok().token)])
        .args(["-H", "content-type: application/json", "--data", body])
        .args(["-w", "\n%{http_version}", url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, version) = text.rsplit_once('\n').unwrap_or(("", ""));
    (version.to_owned(), body.to_owned())
}

fn edge_client(args: &[&str], ca: &Path) -> Value {
    run_with_env(
        "edge_client.py",
        args,
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    )
}

#[tokio::test]
async fn https_and_http2_serve_real_clients() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = self_signed(certs.path(), &["localhost", "127.0.0.1"]);
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_tls(&config(&mock, ""), &KEYS, &tls_yaml(&cert, &key));
    let chat_url = sluice.https_url("/openai/v1/chat/completions");

    // curl: HTTP/2 by ALPN, and HTTP/1.1 when asked; SSE streamed on both.
    let (version, body) = curl(&ca, "--http2", &chat_url, CHAT);
    assert_eq!(version, "2");
    assert!(body.contains("tok0 tok1"), "{body}");
    let (version, body) = curl(&ca, "--http2", &chat_url, STREAM);
    assert_eq!(version, "2");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let (version, body) = curl(&ca, "--http1.1", &chat_url, STREAM);
    assert_eq!(version, "1.1");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");

    // The official SDKs, trusting the CA through SSL_CERT_FILE.
    let ca_env = [("SSL_CERT_FILE", ca.to_str().unwrap())];
    let base = sluice.https_url("/openai/v1");
    let out = run_with_env("openai_client.py", &[&base, &tok().token], &ca_env);
    assert_eq!(out["chat"], "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ");
    assert_eq!(out["stream_usage"], 8);
    let base = sluice.https_url("/anthropic");
    let out = run_with_env("anthropic_client.py", &[&base, &tok().token], &ca_env);
    assert!(out.to_string().contains("tok0"), "{out}");

    // httpx with HTTP/2: one connection, a chat and a stream over h2.
    let out = edge_client(&["httpx", &chat_url, &tok().token], &ca);
    assert_eq!(out["http_version"], "HTTP/2", "{out}");
    assert_eq!(out["stream_version"], "HTTP/2", "{out}");
    assert_eq!(out["chat"], "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ");
    assert!(out["stream_events"].as_u64().unwrap() >= 9, "{out}");

    // Node's fetch, trusting the CA through NODE_EXTRA_CA_CERTS.
    let script = format!(
        "fetch('{chat_url}', {{method: 'POST', headers: {{authorization: 'Bearer {}', 'content-type': 'application/json'}}, body: '{CHAT}'}}).then(r => r.json()).then(j => console.log(j.choices[0].message.content))",
        tok().token
    );
    let out = Command::new("node")
        .args(["-e", &script])
        .env("NODE_EXTRA_CA_CERTS", &ca)
        .output()
        .expect("node");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Plain HTTP to the TLS port gets no answer; nothing failed above.
    let plain = reqwest::Client::new()
        .get(sluice.url("/openai/v1/models"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    let h2 = "sluice_tls_handshakes_total{listener=\"proxy\",result=\"h2\"}";
    let h1 = "sluice_tls_handshakes_total{listener=\"proxy\",result=\"http/1.1\"}";
    assert!(sluice.metric(h2).await >= 3.0);
    assert!(sluice.metric(h1).await >= 3.0);
    let expiry = "sluice_tls_certificate_expiry_timestamp_seconds{certificate=\"localhost\",listener=\"proxy\"}";
    assert!(sluice.metric(expiry).await > unix_now() as f64 + 80.0 * 86400.0);
    // Every request reached the upstream with the pool's key, none with the client's token.
    assert!(!mock.stats().await["credentials"]
        .to_string()
        .contains(&tok().token));
}

/// Runs fresh TLS handshakes one after another in a child process until `stop` exists.
fn handshake_loop(port: u16, ca: &Path, stop: &Path) -> std::process::Child {
    Command::new(python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/edge_client.py"))
        .args(["handshakes", &port.to_string()])
        .arg(stop)
        .env("SSL_CERT_FILE", ca)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python")
}

#[tokio::test]
async fn sni_chooses_and_certificates_rotate_under_load_without_a_failed_handshake() {
    let certs = tempfile::tempdir().unwrap();
    let live = certs.path().join("live");
    let (ca1, cert, key) = self_signed(&live, &["localhost", "127.0.0.1"]);
    let (_, other_cert, other_key) = self_signed(&certs.path().join("other"), &["other.test"]);
    let (ca2, next_cert, next_key) = self_signed(&certs.path().join("next"), &["localhost"]);
    // Clients trust both CAs: the rotation moves from the first to the second.
    let bundle = certs.path().join("bundle.pem");
    let both = std::fs::read_to_string(&ca1).unwrap() + &std::fs::read_to_string(&ca2).unwrap();
    std::fs::write(&bundle, both).unwrap();
    let tls = format!(
        "{{ cert: {}, key: {}, sni: [{{ cert: {}, key: {} }}] }}",
        cert.display(),
        key.display(),
        other_cert.display(),
        other_key.display()
    );
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_tls(&config(&mock, ""), &KEYS, &tls);
    let port = sluice.port.to_string();

    // SNI: a certificate's name gets it; no match gets the first (default) one.
    let names = |name: &str| edge_client(&["sni", &port, name], &bundle)["names"].clone();
    assert_eq!(names("other.test"), serde_json::json!(["other.test"]));
    assert_eq!(names("localhost"), serde_json::json!(["localhost"]));
    assert_eq!(names("unknown.test"), serde_json::json!(["localhost"]));

    // Under load (h2load on kept connections, and a loop of fresh handshakes), the key and
    // the certificate are replaced as a careless operator would: the key first, then the
    // certificate, in place. No handshake fails and the new certificate ends up serving.
    let stop = certs.path().join("stop");
    let looping = handshake_loop(sluice.port, &bundle, &stop);
    let h2load = Command::new("h2load")
        .args(["-c", "4", "-m", "4", "-D", "4", "-H"])
        .arg(format!("authorization: Bearer {}", tok().token))
        .arg(sluice.https_url("/openai/v1/models"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("h2load (nghttp2-client)");
    tokio::time::sleep(Duration::from_millis(800)).await;
    std::fs::copy(&next_key, &key).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    std::fs::copy(&next_cert, &cert).unwrap();
    let ok = "sluice_tls_reload_total{listener=\"proxy\",result=\"ok\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    while sluice.metric(ok).await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not loaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    std::fs::write(&stop, "").unwrap();
    let out = looping.wait_with_output().unwrap();
    let handshakes: Value = serde_json::from_slice(&out.stdout).unwrap();
    let h2load = h2load.wait_with_output().unwrap();
    let h2load = String::from_utf8_lossy(&h2load.stdout);

    assert_eq!(handshakes["failed"], 0, "{handshakes}");
    let leaves = handshakes["leaves"].as_object().unwrap();
    assert_eq!(
        leaves.len(),
        2,
        "old and new certificate both served: {handshakes}"
    );
    assert!(handshakes["ok"].as_u64().unwrap() >= 20, "{handshakes}");
    assert!(
        h2load.contains(" 0 failed, 0 errored, 0 timeout"),
        "{h2load}"
    );
    assert_eq!(names("localhost"), serde_json::json!(["localhost"]));
    assert_eq!(
        sluice
            .metric("sluice_tls_handshakes_total{listener=\"proxy\",result=\"failed\"}")
            .await,
        0.0
    );

    // The admin API reloads too: the certificates now served, each with its expiry.
    let admin = sluice.admin_url();
    let (status, _) = api(&admin, "", "POST", "/v1/tls/reload", None).await;
    assert_eq!(status, 401);
    let root = sluice.admin_token();
    let (status, body) = api(&admin, &root, "POST", "/v1/tls/reload", None).await;
    assert_eq!(status, 200, "{body}");
    let served: Vec<&str> = body["listeners"][0]["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(served, ["localhost", "other.test"], "{body}");
    assert!(
        body["listeners"][0]["certificates"][0]["expires_at"]
            .as_i64()
            .unwrap()
            > 0
    );
    // And its CLI verb.
    let out = cli(&admin, &root, &["tls", "reload"], &[]);
    assert!(out.contains("proxy") && out.contains("other.test"), "{out}");
    // A key that is not the certificate's: refused, and the served certificate stays.
    std::fs::copy(&other_key, &key).unwrap();
    let (status, body) = api(&admin, &root, "POST", "/v1/tls/reload", None).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "certificates_not_loaded", "{body}");
    assert!(!body.to_string().contains("PRIVATE KEY"), "{body}");
    assert_eq!(names("localhost"), serde_json::json!(["localhost"]));
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn http2_floods_are_refused_cheaply() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = self_signed(certs.path(), &["localhost"]);
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_tls(&config(&mock, ""), &KEYS, &tls_yaml(&cert, &key));
    let port = sluice.port.to_string();
    let chat_url = sluice.https_url("/openai/v1/chat/completions");
    let before = rss_kib(sluice.proc.child.id());
    const ENHANCE_YOUR_CALM: u64 = 11;

    // Rapid reset (CVE-2023-44487): 1000 requests each cancelled at once. The connection is
    // closed with ENHANCE_YOUR_CALM and hardly any reached the upstream.
    let out = edge_client(&["flood", "rapid-reset", &port, &tok().token], &ca);
    assert_eq!(out["goaway"], ENHANCE_YOUR_CALM, "{out}");
    let upstream = mock.stats().await["requests"].as_u64().unwrap_or(0);
    assert!(
        upstream < 50,
        "{upstream} of 1000 cancelled requests went upstream"
    );

    // CONTINUATION flood (CVE-2024-27316): a header block that never ends is cut at the
    // header-list limit, not buffered.
    let out = edge_client(&["flood", "continuation", &port, &tok().token], &ca);
    assert_eq!(out["goaway"], ENHANCE_YOUR_CALM, "{out}");
    assert!(out["sent"].as_u64().unwrap() < 16 << 20, "{out}");

    // Empty DATA frames without end: closed.
    let out = edge_client(&["flood", "empty-data", &port, &tok().token], &ca);
    assert_eq!(out["goaway"], ENHANCE_YOUR_CALM, "{out}");

    // PING and SETTINGS floods: one answer is pending at a time, so the server stops reading
    // a client that does not read its answers (or closes it); memory does not follow the flood.
    for kind in ["ping", "settings"] {
        let out = edge_client(&["flood", kind, &port, &tok().token], &ca);
        let refused = out["stopped_by"].is_string() || out["goaway"].is_u64();
        assert!(refused, "{kind} flood ran to its end: {out}");
    }
    let after = rss_kib(sluice.proc.child.id());
    assert!(
        after < before + 32 * 1024,
        "resident memory grew from {before} KiB to {after} KiB"
    );
    // And other clients were served all along.
    let (version, body) = curl(&ca, "--http2", &chat_url, CHAT);
    assert_eq!(version, "2");
    assert!(body.contains("tok0"), "{body}");
}

/// PROXY protocol v1/v2 header bytes (hex) for a client at `ip:port` (IPv4).
fn proxy_header(version: u8, ip: [u8; 4], port: u16) -> String {
    let bytes = match version {
        1 => format!(
            "PROXY TCP4 {}.{}.{}.{} 10.0.0.1 {port} 443\r\n",
            ip[0], ip[1], ip[2], ip[3]
        )
        .into_bytes(),
        _ => {
            let mut b = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            b.extend([0x21, 0x11, 0, 12]);
            b.extend(ip);
            b.extend([10, 0, 0, 1]);
            b.extend(port.to_be_bytes());
            b.extend(443u16.to_be_bytes());
            b
        }
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A trusted load balancer's PROXY header names the client (before TLS, v1 and v2), in the
/// audit record; the same header from anyone else is not believed, and a trusted peer that
/// sends none is closed.
#[tokio::test]
async fn proxy_protocol_names_the_client_behind_a_trusted_balancer() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = self_signed(certs.path(), &["localhost"]);
    let mock = Mock::start(&[]);
    // The "load balancer" connects from 127.0.0.2; clients from 127.0.0.1.
    let dynamic = config(&mock, "  proxy_protocol_from: [127.0.0.2]\n");
    let sluice = Sluice::start_tls(&dynamic, &KEYS, &tls_yaml(&cert, &key));
    let port = sluice.port.to_string();
    let send = |source: &str, header: String, id: &str| {
        edge_client(
            &["proxied", &port, source, &header, "1", &tok().token, id],
            &ca,
        )["status"]
            .clone()
    };
    let client_of = |id: &'static str| {
        let sluice = &sluice;
        async move {
            wait_audit(sluice, |r| r["request_id"] == id)
                .await
                .map(|r| r["client"].clone())
        }
    };
    let proxied = [
        (1, [203, 0, 113, 9], "pp-v1", "203.0.113.9"),
        (2, [198, 51, 100, 20], "pp-v2", "198.51.100.20"),
    ];
    for (version, ip, id, client) in proxied {
        assert_eq!(
            send("127.0.0.2", proxy_header(version, ip, 40000), id),
            "200"
        );
        assert_eq!(client_of(id).await.unwrap(), client);
    }
    // From a peer that is not a trusted balancer the header is not read: the TLS handshake
    // fails on it, and nobody is recorded as 203.0.113.9.
    assert_eq!(
        send(
            "127.0.0.1",
            proxy_header(1, [203, 0, 113, 66], 40002),
            "pp-spoof"
        ),
        Value::Null
    );
    assert_eq!(client_of("pp-spoof").await, None);
    // A trusted balancer's connection without a header is closed.
    assert_eq!(send("127.0.0.2", String::new(), "pp-none"), Value::Null);
    let invalid = "sluice_proxy_protocol_total{listener=\"proxy\",result=\"invalid\"}";
    until_metric(&sluice, invalid, 1.0).await;
    assert_eq!(
        sluice
            .metric("sluice_proxy_protocol_total{listener=\"proxy\",result=\"ok\"}")
            .await,
        2.0
    );

    // A bad entry, and a certificate file that is not there, are named by field and line.
    let check = |yaml: &str| {
        let bad = sluice.dir.path().join("bad.yaml");
        std::fs::write(&bad, yaml).unwrap();
        let out = Command::new(sluice_bin())
            .args(["check", "--config"])
            .arg(&bad)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let listeners =
        "listeners:\n  proxy: 127.0.0.1:0\n  proxy_tls: { cert: nowhere.pem, key: nowhere.key }\n";
    let text = check(&format!(
        "{listeners}server:\n  proxy_protocol_from: [10.0.0.0/33]\n"
    ));
    assert!(text.contains(":5: server.proxy_protocol_from[0]"), "{text}");
    let text = check(listeners);
    assert!(
        text.contains(":3: listeners.proxy_tls") && text.contains("nowhere.pem"),
        "{text}"
    );
}

/// `server.h2c`: HTTP/2 with prior knowledge on a plain listener, HTTP/1.1 still served there.
#[tokio::test]
async fn h2c_prior_knowledge_on_a_plain_listener() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&config(&mock, "  h2c: true\n"), &KEYS);
    let url = sluice.url("/openai/v1/chat/completions");
    let run = |version: &str, body: &str| {
        let out = Command::new("curl")
            .args(["-sS", "-N", version])
            .args(["-H", &format!("authorization: Bearer {}", tok().token)])
            .args(["-H", "content-type: application/json", "--data", body])
            .args(["-w", "\n%{http_version}", &url])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = run("--http2-prior-knowledge", STREAM);
    assert!(out.ends_with("data: [DONE]\n\n\n2"), "{out}");
    let out = run("--http1.1", CHAT);
    assert!(out.contains("tok0") && out.ends_with("\n1.1"), "{out}");
    assert!(
        sluice
            .metric("sluice_proxy_path_total{path=\"pingora\"}")
            .await
            >= 1.0
    );
}

/// `per: source` on Sluice's own unauthenticated endpoints: each client address (here named
/// by a trusted load balancer's `X-Forwarded-For`) has its own allowance, with `Retry-After`.
#[tokio::test]
async fn per_source_limits_on_the_unauthenticated_endpoints() {
    let mock = Mock::start(&[]);
    let dynamic = format!(
        "{}limits:\n  - {{ name: issuer-per-client, endpoint: issuer, per: source, requests_per_minute: 2 }}\n",
        config(&mock, "  trusted_proxies: [127.0.0.0/8]\n")
    );
    let sluice = Sluice::start_with_env(&dynamic, &KEYS);
    let url = sluice.url("/.well-known/oauth-authorization-server");
    let get = |client: &'static str| {
        let url = url.clone();
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .header("x-forwarded-for", client)
                .send()
                .await
                .unwrap();
            let retry = r.headers().get("retry-after").cloned();
            (r.status().as_u16(), retry)
        }
    };
    assert_ne!(get("203.0.113.1").await.0, 429);
    assert_ne!(get("203.0.113.1").await.0, 429);
    let (status, retry) = get("203.0.113.1").await;
    assert_eq!(status, 429);
    assert!(retry.is_some());
    // Another client is not held back by the first one's use.
    assert_ne!(get("203.0.113.2").await.0, 429);
    assert_eq!(
        sluice
            .metric(
                "sluice_limit_refusals_total{limit=\"issuer-per-client\",reason=\"rate_limited\"}"
            )
            .await,
        1.0
    );
    // The CLI names an endpoint limit as the file does.
    let admin = sluice.admin_url();
    let root = sluice.admin_token();
    let args = [
        "limit",
        "create",
        "vault-per-client",
        "--endpoint",
        "vault",
        "--per",
        "source",
        "--requests-per-minute",
        "5",
    ];
    cli(&admin, &root, &args, &[]);
    let (status, stored) = api(&admin, &root, "GET", "/v1/limits/vault-per-client", None).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["endpoint"], "vault", "{stored}");
    assert_eq!(stored["per"], "source", "{stored}");
    // Provider routes are not counted by it.
    assert_eq!(
        chat_status(
            &sluice,
            "/openai/v1/chat/completions",
            &[("x-forwarded-for", "203.0.113.1")]
        )
        .await,
        200
    );
}

/// Writes a CA (`ca.pem`) and, signed by it, a client certificate `name.pem`/`name.key`
/// for each (name, SPIFFE ID or common name).
fn client_certs(dir: &Path, clients: &[(&str, &str)]) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "test client CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, id) in clients {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        // Valid for an hour: the clock is moved past it below.
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::hours(1);
        match id.strip_prefix("spiffe://") {
            Some(_) => {
                params.subject_alt_names = vec![SanType::URI(id.to_string().try_into().unwrap())]
            }
            None => params.distinguished_name.push(DnType::CommonName, *id),
        }
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// `auth: client_cert`: the certificate verified in the handshake is the credential, its
/// SPIFFE ID or common name the principal (in the audit record); no certificate is a 401, a
/// certificate from another CA fails the handshake, and a certificate is no credential on a
/// token route nor a token on a certificate route.
#[tokio::test]
async fn client_certificates_are_a_credential() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = self_signed(certs.path(), &["localhost"]);
    let clients = certs.path().join("clients");
    std::fs::create_dir_all(&clients).unwrap();
    client_certs(
        &clients,
        &[
            ("agent", "spiffe://example.org/agent/a"),
            ("bot", "build-bot"),
        ],
    );
    let strangers = certs.path().join("strangers");
    std::fs::create_dir_all(&strangers).unwrap();
    client_certs(&strangers, &[("agent", "spiffe://example.org/agent/a")]);
    let mock = Mock::start(&[]);
    let dynamic = config(&mock, "").replace(
        "  - { prefix: /openai, provider: openai }",
        "  - { prefix: /openai, provider: openai, auth: client_cert }",
    );
    let tls = format!(
        "{{ cert: {}, key: {}, client_ca: {} }}",
        cert.display(),
        key.display(),
        clients.join("ca.pem").display()
    );
    let sluice = Sluice::start_tls(&dynamic, &KEYS, &tls);
    let post = |path: &str, id: &str, client: Option<&Path>, token: bool| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&ca)
            .args(["-H", "content-type: application/json", "--data", CHAT])
            .args(["-H", &format!("x-request-id: {id}")]);
        if let Some(c) = client {
            cmd.arg("--cert").arg(c.with_extension("pem"));
            cmd.arg("--key").arg(c.with_extension("key"));
        }
        if token {
            cmd.args(["-H", &format!("authorization: Bearer {}", tok().token)]);
        }
        let out = cmd.arg(sluice.https_url(path)).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let chat = "/openai/v1/chat/completions";
    assert_eq!(
        post(chat, "mtls-agent", Some(&clients.join("agent")), false),
        "200"
    );
    assert_eq!(
        post(chat, "mtls-bot", Some(&clients.join("bot")), false),
        "200"
    );
    let record = |id: &'static str| {
        let sluice = &sluice;
        async move { wait_audit(sluice, |r| r["request_id"] == id).await.unwrap() }
    };
    let agent = record("mtls-agent").await;
    assert_eq!(
        agent["principal"], "cert:spiffe://example.org/agent/a",
        "{agent}"
    );
    assert_eq!(agent["credential_kind"], "client_cert", "{agent}");
    assert_eq!(record("mtls-bot").await["principal"], "cert:cn:build-bot");
    // No certificate: 401, even with a valid token.
    assert_eq!(post(chat, "mtls-none", None, false), "401");
    assert_eq!(post(chat, "mtls-token", None, true), "401");
    // A certificate another CA issued: no handshake, no answer.
    assert_eq!(
        post(chat, "mtls-stranger", Some(&strangers.join("agent")), false),
        "000"
    );
    // A certificate is no credential on a token route.
    let messages = "/anthropic/v1/messages";
    assert_eq!(
        post(
            messages,
            "mtls-on-token-route",
            Some(&clients.join("agent")),
            false
        ),
        "401"
    );
    assert_eq!(
        post(
            messages,
            "token-with-cert",
            Some(&clients.join("agent")),
            true
        ),
        "200"
    );
    // The pool's key went upstream, never the client's token.
    assert!(!mock.stats().await["credentials"]
        .to_string()
        .contains(&tok().token));

    // A TLS session resumed after its certificate expired (the clock moved 2 hours) carries the
    // certificate of its first handshake: it is no credential any more.
    let advance = format!("{}/_test/clock/advance?ms=7200000", sluice.admin_url());
    let agent = clients.join("agent");
    let (cert, key) = (agent.with_extension("pem"), agent.with_extension("key"));
    let args = [
        "resume",
        &sluice.port.to_string(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        &advance,
    ];
    let out = edge_client(&args, &ca);
    assert_eq!(out["first"], "200", "{out}");
    assert_eq!(out["reused"], true, "{out}");
    assert_eq!(out["resumed"], "401", "{out}");
}

/// An HTTP/2 connection with no stream open is closed after the keep-alive timeout, and so is
/// one that agreed on `h2` and never sent its preface (Pingora patch 15), and so are streams
/// that stall (Pingora patch 16).
#[tokio::test]
async fn idle_and_stalled_http2_connections_are_closed() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = self_signed(certs.path(), &["localhost"]);
    let mock = Mock::start(&[]);
    let dynamic = config(&mock, "  keepalive_timeout_seconds: 1\n");
    let sluice = Sluice::start_tls(&dynamic, &KEYS, &tls_yaml(&cert, &key));
    let port = sluice.port.to_string();
    for preface in ["0", "1"] {
        let out = edge_client(&["idle-h2", &port, preface], &ca);
        let after = out["closed_after"].as_f64().unwrap();
        assert!(after < 5.0, "preface {preface}: open {after} s: {out}");
    }
    // Streams that stall — their client takes no answer (a zero window) or never sends the
    // body it announced — are ended after the same timeout, not held for ever.
    for kind in ["window", "body"] {
        let out = edge_client(&["stall", &port, "20", kind], &ca);
        assert_eq!(out["ended"], 20, "{kind}: {out}");
        assert!(out["after"].as_f64().unwrap() < 8.0, "{kind}: {out}");
    }
}
