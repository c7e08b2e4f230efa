//! Forward-proxy mode (`HTTPS_PROXY=http://any:TOKEN@sluice:8888`): a Pingora `ServerApp` that
//! reads the client's first head itself (bounded in size and time), authenticates `CONNECT` by
//! `Proxy-Authorization`, and then either
//! - intercepts: answers 200, terminates TLS with a leaf certificate for the host signed by
//!   Sluice's CA, and serves the decrypted requests with the same `Gateway` filters as reverse
//!   mode (the connection's credential travels with every request on it);
//! - tunnels: dials the destination (after the policy and the resolved-address check) and copies
//!   bytes both ways until either side closes, the tunnel idles out, or the server shuts down;
//! - or refuses (407 / 403 / 400) and closes.
//!
//! Absolute-form requests (`GET http://host/… HTTP/1.1`) are handed to the same `Gateway`,
//! which applies the policy per request.

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Gateway;
use crate::auth;
use crate::clock::unix_now;
use crate::config::{ConfigStore, Snapshot};
use crate::error::{ErrorShape, GatewayError};
use crate::forward::ca::CertAuthority;
use crate::forward::policy::{self, Decision, Denied, ForwardPolicy};
use crate::metrics::METRICS;
use crate::secrets::Secret;

/// Longest CONNECT (or first request) head accepted.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// Keep-alive of intercepted connections between requests (seconds).
const KEEPALIVE_SECONDS: u64 = 60;
/// Bytes a tunnel moves per splice(2) (and the size asked of each direction's pipe).
const SPLICE_PIPE: usize = 1 << 20;

/// What every request on one forward-proxy connection shares.
#[derive(Debug)]
pub struct ForwardConn {
    pub kind: ConnKind,
}

#[derive(Debug)]
pub enum ConnKind {
    /// A CONNECT to an intercepted host: the credential given at CONNECT time (re-checked
    /// against the current snapshot on each request, so revocation applies to open connections).
    Intercepted {
        host: String,
        port: u16,
        credential: Secret,
    },
    /// Absolute-form HTTP: each request carries its own `Proxy-Authorization`.
    Plain,
}

pub struct ForwardProxy {
    pub store: Arc<ConfigStore>,
    pub ca: Arc<CertAuthority>,
    pub http: Arc<HttpProxy<Gateway>>,
}

/// Counts an open forward-proxy connection for as long as it lives.
struct Live;

impl Live {
    fn new() -> Live {
        METRICS.forward_tunnels.inc();
        Live
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        METRICS.forward_tunnels.dec();
    }
}

fn outcome(label: &str) {
    METRICS.forward_connects.with_label_values(&[label]).inc();
}

#[async_trait]
impl ServerApp for ForwardProxy {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _live = Live::new();
        let stream = match stream.into_any().downcast::<L4Stream>() {
            Ok(s) => *s,
            Err(_) => {
                log::error!("forward proxy: unexpected stream type; connection dropped");
                return None;
            }
        };
        self.handle(stream, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.http.http_cleanup().await;
    }
}

/// The client's first head, parsed.
#[derive(Debug)]
struct Head {
    method: String,
    target: String,
    proxy_authorization: Option<String>,
    /// `Proxy-Authorization` headers sent (more than one is refused, as in reverse mode).
    proxy_authorizations: usize,
    /// Bytes of `buf` that belong to the head.
    len: usize,
    buf: Vec<u8>,
}

#[derive(Debug, PartialEq)]
enum HeadError {
    TooLarge,
    Malformed,
    /// The client closed or the read failed: nothing to answer.
    Gone,
}

async fn read_head(stream: &mut L4Stream) -> Result<Head, HeadError> {
    let mut buf = vec![0u8; 2048];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if buf.len() >= MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            buf.resize((buf.len() * 2).min(MAX_HEAD), 0);
        }
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(|_| HeadError::Gone)?;
        if n == 0 {
            return Err(HeadError::Gone);
        }
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(len)) => {
                let given = || {
                    req.headers
                        .iter()
                        .filter(|h| h.name.eq_ignore_ascii_case("proxy-authorization"))
                };
                let proxy_authorization = given()
                    .next()
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .map(str::to_owned);
                let proxy_authorizations = given().count();
                let head = Head {
                    method: req.method.unwrap_or_default().to_owned(),
                    target: req.path.unwrap_or_default().to_owned(),
                    proxy_authorization,
                    proxy_authorizations,
                    len,
                    buf: Vec::new(),
                };
                buf.truncate(filled);
                return Ok(Head { buf, ..head });
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(_) => return Err(HeadError::Malformed),
        }
    }
}

