//! MCP GET streams (the server-to-client SSE stream of a session) leave Pingora's request path.
//!
//! A client keeps one open per session, idle for hours. Through Pingora each would hold its
//! whole per-request state (the proxy future, the task, both HTTP sessions and their buffers:
//! ~65 KiB measured), so 10,000 idle agents would pin ~650 MiB. Instead, once the request is
//! admitted and the upstream connected, the client's connection is taken out of Pingora's
//! session (Pingora patch 19: a closed stand-in takes its place) and both sockets go to a task
//! of their own that relays the upstream's bytes as they arrive: a few KiB per stream, no
//! buffer while idle.
//! Plain TCP sockets leave Pingora's stream objects too (their buffers and digests): the relay
//! keeps a duplicate of the descriptor and the original is closed.
//!
//! The upstream is asked to close after its answer (`Connection: close`) and the client is told
//! the same, so the answer's own framing (chunked, length or close) passes through untouched.

use bytes::BytesMut;
use pingora::connectors::TransportConnector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::Stream;
use pingora_proxy::Session;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::ctx::RequestCtx;
use super::mcp::{self, McpCtx};
use crate::audit::AuditSink;

/// Largest upstream answer head taken.
const MAX_HEAD: usize = 16 * 1024;
/// Bytes read at a time while a stream trickles; a full read moves to `BUSY_READ`.
const IDLE_READ: usize = 512;
const BUSY_READ: usize = 16 * 1024;

/// What the stream's audit record needs once it ends.
struct Record {
    audit: Option<AuditSink>,
    request_id: String,
    started: Instant,
}

/// Takes over an admitted MCP GET (`RequestKind::Mcp`): connects the upstream and sends the request
/// (a failure is Pingora's to answer, the client still being in its session), then moves the
/// client's connection and the upstream into a relay task. `Ok(false)`: not taken (an HTTP/2
/// client), proxy it as usual.
pub async fn take(
    session: &mut Session,
    connector: &TransportConnector,
    ctx: &mut RequestCtx,
    audit: Option<&AuditSink>,
) -> pingora::Result<bool> {
    let Some(mcp) = ctx.mcp() else {
        return Ok(false);
    };
    if session.is_http2() {
        return Ok(false);
    }
    let mut head = session.req_header().clone();
    mcp::rewrite(&mut head, mcp)?;
    head.insert_header(http::header::CONNECTION, "close")?;
    let peer = super::mcp::peer(&mcp.server, ctx.retries).await?;
    // Marked as the upstream's failure, as Pingora does: the answer is a 502, not a 500.
    let mut upstream = connector
        .new_stream(&*peer)
        .await
        .map_err(|e| e.into_up())?;
    let sent = async {
        upstream.write_all(&request_wire(&head)).await?;
        upstream.flush().await
    };
    sent.await.map_err(|e| {
        pingora::Error::because(pingora::ErrorType::WriteError, "MCP upstream", e).into_up()
    })?;
    // Pingora patch 19: the session keeps a closed stand-in and ends without writing.
    let Some(client) = session.downstream_session.take_http1_stream() else {
        return Ok(false);
    };
    let Some(mcp) = ctx.take_mcp() else {
        return Ok(false);
    };
    ctx.detached = true;
    let record = Record {
        audit: audit.cloned(),
        request_id: ctx.request_id.clone(),
        started: ctx.started,
    };
    tokio::spawn(async move {
        let mut mcp = mcp;
        let idle = mcp.server.idle_timeout;
        let (client, upstream) = (bare(client), bare(upstream));
        let (status, bytes_out) = relay(client, upstream, &mcp, &record.request_id, idle).await;
        mcp.bytes_out = bytes_out;
        super::accounting::record_mcp(
            record.audit.as_ref(),
            "GET",
            &record.request_id,
            record.started,
            &mcp,
            status,
        );
    });
    Ok(true)
}

