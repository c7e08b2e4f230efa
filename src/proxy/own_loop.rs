//! Sluice's own proxy loop for HTTP/1 clients and HTTP/1 upstreams, on pingora-core: read the
//! head, admit (the same `ProxyHttp` filters as Pingora's path), connect or reuse from
//! `pool`, send head and body, read the answer through the response filters and write it back
//! — one future per request, no channel between two halves, upstream connections kept in a
//! plain per-thread list. Pingora's proxy (`pingora_proxy::HttpProxy`) keeps what this loop does
//! not take: HTTP/2 clients, upgrades, `Expect: 100-continue` and `CONNECT`; the metric
//! `sluice_proxy_path_total{path}` counts both.

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::FutureExt;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::connectors::TransportConnector;
use pingora::protocols::http::v1::client::HttpSession as Upstream;
use pingora::protocols::http::v2::server::H2Options;
use pingora::protocols::http::{HttpTask, ServerSession};
use pingora::server::ShutdownWatch;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, Result};
use pingora_proxy::{HttpProxy, ProxyHttp, Session};
use std::sync::{Arc, LazyLock};

use super::{pool, Gateway, RequestCtx};
use crate::metrics::METRICS;

static OWN: LazyLock<prometheus::IntCounter> =
    LazyLock::new(|| METRICS.proxy_path.with_label_values(&["sluice"]));
static PINGORA: LazyLock<prometheus::IntCounter> =
    LazyLock::new(|| METRICS.proxy_path.with_label_values(&["pingora"]));

/// The proxy listener's application: this loop, with Pingora's proxy for the rest.
pub struct OwnLoop {
    pub proxy: Arc<HttpProxy<Gateway>>,
    pub connector: Arc<TransportConnector>,
    /// `server.proxy_loop: pingora` sends every request to Pingora's proxy.
    pub own: bool,
}

/// How one attempt ended: whether the client and upstream connections can serve another
/// request, and the error if it failed.
struct Attempt {
    client_reuse: bool,
    upstream_reuse: bool,
    /// The upstream connection came from the pool.
    reused: bool,
    error: Option<Box<Error>>,
}

impl Attempt {
    fn failed(error: Box<Error>) -> Attempt {
        Attempt {
            client_reuse: false,
            upstream_reuse: false,
            reused: false,
            error: Some(error),
        }
    }
}

/// Whether this loop serves a request with this head (else Pingora's proxy does).
fn takes(session: &Session) -> bool {
    let req = session.req_header();
    req.version == http::Version::HTTP_11
        && req.method != http::Method::CONNECT
        && !req.headers.contains_key(http::header::UPGRADE)
        && !req.headers.contains_key(http::header::EXPECT)
}

#[async_trait]
impl HttpServerApp for OwnLoop {
    async fn process_new_http(
        self: &Arc<Self>,
        mut downstream: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if downstream.is_http2() {
            // A stream whose client neither sends the body it announced nor takes the answer
            // (a zero flow-control window) is ended after the idle timeout, as an HTTP/1
            // connection is: each holds its request's state until then.
            let idle = self
                .proxy
                .server_options()
                .and_then(|o| o.keepalive_idle_timeout);
            downstream.set_read_timeout(idle);
            downstream.set_write_timeout(idle);
        }
        if downstream.is_http2() || !self.own {
            PINGORA.inc();
            return self.proxy.process_new_http(downstream, shutdown).await;
        }
        let previous = downstream.take_connection_user_context();
        // Futures that are not the streaming phase are boxed: a connection's future is as large
        // as its largest state, held for as long as the connection lives.
        let downstream = Box::pin(self.proxy.read_request_head(Box::new(downstream))).await?;
        let mut session = self.proxy.new_session(downstream);
        if *shutdown.borrow() {
            session.set_keepalive(None);
        }
        let gateway = self.proxy.app();
        let mut ctx = gateway.new_ctx();
        if let Some(previous) = previous {
            gateway.on_connection_reuse(&mut session, &mut ctx, previous);
        }
        if !takes(&session) {
            PINGORA.inc();
            return Box::pin(self.proxy.serve_session(session, ctx)).await;
        }
        OWN.inc();
        self.serve(session, ctx).await
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.proxy.server_options()
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.proxy.h2_options()
    }

