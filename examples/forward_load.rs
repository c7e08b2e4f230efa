//! Load generator for the forward proxy, one client for every mode so ratios compare like
//! with like. Prints one JSON line.
//!
//! Modes:
//! - `reverse`: keep-alive HTTP/1.1 requests to `--target` (reverse mode, plain HTTP).
//! - `intercept`: one CONNECT + TLS per connection through `--proxy` to `--host`, then
//!   keep-alive requests inside it.
//! - `handshake`: a new CONNECT + TLS handshake through `--proxy` per iteration, then close.
//! - `tls`: a new TLS handshake with `--target` per iteration (e.g. nginx), then close.
//! - `throughput`: sends `--bytes` to a `sink` at `--target`, directly or through `--proxy`.
//! - `sink`: listens on `--target`, reads each connection to EOF, answers `ok`.
//!
//! usage: forward_load --mode intercept --proxy 127.0.0.1:8888 --host api.openai.com \
//!          --ca ca.pem --token sluice_… --conns 32 --duration 5 --path /v1/chat/completions

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

#[derive(Clone, Debug)]
struct Args {
    mode: String,
    target: String,
    proxy: String,
    host: String,
    ca: String,
    token: String,
    path: String,
    conns: usize,
    duration: Duration,
    bytes: u64,
}

const BODY: &str = r#"{"model":"gpt-mock","messages":[{"role":"user","content":"hello"}]}"#;

fn parse_args() -> Args {
    let mut a = Args {
        mode: String::new(),
        target: String::new(),
        proxy: String::new(),
        host: "api.openai.com".into(),
        ca: String::new(),
        token: String::new(),
        path: "/v1/chat/completions".into(),
        conns: 32,
        duration: Duration::from_secs(5),
        bytes: 100 << 20,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let (k, v) = (pair[0].as_str(), pair.get(1).cloned().unwrap_or_default());
        match k {
            "--mode" => a.mode = v,
            "--target" => a.target = v,
            "--proxy" => a.proxy = v,
            "--host" => a.host = v,
            "--ca" => a.ca = v,
            "--token" => a.token = v,
            "--path" => a.path = v,
            "--conns" => a.conns = v.parse().expect("--conns"),
            "--duration" => a.duration = Duration::from_secs_f64(v.parse().expect("--duration")),
            "--bytes" => a.bytes = v.parse().expect("--bytes"),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn tls_connector(ca: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).expect("read --ca");
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("pem")).expect("add root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn connect_via_proxy(a: &Args, target: &str) -> std::io::Result<TcpStream> {
    use base64::Engine;
    let mut s = TcpStream::connect(&a.proxy).await?;
    s.set_nodelay(true)?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("agent:{}", a.token));
    let head = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await? == 0 {
            return Err(std::io::Error::other("proxy closed"));
        }
        buf.push(byte[0]);
    }
    if !buf.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&buf).into_owned(),
        ));
    }
    Ok(s)
}

async fn tls_over<S: AsyncRead + AsyncWrite + Unpin>(
    connector: &tokio_rustls::TlsConnector,
    host: &str,
    s: S,
) -> std::io::Result<tokio_rustls::client::TlsStream<S>> {
    let name =
        rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(std::io::Error::other)?;
    connector.connect(name, s).await
}

/// One request and its whole response (Content-Length or chunked); false on any failure.
async fn exchange(s: &mut (impl Io + ?Sized), req: &[u8], buf: &mut Vec<u8>) -> bool {
    if s.write_all(req).await.is_err() {
        return false;
    }
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = resp.parse(buf) {
            if resp.code != Some(200) {
                return false;
            }
            let len = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                });
            let chunked = len.is_none();
            loop {
                let body = &buf[head_len..];
                let done = match len {
                    Some(n) => body.len() >= n,
                    None => chunked && body.ends_with(b"0\r\n\r\n"),
                };
                if done {
                    return true;
                }
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn request(a: &Args, host: &str, bearer: &str) -> Vec<u8> {
    format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
        a.path,
        BODY.len()
    )
    .into_bytes()
}

