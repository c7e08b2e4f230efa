//! Forward-proxy mode: curl, openssl and the openai SDK through `HTTPS_PROXY`, intercepted
//! provider hosts answered by the mock (the provider's base URL points at it: nothing leaves
//! the machine), blind tunnels to a loopback echo server, and refusals.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

const POOL_KEY: &str = "sk-pool-forward-0001";
const AGENT_KEY: &str = "sk-agent-own-key-9999";

fn config(mock: &Mock, forward: &str) -> String {
    format!(
        r#"providers:
  - name: openai
    kind: openai
    base_url: "{url}"
    intercept_hosts: [api.openai.com]
    keys: [{{ id: p, secret_ref: "env:FWD_KEY" }}]
routes:
  - {{ prefix: /openai, provider: openai }}
tokens:
  - {record}
forward:
  head_timeout_seconds: 1
  tunnel_idle_seconds: 2
{forward}
"#,
        url = mock.url(),
        record = tok().record
    )
}

fn start(mock: &Mock, forward: &str) -> Sluice {
    Sluice::start_forward(&config(mock, forward), &[("FWD_KEY", POOL_KEY)])
}

/// Saves the CA from `/ca.pem` and checks `sluice ca export` prints the same certificate.
async fn ca_file(sluice: &Sluice) -> std::path::PathBuf {
    let pem = http_get(format!("http://127.0.0.1:{}/ca.pem", sluice.admin))
        .await
        .expect("ca.pem")
        .text()
        .await
        .expect("text");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let exported = Command::new(sluice_bin())
        .args(["ca", "export", "--config"])
        .arg(&sluice.config)
        .output()
        .expect("sluice ca export");
    assert_eq!(String::from_utf8_lossy(&exported.stdout), pem);
    let path = sluice.dir.path().join("ca.pem");
    std::fs::write(&path, pem).expect("write ca");
    path
}

/// curl through the proxy; returns (exit code, stdout).
fn curl(sluice: &Sluice, ca: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-x",
            &sluice.proxy_url(),
            "--cacert",
        ])
        .arg(ca)
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn proxy_user() -> String {
    format!("any:{}", tok().token)
}

/// Writes `bytes` on a fresh connection to the forward proxy and reads until it closes.
fn raw(sluice: &Sluice, bytes: &[u8]) -> String {
    let mut s =
        TcpStream::connect(("127.0.0.1", sluice.forward.expect("forward"))).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn connect_head(target: &str, auth: Option<&str>) -> String {
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = auth {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(auth);
        head.push_str(&format!("Proxy-Authorization: Basic {basic}\r\n"));
    }
    head.push_str("\r\n");
    head
}

async fn wait_no_live_connections(sluice: &Sluice) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let live = sluice.metric("sluice_forward_tunnels").await;
        if live == 0.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{live} forward connections still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn intercepted_requests_get_pool_keys_streamed_and_not_on_kept_alive_connections() {
    let mock = Mock::start(&[]);
    let sluice = start(&mock, "");
    let ca = ca_file(&sluice).await;
    let url = "https://api.openai.com/v1/chat/completions";
    let agent_auth = format!("authorization: Bearer {AGENT_KEY}");
    let user = proxy_user();
    let common = [
        "--proxy-user",
        &user,
        "-H",
        "content-type: application/json",
        "-H",
        &agent_auth,
    ];

    let mut args = common.to_vec();
    args.extend([url, "-d", CHAT]);
    let (code, body) = curl(&sluice, &ca, &args);
    assert_eq!(code, 0, "{body}\n{}", sluice.proc.log_text());
    let json: serde_json::Value = serde_json::from_str(&body).expect(&body);
    assert!(
        json["choices"][0]["message"]["content"].is_string(),
        "{json}"
    );

    let mut args = common.to_vec();
    args.extend(["-N", url, "-d", CHAT_STREAM]);
    let (code, body) = curl(&sluice, &ca, &args);
    assert_eq!(code, 0, "{body}");
    assert!(
        body.contains("data: ") && body.trim_end().ends_with("data: [DONE]"),
        "{body}"
    );

    // Three requests on one intercepted connection: one CONNECT, three pool-keyed requests.
    let before = sluice
        .metric("sluice_forward_connects_total{outcome=\"intercepted\"}")
        .await;
    let models = "https://api.openai.com/v1/models";
    let mut args = common.to_vec();
    args.extend(["-w", "\nconnects=%{num_connects}\n", models, models, models]);
    let (code, out) = curl(&sluice, &ca, &args);
    assert_eq!(code, 0, "{out}");
    let connects: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("connects="))
        .collect();
    assert_eq!(connects, ["1", "0", "0"], "{out}");
    let after = sluice
        .metric("sluice_forward_connects_total{outcome=\"intercepted\"}")
        .await;
    assert_eq!(after - before, 1.0);

    // Every request carried the pool key; the agent's own key and the proxy credential never
    // reached the upstream.
    assert_eq!(
        mock.seen(&format!("authorization: Bearer {POOL_KEY}"))
            .await,
        5
    );
    let stats = mock.stats().await;
    assert_eq!(stats["requests"], 5, "{stats}");
    let seen = stats["credentials"].to_string();
    assert!(
        !seen.contains(AGENT_KEY) && !seen.contains("proxy-authorization"),
        "{seen}"
    );
    assert!(!seen.contains(&tok().token), "{seen}");

    // The audit record names the intercepted host and the route it was admitted as (the
    // provider's declared route).
    let audit =
        std::fs::read_to_string(sluice.dir.path().join("data/audit.jsonl")).unwrap_or_default();
    let first: serde_json::Value =
        serde_json::from_str(audit.lines().next().expect("an audit record")).expect("json");
    assert_eq!(first["route"], "/openai");
    assert_eq!(first["host"], "api.openai.com");
    assert_eq!(first["principal"], "owner:ci-bot");
    assert_eq!(first["key_id"], "p");
    wait_no_live_connections(&sluice).await;
}