    async fn http_cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

impl OwnLoop {
    /// Admission, then attempts until one succeeds or may not be retried, then the answer to a
    /// failure and the request's records (as Pingora's `process_request`).
    async fn serve(&self, mut session: Session, mut ctx: RequestCtx) -> Option<ReusedHttpStream> {
        let gateway = self.proxy.app();
        match gateway.request_filter(&mut session, &mut ctx).await {
            Ok(true) => return Box::pin(finish(gateway, session, &mut ctx, true, None)).await,
            Ok(false) => {}
            Err(e) => {
                let answer = gateway.fail_to_proxy(&mut session, &e, &mut ctx).await;
                let reuse = answer.can_reuse_downstream;
                return Box::pin(finish(gateway, session, &mut ctx, reuse, Some(e))).await;
            }
        }
        let mut attempts = 0;
        let mut client_reuse = false;
        let mut error = None;
        // After a failure on a pooled connection, the retry opens a fresh one (the next pooled
        // one may have died the same way).
        let mut fresh = false;
        while attempts < self.proxy.max_retries() {
            attempts += 1;
            let attempt = self.attempt(&mut session, &mut ctx, fresh).await;
            client_reuse = attempt.client_reuse;
            error = attempt.error;
            if !error.as_ref().is_some_and(|e| e.retry()) {
                break;
            }
            fresh |= attempt.reused;
            log::debug!(
                "retrying: {}",
                error.as_deref().map_or(String::new(), |e| e.to_string())
            );
        }
        if let Some(e) = &error {
            let answer = gateway.fail_to_proxy(&mut session, e, &mut ctx).await;
            log::error!(
                "Fail to proxy: {e}, status: {}, tries: {attempts}",
                answer.error_code
            );
        }
        Box::pin(finish(gateway, session, &mut ctx, client_reuse, error)).await
    }