/// What the relay reads and writes: a bare TCP socket, or Pingora's stream (TLS).
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A plain TCP connection as a bare tokio socket (a duplicate of its descriptor; Pingora's
/// stream object, with its write buffer and digests, is dropped: it deregisters and closes the
/// original); anything else (a TLS stream) as it is.
fn bare(stream: Stream) -> Box<dyn Io> {
    let fd = match stream
        .as_any()
        .downcast_ref::<pingora::protocols::l4::stream::Stream>()
    {
        Some(l4) => l4.as_raw_fd(),
        _ => return Box::new(stream),
    };
    // SAFETY: `fd` is open for as long as `stream` lives, which outlives this borrow.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let socket = rustix::io::fcntl_dupfd_cloexec(borrowed, 0)
        .map_err(std::io::Error::from)
        .map(std::net::TcpStream::from)
        .and_then(|s| {
            s.set_nonblocking(true)?;
            tokio::net::TcpStream::from_std(s)
        });
    match socket {
        Ok(socket) => Box::new(socket),
        Err(e) => {
            log::debug!("MCP stream keeps Pingora's socket: {e}");
            Box::new(stream)
        }
    }
}

/// Relays the upstream's answer to the client until either side ends or the stream is idle
/// for `idle`; returns the status the client got and the body bytes relayed.
async fn relay(
    mut client: Box<dyn Io>,
    mut upstream: Box<dyn Io>,
    mcp: &McpCtx,
    request_id: &str,
    idle: Duration,
) -> (u16, u64) {
    let head = tokio::select! {
        found = read_head(&mut upstream, idle) => found,
        // The client left before the upstream answered: the upstream connection goes now,
        // not at the idle timeout (499, as nginx records a client that closed first).
        () = gone(&mut client) => {
            let _ = upstream.shutdown().await;
            return (499, 0);
        }
    };
    let (status, head, rest) = match head {
        Ok(found) => found,
        Err(why) => {
            log::debug!("MCP stream {request_id}: no answer head from the upstream: {why}");
            let body = mcp::rpc_error_body(502, "the MCP server did not answer");
            let _ = client
                .write_all(&plain_answer(502, &body, request_id))
                .await;
            let _ = client.flush().await;
            return (502, 0);
        }
    };
    let mut sent = rest.len() as u64;
    let mut start = answer_wire(head, mcp, request_id);
    start.extend_from_slice(&rest);
    drop(rest);
    let written = write(&mut client, &start).await;
    drop(start);
    if written.is_err() {
        return (status, 0);
    }
    let mut small = [0u8; IDLE_READ];
    let mut busy: Option<Vec<u8>> = None;
    let mut probe = [0u8; 64];
    loop {
        let buf: &mut [u8] = match busy.as_mut() {
            Some(b) => b,
            None => &mut small,
        };
        let cap = buf.len();
        tokio::select! {
            read = tokio::time::timeout(idle, upstream.read(buf)) => {
                let n = match read {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(n)) => n,
                };
                if write(&mut client, &buf[..n]).await.is_err() {
                    break;
                }
                sent += n as u64;
                if n == cap && busy.is_none() {
                    busy = Some(vec![0; BUSY_READ]);
                } else if n < IDLE_READ {
                    busy = None;
                }
            }
            // A GET has no body: anything from the client here is its end (or a pipelined
            // request, which a stream cannot serve).
            read = client.read(&mut probe) => {
                if !matches!(read, Ok(n) if n > 0) {
                    break;
                }
            }
        }
    }
    let _ = client.shutdown().await;
    let _ = upstream.shutdown().await;
    (status, sent)
}

/// Resolves once the client has closed its side (or sent anything: a GET has no body, and a
/// pipelined request cannot be served on a stream).
async fn gone(client: &mut Box<dyn Io>) {
    let mut probe = [0u8; 64];
    let _ = client.read(&mut probe).await;
}

async fn write(client: &mut Box<dyn Io>, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    client.write_all(bytes).await?;
    client.flush().await
}

/// Reads the upstream's answer head: its status, the parsed head and the body bytes read past it.
async fn read_head(
    upstream: &mut Box<dyn Io>,
    idle: Duration,
) -> Result<(u16, ResponseHeader, Vec<u8>), String> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let n = tokio::time::timeout(idle, upstream.read_buf(&mut buf))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        let mut headers = [httparse::EMPTY_HEADER; 96];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = parsed.code.unwrap_or(502);
                let mut head = ResponseHeader::build(status, Some(parsed.headers.len()))
                    .map_err(|e| e.to_string())?;
                for h in parsed.headers.iter() {
                    head.append_header(h.name.to_owned(), h.value)
                        .map_err(|e| e.to_string())?;
                }
                return Ok((status, head, buf[len..].to_vec()));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Err("answer head too large".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The answer head as the client gets it: session ids bound to the principal, the upstream's
/// challenge dropped (as on every MCP answer), the request id, and the end of the connection.
fn answer_wire(mut head: ResponseHeader, mcp: &McpCtx, request_id: &str) -> Vec<u8> {
    let _ = mcp::on_response(&mut head, mcp);
    head.remove_header(&http::header::CONNECTION);
    head.remove_header("keep-alive");
    let _ = head.insert_header("x-request-id", request_id);
    let _ = head.insert_header(http::header::CONNECTION, "close");
    let mut wire = Vec::with_capacity(512);
    wire.extend_from_slice(b"HTTP/1.1 ");
    wire.extend_from_slice(head.status.as_str().as_bytes());
    wire.push(b' ');
    wire.extend_from_slice(head.status.canonical_reason().unwrap_or("").as_bytes());
    wire.extend_from_slice(b"\r\n");
    headers_wire(&mut wire, &head.headers);
    wire
}

fn request_wire(head: &RequestHeader) -> Vec<u8> {
    let mut wire = Vec::with_capacity(512);
    wire.extend_from_slice(head.method.as_str().as_bytes());
    wire.push(b' ');
    wire.extend_from_slice(
        head.uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    wire.extend_from_slice(b" HTTP/1.1\r\n");
    headers_wire(&mut wire, &head.headers);
    wire
}

fn headers_wire(wire: &mut Vec<u8>, headers: &http::HeaderMap) {
    for (name, value) in headers {
        wire.extend_from_slice(name.as_str().as_bytes());
        wire.extend_from_slice(b": ");
        wire.extend_from_slice(value.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"\r\n");
}

/// A complete JSON answer written by hand (the client is no longer in a Pingora session).
fn plain_answer(status: u16, body: &str, request_id: &str) -> Vec<u8> {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nx-request-id: {request_id}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_are_written_with_their_headers() {
        let mut head = RequestHeader::build("GET", b"/mcp?x=1", None).unwrap();
        head.insert_header("host", "up:9").unwrap();
        head.insert_header("accept", "text/event-stream").unwrap();
        let wire = String::from_utf8(request_wire(&head)).unwrap();
        assert_eq!(
            wire,
            "GET /mcp?x=1 HTTP/1.1\r\nhost: up:9\r\naccept: text/event-stream\r\n\r\n"
        );
    }

    #[test]
    fn own_answers_are_complete_http() {
        let wire = String::from_utf8(plain_answer(502, "{}", "r1")).unwrap();
        assert!(wire.starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
        assert!(wire.contains("content-length: 2\r\n"));
        assert!(wire.ends_with("\r\n\r\n{}"));
    }
}