/// A complete response on the raw client connection (before any tunnel or TLS), then close.
async fn refuse(stream: &mut L4Stream, error: GatewayError) {
    let body = error.body(ErrorShape::OpenAi);
    let status = error.status();
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-sluice-error: {}\r\nconnection: close\r\n",
        body.len(),
        error.reason()
    );
    if let Some(challenge) = error.challenge() {
        head.push_str(&format!("{}: {challenge}\r\n", error.challenge_header()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    let _ = stream.write_all(&out).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

/// The principal's credential check for the proxy itself (CONNECT time).
async fn check_credential(
    head: &Head,
    snap: &Snapshot,
) -> Result<(Secret, Arc<auth::Principal>), GatewayError> {
    if head.proxy_authorizations > 1 {
        return Err(GatewayError::BadRequest(
            crate::error::BadRequest::DuplicateCredential,
        ));
    }
    let token = head
        .proxy_authorization
        .as_deref()
        .and_then(auth::proxy_credential)
        .ok_or(GatewayError::ProxyAuthMissing)?;
    let principal = auth::verify(&token, &snap.forward.access, snap, unix_now())
        .await
        .map_err(proxy_auth_error)?;
    Ok((Secret::new(token), principal))
}

/// Credential failures on the proxy answer 407 (`Proxy-Authenticate`); a valid credential that
/// may not use the proxy is a 403.
pub fn proxy_auth_error(e: GatewayError) -> GatewayError {
    match e {
        GatewayError::InvalidCredential(f) => GatewayError::ProxyAuthInvalid(f),
        GatewayError::MissingCredential => GatewayError::ProxyAuthMissing,
        other => other,
    }
}

impl ForwardProxy {
    async fn handle(self: &Arc<Self>, mut stream: L4Stream, shutdown: &ShutdownWatch) {
        let snap = self.store.snapshot();
        let policy = &snap.forward;
        let Some(head) = first_head(&mut stream, policy.head_timeout).await else {
            return;
        };
        if !head.method.eq_ignore_ascii_case("CONNECT") {
            let absolute = head
                .target
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
            if !absolute {
                outcome("bad_request");
                return refuse(&mut stream, GatewayError::NotAProxyRequest).await;
            }
            // The gateway reads the request again, from the start, and applies the policy.
            outcome("plain_http");
            stream.rewind(&head.buf);
            let conn = Arc::new(ForwardConn {
                kind: ConnKind::Plain,
            });
            return self.serve_http(Box::new(stream), conn, shutdown).await;
        }

        if self.store.refusing_stale() {
            outcome("denied");
            return refuse(&mut stream, GatewayError::ControlPlaneStale).await;
        }
        let Some((host, port)) = policy::split_authority(&head.target, None) else {
            outcome("bad_request");
            return refuse(&mut stream, GatewayError::NotAProxyRequest).await;
        };
        let (credential, principal) = match check_credential(&head, &snap).await {
            Ok(ok) => ok,
            Err(e) => {
                outcome(if e.status() == 407 {
                    "auth_failed"
                } else {
                    "denied"
                });
                METRICS.rejected.with_label_values(&[e.reason()]).inc();
                log::info!(
                    "forward proxy: CONNECT {host}:{port} refused: {}",
                    e.reason()
                );
                return refuse(&mut stream, e).await;
            }
        };
        let leftover = &head.buf[head.len..];

        match policy.decide(&host, port) {
            Decision::Intercept(_) => {
                let conn = Arc::new(ForwardConn {
                    kind: ConnKind::Intercepted {
                        host: host.clone(),
                        port,
                        credential,
                    },
                });
                self.intercept(stream, leftover, conn, policy, shutdown)
                    .await
            }
            Decision::Tunnel => {
                let target = Target {
                    host: &host,
                    port,
                    who: &principal.key,
                };
                open_tunnel(stream, leftover, target, policy, shutdown).await
            }
            Decision::Deny(d) => {
                outcome("denied");
                log::info!(
                    "forward proxy: CONNECT by {} to {host}:{port} denied: {}",
                    principal.key,
                    d.reason()
                );
                refuse(&mut stream, GatewayError::Destination(d)).await
            }
        }
    }

    /// An intercepted host: 200, then TLS with a leaf certificate for it (port 443) or plain
    /// HTTP, served through the gateway with the connection's credential.
    async fn intercept(
        &self,
        mut stream: L4Stream,
        leftover: &[u8],
        conn: Arc<ForwardConn>,
        policy: &ForwardPolicy,
        shutdown: &ShutdownWatch,
    ) {
        if stream.write_all(ESTABLISHED).await.is_err() || stream.flush().await.is_err() {
            return;
        }
        if !leftover.is_empty() {
            stream.rewind(leftover);
        }
        let ConnKind::Intercepted { host, port, .. } = &conn.kind else {
            return;
        };
        if *port != 443 {
            outcome("intercepted");
            return self.serve_http(Box::new(stream), conn, shutdown).await;
        }
        let acceptor = match self.ca.acceptor(host) {
            Ok(a) => a,
            Err(e) => {
                outcome("tls_failed");
                log::warn!("forward proxy: no certificate for {host}: {e:#}");
                return;
            }
        };
        let host = host.clone();
        let handshake = acceptor.tls_handshake(stream);
        match tokio::time::timeout(policy.head_timeout, handshake).await {
            Ok(Ok(tls)) => {
                outcome("intercepted");
                self.serve_http(Box::new(tls), conn, shutdown).await
            }
            Ok(Err(e)) => {
                outcome("tls_failed");
                log::debug!("forward proxy: TLS with the client for {host} failed: {e}");
            }
            Err(_) => outcome("timeout"),
        }
    }

    /// Serves HTTP/1.1 requests on `stream` through the gateway, the connection's context
    /// delivered to each request.
    async fn serve_http(&self, stream: Stream, conn: Arc<ForwardConn>, shutdown: &ShutdownWatch) {
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive((!*shutdown.borrow()).then_some(KEEPALIVE_SECONDS));
        session.set_connection_user_context(Some(Box::new(conn.clone())));
        let mut result = self.http.process_new_http(session, shutdown).await;
        while let Some((stream, settings)) = result.map(|r| r.consume()) {
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            session.set_connection_user_context(Some(Box::new(conn.clone())));
            result = self.http.process_new_http(session, shutdown).await;
        }
    }
}

/// The client's first head, or `None` once a bad or late one has been answered.
async fn first_head(stream: &mut L4Stream, timeout: Duration) -> Option<Head> {
    match tokio::time::timeout(timeout, read_head(stream)).await {
        Ok(Ok(head)) => Some(head),
        Ok(Err(HeadError::Gone)) => None,
        Ok(Err(HeadError::TooLarge | HeadError::Malformed)) => {
            outcome("bad_request");
            refuse(stream, GatewayError::NotAProxyRequest).await;
            None
        }
        Err(_) => {
            outcome("timeout");
            let _ = stream.shutdown().await;
            None
        }
    }
}

/// Where a tunnel goes, and for whom (for the log).
struct Target<'a> {
    host: &'a str,
    port: u16,
    who: &'a str,
}

/// A blind tunnel: dial (policy and resolved-address checks), 200, then bytes both ways.
async fn open_tunnel(
    mut stream: L4Stream,
    leftover: &[u8],
    target: Target<'_>,
    policy: &ForwardPolicy,
    shutdown: &ShutdownWatch,
) {
    let Target { host, port, who } = target;
    let upstream = match dial(host, port, policy).await {
        Ok(s) => s,
        Err(e) => {
            let (label, error) = match e {
                DialError::Denied(d) => ("denied", GatewayError::Destination(d)),
                DialError::Unreachable => ("upstream_error", GatewayError::UpstreamUnavailable),
            };
            outcome(label);
            log::info!(
                "forward proxy: tunnel for {who} to {host}:{port} refused: {}",
                error.reason()
            );
            return refuse(&mut stream, error).await;
        }
    };
    if stream.write_all(ESTABLISHED).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    outcome("tunnelled");
    log::debug!("forward proxy: tunnel for {who} to {host}:{port}");
    tunnel(
        stream,
        upstream,
        leftover,
        policy.tunnel_idle,
        shutdown.clone(),
    )
    .await;
}

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

#[derive(Debug)]
pub enum DialError {
    Denied(Denied),
    Unreachable,
}

/// Resolves `host`, keeps the addresses the policy allows, and connects to the first that
/// answers. The address checked is the address dialled: no second resolution.
pub async fn dial(
    host: &str,
    port: u16,
    policy: &ForwardPolicy,
) -> Result<tokio::net::TcpStream, DialError> {
    let addrs = allowed_addrs(host, port, policy).await?;
    for addr in addrs {
        match tokio::time::timeout(policy.connect_timeout, tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => log::debug!("forward proxy: connect {addr}: {e}"),
            Err(_) => log::debug!("forward proxy: connect {addr}: timed out"),
        }
    }
    Err(DialError::Unreachable)
}

/// The resolved addresses of `host:port` a client may reach.
pub async fn allowed_addrs(
    host: &str,
    port: u16,
    policy: &ForwardPolicy,
) -> Result<Vec<SocketAddr>, DialError> {
    let resolved: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let lookup = tokio::net::lookup_host((host, port));
            match tokio::time::timeout(policy.connect_timeout, lookup).await {
                Ok(Ok(addrs)) => addrs.collect(),
                _ => return Err(DialError::Unreachable),
            }
        }
    };
    if resolved.is_empty() {
        return Err(DialError::Unreachable);
    }
    let allowed: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|a| policy.address_allowed(a.ip()))
        .collect();
    if allowed.is_empty() {
        return Err(DialError::Denied(Denied::PrivateAddress));
    }
    Ok(allowed)
}