    /// One attempt: the peer, a connection to it (a pooled one unless `fresh`), the exchange;
    /// the connection back to the pool when it can serve again.
    async fn attempt(&self, session: &mut Session, ctx: &mut RequestCtx, fresh: bool) -> Attempt {
        let gateway = self.proxy.app();
        let peer = match gateway.upstream_peer(session, ctx).await {
            Ok(peer) => peer,
            Err(e) => return Attempt::failed(e),
        };
        let pooled = if fresh { None } else { pool::take(&peer) };
        let (stream, reused) = match pooled {
            Some(stream) => (stream, true),
            None => match Box::pin(self.connector.new_stream(&*peer)).await {
                Ok(stream) => (stream, false),
                Err(mut e) => {
                    e.as_up();
                    let e = gateway.fail_to_connect(session, &peer, ctx, e);
                    return Attempt::failed(e.into_up());
                }
            },
        };
        let mut upstream = Upstream::new_with_options(stream, &*peer);
        let mut attempt = exchange(gateway, session, &mut upstream, &peer, ctx).await;
        attempt.reused = reused;
        if attempt.upstream_reuse {
            upstream.respect_keepalive();
            if let Some(stream) = upstream.reuse().await {
                pool::put(&peer, stream);
            }
        }
        attempt.error = attempt
            .error
            .map(|e| gateway.error_while_proxy(&peer, session, e, ctx, reused));
        attempt
    }
}

/// Head upstream, then the request body and the answer together: whichever is ready first,
/// in one future (an upstream may answer before the body ends; a client may leave mid-answer).
async fn exchange(
    gateway: &Gateway,
    session: &mut Session,
    upstream: &mut Upstream,
    peer: &HttpPeer,
    ctx: &mut RequestCtx,
) -> Attempt {
    if let Err(e) = send_head(gateway, session, upstream, peer, ctx).await {
        return Attempt::failed(e);
    }
    let mut body = match BodyState::start(gateway, session, upstream, ctx).await {
        Ok(body) => body,
        Err(e) => return Attempt::failed(e),
    };
    let mut answered = false;
    let mut client_idle = true;
    // Whether the upstream may not have read the whole request (`answer_keeps_connection`).
    let mut unread = false;
    while !answered || !body.client_done {
        tokio::select! {
            biased;
            task = upstream.read_response_task(), if !answered => {
                let task = match task {
                    Ok(task) => task,
                    Err(e) => {
                        let e = body.send_error.take().unwrap_or(e);
                        return Attempt::failed(e.into_up());
                    }
                };
                if let HttpTask::Header(head, _) = &task {
                    if !head.status.is_informational() {
                        let status = head.status.as_u16();
                        unread |= !body.upstream_done
                            || !pingora_proxy::answer_keeps_connection(status);
                    }
                }
                match answer(gateway, session, upstream, task, ctx).await {
                    Ok(end) => answered = end,
                    Err(e) => return Attempt::failed(e),
                }
            }
            // The client's body while it goes upstream (not once sending failed: only the
            // answer is awaited then); after it, an idle read that notices a client leaving.
            read = session.downstream_session.read_body_or_idle(body.client_done),
                if (!body.client_done && body.send_error.is_none())
                    || (body.client_done && client_idle) => {
                let data = match read {
                    Ok(data) => data,
                    Err(e) => return Attempt::failed(e.into_down()),
                };
                if body.client_done {
                    // An idle read returned (it only pends or fails today): stop watching.
                    client_idle = false;
                    continue;
                }
                let done = session.as_mut().is_body_done();
                if let Err(e) = body.send(gateway, session, upstream, data, done, ctx).await {
                    return Attempt::failed(e);
                }
            }
        }
        if body.send_error.is_some() && answered {
            break;
        }
    }
    Attempt {
        client_reuse: body.client_done,
        upstream_reuse: body.upstream_done && body.send_error.is_none() && !unread,
        reused: false,
        error: None,
    }
}

/// The upstream request head: the proxy's own preparation around `upstream_request_filter`,
/// written (it leaves with the body when one follows).
async fn send_head(
    gateway: &Gateway,
    session: &mut Session,
    upstream: &mut Upstream,
    peer: &HttpPeer,
    ctx: &mut RequestCtx,
) -> Result<()> {
    upstream.read_timeout = peer.options.read_timeout;
    upstream.response_header_timeout = peer.options.response_header_timeout;
    upstream.write_timeout = peer.options.write_timeout;
    let had_host = session
        .req_header()
        .headers
        .contains_key(http::header::HOST);
    let mut head = pingora_proxy::h1_upstream_request(session, peer)?;
    gateway
        .upstream_request_filter(session, &mut head, ctx)
        .await?;
    pingora_proxy::finish_h1_upstream_request(session, &mut head, had_host)?;
    upstream
        .write_request_header(Box::new(head))
        .await
        .map_err(|e| e.into_up())?;
    Ok(())
}

/// A piece of the answer with what the same read brought (the body after its head, the end
/// after the last chunk), through the response filters and out in one write; whether the
/// answer ended.
async fn answer(
    gateway: &Gateway,
    session: &mut Session,
    upstream: &mut Upstream,
    first: HttpTask,
    ctx: &mut RequestCtx,
) -> Result<bool> {
    let mut end = first.is_end();
    let mut tasks = vec![first];
    while !end && upstream.has_buffered_body() {
        match upstream.read_response_task().now_or_never() {
            Some(task) => {
                let task = task.map_err(|e| e.into_up())?;
                end = task.is_end();
                tasks.push(task);
            }
            None => break,
        }
    }
    respond(gateway, session, tasks, ctx).await?;
    Ok(end)
}

/// Where the request body stands: read whole from the client, ended upstream, or failed to
/// go upstream (the answer may still come: an upstream can refuse a body it did not read).
struct BodyState {
    client_done: bool,
    upstream_done: bool,
    send_error: Option<Box<Error>>,
}

impl BodyState {
    /// Before the loop: a retry resends what the client already sent (kept by the session's
    /// retry buffer); an empty body is ended at once.
    async fn start(
        gateway: &Gateway,
        session: &mut Session,
        upstream: &mut Upstream,
        ctx: &mut RequestCtx,
    ) -> Result<BodyState> {
        session.as_mut().enable_retry_buffering();
        let mut body = BodyState {
            client_done: session.as_mut().is_body_done(),
            upstream_done: false,
            send_error: None,
        };
        let kept = session.as_ref().get_retry_buffer();
        if kept.is_some() || session.as_mut().is_body_empty() {
            let done = body.client_done;
            body.send(gateway, session, upstream, kept, done, ctx)
                .await?;
        }
        Ok(body)
    }