#[tokio::main]
async fn main() {
    let a = parse_args();
    if a.mode == "sink" {
        return sink(&a.target).await;
    }
    if a.mode == "throughput" {
        return throughput(&a).await;
    }
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let connector = (!a.ca.is_empty()).then(|| tls_connector(&a.ca));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.conns {
        let (a, done, failed, stop, connector) = (
            a.clone(),
            done.clone(),
            failed.clone(),
            stop.clone(),
            connector.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut buf = Vec::with_capacity(16 * 1024);
            while !stop.load(Ordering::Relaxed) {
                let ok = match a.mode.as_str() {
                    "reverse" => {
                        let req = request(&a, &a.target, &a.token);
                        match TcpStream::connect(&a.target).await {
                            Ok(mut s) => {
                                let _ = s.set_nodelay(true);
                                while !stop.load(Ordering::Relaxed)
                                    && exchange(&mut s, &req, &mut buf).await
                                {
                                    done.fetch_add(1, Ordering::Relaxed);
                                }
                                false
                            }
                            Err(_) => false,
                        }
                    }
                    "intercept" => {
                        let req = request(&a, &a.host, "sk-agent-placeholder");
                        let connector = connector.as_ref().expect("--ca");
                        let target = format!("{}:443", a.host);
                        match connect_via_proxy(&a, &target).await {
                            Ok(s) => match tls_over(connector, &a.host, s).await {
                                Ok(mut tls) => {
                                    while !stop.load(Ordering::Relaxed)
                                        && exchange(&mut tls, &req, &mut buf).await
                                    {
                                        done.fetch_add(1, Ordering::Relaxed);
                                    }
                                    false
                                }
                                Err(_) => false,
                            },
                            Err(_) => false,
                        }
                    }
                    "handshake" => {
                        let connector = connector.as_ref().expect("--ca");
                        let target = format!("{}:443", a.host);
                        match connect_via_proxy(&a, &target).await {
                            Ok(s) => tls_over(connector, &a.host, s).await.is_ok(),
                            Err(_) => false,
                        }
                    }
                    "tls" => {
                        let connector = connector.as_ref().expect("--ca");
                        match TcpStream::connect(&a.target).await {
                            Ok(s) => {
                                let _ = s.set_nodelay(true);
                                tls_over(connector, &a.host, s).await.is_ok()
                            }
                            Err(_) => false,
                        }
                    }
                    other => panic!("unknown mode {other}"),
                };
                if ok {
                    done.fetch_add(1, Ordering::Relaxed);
                } else if !stop.load(Ordering::Relaxed)
                    && a.mode != "reverse"
                    && a.mode != "intercept"
                {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(a.duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    let n = done.load(Ordering::Relaxed);
    println!(
        "{{\"mode\":\"{}\",\"conns\":{},\"completed\":{n},\"failed\":{},\"per_second\":{:.1}}}",
        a.mode,
        a.conns,
        failed.load(Ordering::Relaxed),
        n as f64 / elapsed
    );
}

async fn sink(listen: &str) {
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            let _ = s.write_all(format!("ok {total}").as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}

/// Sends `--bytes` to the sink (directly, or through a CONNECT tunnel when `--proxy` is set)
/// and waits for its acknowledgement.
async fn throughput(a: &Args) {
    let mut s: TcpStream = if a.proxy.is_empty() {
        TcpStream::connect(&a.target).await.expect("connect sink")
    } else {
        connect_via_proxy(a, &a.target).await.expect("tunnel")
    };
    let addr: Option<SocketAddr> = s.peer_addr().ok();
    let started = Instant::now();
    let block = vec![0x5au8; 256 * 1024];
    let mut left = a.bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        s.write_all(&block[..n]).await.expect("write");
        left -= n as u64;
    }
    s.shutdown().await.expect("shutdown");
    let mut ack = String::new();
    s.read_to_string(&mut ack).await.expect("ack");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(
        ack,
        format!("ok {}", a.bytes),
        "sink received a different byte count"
    );
    println!(
        "{{\"mode\":\"throughput\",\"via\":\"{}\",\"peer\":\"{}\",\"bytes\":{},\"seconds\":{secs:.3},\"mb_per_second\":{:.1}}}",
        if a.proxy.is_empty() { "direct" } else { "tunnel" },
        addr.map(|a| a.to_string()).unwrap_or_default(),
        a.bytes,
        a.bytes as f64 / secs / 1e6
    );
}