/// Joins the client and the destination until both directions are closed, nothing moved for
/// `idle`, or the server shuts down. Bytes move with splice(2) through a pipe per direction,
/// never through user space; half-closes are passed on.
async fn tunnel(
    client: L4Stream,
    mut upstream: tokio::net::TcpStream,
    leftover: &[u8],
    idle: Duration,
    mut shutdown: ShutdownWatch,
) {
    let result = async {
        let client_socket = duplicate(&client)?;
        if !leftover.is_empty() {
            upstream.write_all(leftover).await?;
        }
        let started = tokio::time::Instant::now();
        let last = AtomicU64::new(0);
        let (up, down) = (AtomicU64::new(leftover.len() as u64), AtomicU64::new(0));
        let both = async {
            tokio::try_join!(
                splice_one_way(&client_socket, &upstream, &up, &last, started),
                splice_one_way(&upstream, &client_socket, &down, &last, started),
            )
        };
        let idle_out = async {
            loop {
                let since = Duration::from_millis(last.load(Ordering::Relaxed));
                let due = started + since + idle;
                if tokio::time::Instant::now() >= due {
                    break;
                }
                tokio::time::sleep_until(due).await;
            }
        };
        let outcome = tokio::select! {
            r = both => r.map(|_| ()),
            _ = idle_out => {
                log::debug!("forward proxy: tunnel idle for {idle:?}, closed");
                Ok(())
            }
            _ = shutdown.changed() => Ok(()),
        };
        for (direction, counter) in [("up", &up), ("down", &down)] {
            METRICS
                .forward_tunnel_bytes
                .with_label_values(&[direction])
                .inc_by(counter.load(Ordering::Relaxed));
        }
        outcome
    }
    .await;
    if let Err(e) = result {
        log::debug!("forward proxy: tunnel ended: {e}");
    }
    // `client` (the original socket) is dropped last, after its duplicate.
    drop(client);
}