    /// A piece of the client's body through `request_body_filter` and upstream.
    async fn send(
        &mut self,
        gateway: &Gateway,
        session: &mut Session,
        upstream: &mut Upstream,
        mut data: Option<Bytes>,
        end: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let end = end || data.is_none();
        self.client_done = end;
        session
            .downstream_modules_ctx
            .request_body_filter(&mut data, end)
            .await?;
        gateway
            .request_body_filter(session, &mut data, end, ctx)
            .await?;
        if self.upstream_done || self.send_error.is_some() {
            return Ok(());
        }
        let upstream_end = end || data.is_none();
        let written = async {
            if let Some(data) = data.filter(|d| !d.is_empty()) {
                upstream.write_body(&data).await?;
            }
            if upstream_end {
                upstream.finish_body().await?;
            }
            Ok::<_, Box<Error>>(())
        }
        .await;
        match written {
            Ok(()) => self.upstream_done = upstream_end,
            Err(e) => {
                log::debug!("request body not sent upstream: {e}");
                self.send_error = Some(e.into_up());
            }
        }
        Ok(())
    }
}

/// Pieces of the answer through the response filters and to the client in one write; as
/// Pingora's `h1_response_filter` and `write_response_tasks`.
async fn respond(
    gateway: &Gateway,
    session: &mut Session,
    mut tasks: Vec<HttpTask>,
    ctx: &mut RequestCtx,
) -> Result<()> {
    // (An upstream read yields no `Failed` task; `write_response_tasks` would answer one.)
    for task in &mut tasks {
        match task {
            HttpTask::Header(head, end) => {
                gateway
                    .upstream_response_filter(session, head, ctx)
                    .await
                    .map_err(|e| e.into_up())?;
                pingora_proxy::h1_response_head(session, head, *end)?;
                gateway.response_filter(session, head, ctx).await?;
            }
            HttpTask::Body(data, end) => {
                if let Some(delay) = gateway.response_body_filter(session, data, *end, ctx)? {
                    tokio::time::sleep(delay).await;
                }
            }
            _ => {}
        }
    }
    session.write_response_tasks(tasks).await.map(|_| ())
}

/// The request's records (`logging`), then the client connection back for the next request
/// when it can serve one.
async fn finish(
    gateway: &Gateway,
    mut session: Session,
    ctx: &mut RequestCtx,
    reuse: bool,
    error: Option<Box<Error>>,
) -> Option<ReusedHttpStream> {
    gateway.logging(&mut session, error.as_deref(), ctx).await;
    if let Some(e) = error {
        session.downstream_session.on_proxy_failure(e);
    }
    if !reuse {
        return None;
    }
    let mut settings = HttpPersistentSettings::for_session(&session);
    if let Some(context) = gateway.persist_connection_context(&session, ctx) {
        settings.set_user_context(context);
    }
    let stream = session.downstream_session.finish().await.ok().flatten()?;
    Some(ReusedHttpStream::from_reusable_stream(stream, settings))
}