#[tokio::test]
async fn openai_sdk_with_only_https_proxy_and_ssl_cert_file() {
    let mock = Mock::start(&[]);
    let sluice = start(&mock, "");
    let ca = ca_file(&sluice).await;
    let proxy = format!(
        "http://any:{}@127.0.0.1:{}",
        tok().token,
        sluice.forward.unwrap_or(0)
    );
    let out = crate::sdk::run_with_env(
        "openai_client.py",
        &["https://api.openai.com/v1", AGENT_KEY],
        &[
            ("HTTPS_PROXY", proxy.as_str()),
            ("SSL_CERT_FILE", ca.to_str().expect("utf-8 path")),
            ("NO_PROXY", ""),
        ],
    );
    assert!(out["chat"].as_str().is_some_and(|s| !s.is_empty()), "{out}");
    assert!(out["stream_usage"].as_u64().is_some_and(|n| n > 0), "{out}");
    let seen = mock.stats().await["credentials"].to_string();
    assert!(
        seen.contains(POOL_KEY) && !seen.contains(AGENT_KEY),
        "{seen}"
    );
}

#[tokio::test]
async fn refusals_and_policed_tunnels() {
    let mock = Mock::start(&[]);
    let echo = EchoServer::start();
    let policy = format!(
        "  allow_hosts: [\"127.0.0.1\", \"localhost\"]\n  ports: [443, 80, {}, {}]\n",
        echo.port, mock.port
    );
    let sluice = start(&mock, &policy);
    let user = proxy_user();

    // 407 without a credential and with a bad one, with the Basic challenge.
    for auth in [
        None,
        Some("any:sluice_wrongwrongwr_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa000000"),
        Some("any:"),
    ] {
        let resp = raw(&sluice, connect_head("api.openai.com:443", auth).as_bytes());
        assert!(resp.starts_with("HTTP/1.1 407"), "{auth:?}: {resp}");
        assert!(
            resp.contains("proxy-authenticate: Basic realm=\"sluice\""),
            "{resp}"
        );
        assert!(resp.contains("\"code\":\"invalid_api_key\""), "{resp}");
    }
    // 403: a host the policy denies, a port it does not allow, an intercepted host on another
    // port, and loopback destinations (allow-listed by name, refused after resolution).
    for (target, reason) in [
        ("example.org:443", "host_denied"),
        ("127.0.0.1:22", "port_denied"),
        ("api.openai.com:8443", "port_denied"),
        (&*format!("127.0.0.1:{}", echo.port), "private_address"),
        (&*format!("localhost:{}", echo.port), "private_address"),
    ] {
        let resp = raw(&sluice, connect_head(target, Some(&user)).as_bytes());
        assert!(resp.starts_with("HTTP/1.1 403"), "{target}: {resp}");
        assert!(
            resp.contains(&format!("x-sluice-error: {reason}")),
            "{target}: {resp}"
        );
    }
    // Plain absolute-form HTTP follows the same policy, with 407 per request.
    let resp = raw(
        &sluice,
        b"GET http://api.openai.com/v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n",
    );
    assert!(
        resp.starts_with("HTTP/1.1 407") && resp.contains("proxy-authenticate: Basic"),
        "{resp}"
    );
    let dummy_ca = sluice.dir.path().join("none.pem");
    let direct = format!("http://127.0.0.1:{}/v1/models", mock.port);
    let (_, code) = curl(
        &sluice,
        &dummy_ca,
        &[
            "--proxy-user",
            &user,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &direct,
        ],
    );
    assert_eq!(code, "403");

    // Allow loopback by CIDR (a reload): the tunnel carries bytes both ways, the plain request
    // passes through untouched, and plain HTTP to an intercepted host gets the pool key.
    sluice.rewrite_config(&config(
        &mock,
        &format!("{policy}  allow_cidrs: [127.0.0.0/8]\n"),
    ));
    sluice.wait_revision(2).await;
    let mut s = TcpStream::connect(("127.0.0.1", sluice.forward.unwrap_or(0))).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let head = connect_head(&format!("127.0.0.1:{}", echo.port), Some(&user));
    // The first tunnelled bytes ride in the same packet as the CONNECT head.
    s.write_all(format!("{head}hello").as_bytes())
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("hello") {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(sluice.metric("sluice_forward_tunnels").await >= 1.0);
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut writer = s.try_clone().expect("clone");
    let sent = payload.clone();
    let w = std::thread::spawn(move || writer.write_all(&sent).expect("write payload"));
    let mut echoed = vec![0u8; payload.len()];
    s.read_exact(&mut echoed).expect("echoed payload");
    w.join().expect("writer");
    assert!(echoed == payload, "tunnel corrupted the bytes");
    drop(s);
    wait_no_live_connections(&sluice).await;

    // A tunnel nobody uses is closed after tunnel_idle_seconds (2 s).
    let mut idle = TcpStream::connect(("127.0.0.1", sluice.forward.unwrap_or(0))).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    idle.write_all(head.as_bytes()).expect("write");
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 200"));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    wait_no_live_connections(&sluice).await;
    assert!(
        sluice
            .metric("sluice_forward_tunnel_bytes_total{direction=\"down\"}")
            .await
            >= 1_000_005.0
    );

    let before = mock.stats().await["requests"].as_u64().unwrap_or(0);
    let (_, code) = curl(
        &sluice,
        &dummy_ca,
        &[
            "--proxy-user",
            &user,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &direct,
        ],
    );
    assert_eq!(code, "200");
    let (_, code) = curl(
        &sluice,
        &dummy_ca,
        &[
            "--proxy-user",
            &user,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://api.openai.com/v1/models",
        ],
    );
    assert_eq!(code, "200");
    let stats = mock.stats().await;
    assert_eq!(
        stats["requests"].as_u64().unwrap_or(0) - before,
        2,
        "{stats}"
    );
    assert_eq!(
        mock.seen(&format!("authorization: Bearer {POOL_KEY}"))
            .await,
        1,
        "{stats}"
    );
    assert!(
        !stats["credentials"]
            .to_string()
            .contains("proxy-authorization"),
        "{stats}"
    );
}

#[tokio::test]
async fn bad_input_is_closed_cleanly() {
    let mock = Mock::start(&[]);
    let sluice = start(&mock, "");
    let ca = ca_file(&sluice).await;

    let resp = raw(
        &sluice,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    let resp = raw(&sluice, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(resp.contains("not_a_proxy_request"), "{resp}");
    let huge = format!(
        "CONNECT api.openai.com:443 HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let resp = raw(&sluice, huge.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");

    // Issue 27, finding 9: two Proxy-Authorization headers on CONNECT (the first used to win;
    // a proxy in front may honour the other). Refused whichever comes first, as in reverse mode.
    let good = format!("any:{}", tok().token);
    let one = connect_head("api.openai.com:443", Some(&good));
    let two = connect_head("api.openai.com:443", Some("any:sluice_forged"));
    let second = two.lines().nth(2).unwrap_or_default();
    let first = one.lines().nth(2).unwrap_or_default();
    for (a, b) in [(first, second), (second, first)] {
        let head = format!("CONNECT api.openai.com:443 HTTP/1.1\r\n{a}\r\n{b}\r\n\r\n");
        let resp = raw(&sluice, head.as_bytes());
        assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
        assert!(resp.contains("duplicate_credential"), "{resp}");
    }

    // Slowloris: a head that never completes is cut at head_timeout_seconds (1 s).
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", sluice.forward.unwrap_or(0))).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"CONNECT api.openai.com:443 HTTP/1.1\r\n")
        .expect("write");
    std::thread::sleep(Duration::from_millis(300));
    let _ = s.write_all(b"X-Slow: 1\r\n");
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "slow head held for {waited:?}"
    );

    // TLS to an intercepted host with a bogus SNI: the handshake is refused.
    let out = Command::new("openssl")
        .args(["s_client", "-brief", "-proxy"])
        .arg(format!("127.0.0.1:{}", sluice.forward.unwrap_or(0)))
        .args(["-proxy_user", "any", "-proxy_pass"])
        .arg(format!("pass:{}", tok().token))
        .args([
            "-connect",
            "api.openai.com:443",
            "-servername",
            "evil.example",
            "-CAfile",
        ])
        .arg(&ca)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        sluice
            .metric("sluice_forward_connects_total{outcome=\"sni_mismatch\"}")
            .await
            >= 1.0
    );
    assert!(
        sluice
            .metric("sluice_forward_connects_total{outcome=\"timeout\"}")
            .await
            >= 1.0
    );
    assert!(
        sluice
            .metric("sluice_forward_connects_total{outcome=\"bad_request\"}")
            .await
            >= 3.0
    );

    // Nothing leaked, nothing panicked, and the proxy still serves.
    wait_no_live_connections(&sluice).await;
    let user = proxy_user();
    let (code, body) = curl(
        &sluice,
        &ca,
        &["--proxy-user", &user, "https://api.openai.com/v1/models"],
    );
    assert_eq!(code, 0, "{body}");
    assert!(!sluice.proc.log_text().contains("panicked"));

    // Issue 27, finding 9: requests pipelined in one write inside an intercepted stream are
    // served in order (the second used to be dropped without an answer).
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-ign_eof", "-proxy"])
        .arg(format!("127.0.0.1:{}", sluice.forward.unwrap_or(0)))
        .args(["-proxy_user", "any", "-proxy_pass"])
        .arg(format!("pass:{}", tok().token))
        .args([
            "-connect",
            "api.openai.com:443",
            "-servername",
            "api.openai.com",
            "-CAfile",
        ])
        .arg(&ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl");
    let get = |last: bool| {
        format!(
            "GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\n{}\r\n",
            if last { "Connection: close\r\n" } else { "" }
        )
    };
    let pipelined = format!("{}{}{}", get(false), get(false), get(true));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pipelined.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
}

/// Echoes every byte back on each connection.
struct EchoServer {
    port: u16,
}

impl EchoServer {
    fn start() -> EchoServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut reader = conn.try_clone().expect("clone");
                    let mut writer = conn;
                    let _ = std::io::copy(&mut reader, &mut writer);
                });
            }
        });
        EchoServer { port }
    }
}