/// A second handle on the client's socket as a tokio `TcpStream`, for readiness and splice.
/// Nothing is buffered in the Pingora stream at this point: the forward listener reads
/// unbuffered and the 200 was flushed.
fn duplicate(client: &L4Stream) -> std::io::Result<tokio::net::TcpStream> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    // SAFETY: `client` owns this descriptor and outlives the borrow, which ends in `dup`.
    let fd = unsafe { BorrowedFd::borrow_raw(client.as_raw_fd()) };
    let owned = rustix::io::fcntl_dupfd_cloexec(fd, 0)?;
    let std_stream = std::net::TcpStream::from(owned);
    std_stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(std_stream)
}

/// Moves bytes `from` → `to` until `from` reaches EOF (then half-closes `to`).
async fn splice_one_way(
    from: &tokio::net::TcpStream,
    to: &tokio::net::TcpStream,
    moved: &AtomicU64,
    last: &AtomicU64,
    started: tokio::time::Instant,
) -> std::io::Result<()> {
    use rustix::pipe::{pipe_with, splice, PipeFlags, SpliceFlags};
    use tokio::io::Interest;
    let (pipe_out, pipe_in) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
    let _ = rustix::pipe::fcntl_setpipe_size(&pipe_in, SPLICE_PIPE);
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    loop {
        let mut in_pipe = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || {
                Ok(splice(from, None, &pipe_in, None, SPLICE_PIPE, flags)?)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if in_pipe == 0 {
            let _ = rustix::net::shutdown(to, rustix::net::Shutdown::Write);
            return Ok(());
        }
        moved.fetch_add(in_pipe as u64, Ordering::Relaxed);
        last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        while in_pipe > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                Ok(splice(&pipe_out, None, to, None, in_pipe, flags)?)
            }) {
                Ok(n) => in_pipe -= n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_credentials() {
        use base64::Engine;
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert_eq!(
            auth::proxy_credential(&basic("any:sluice_abc")).as_deref(),
            Some("sluice_abc")
        );
        assert_eq!(
            auth::proxy_credential(&basic("x:a:b")).as_deref(),
            Some("a:b")
        );
        assert_eq!(auth::proxy_credential(&basic("user:")), None);
        assert_eq!(auth::proxy_credential(&basic("nocolon")), None);
        assert_eq!(auth::proxy_credential("bearer tok").as_deref(), Some("tok"));
        assert_eq!(auth::proxy_credential("Digest abc"), None);
        assert_eq!(auth::proxy_credential("Basic !!!"), None);
        assert_eq!(auth::proxy_credential("Bearer "), None);
    }
}
