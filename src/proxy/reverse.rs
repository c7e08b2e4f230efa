//! Reverse-proxy mode (`OPENAI_BASE_URL=http://sluice:8080/openai/v1`): Pingora's `ProxyHttp`
//! hooks, each a thin shell around the plain functions of `steps.rs`.

use async_trait::async_trait;
use pingora::connectors::TransportConnector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::{Error, ErrorType, Result};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;
use std::time::Duration;

use super::accounting;
use super::ctx::{request_id, RequestCtx};
use super::fallback;
use super::feedback::{self, KeyAnswer};
use super::forward::ForwardConn;
use super::resource_metadata;
use super::respond::{write_error, write_error_for};
use super::steps::{self, ForwardAdmitted, Refusal};
use super::{mcp, mcp_policy, mcp_stream, oauth};
use crate::audit::{AuditSink, UsageParser};
use crate::balance::health::Verdict;
use crate::clock::{now_ms, unix_now};
use crate::config::ConfigStore;
use crate::error::ErrorShape;
use crate::limits;
use crate::metrics::{status_class_index, METRICS};
use crate::vault::Vault;
use bytes::Bytes;
use std::any::Any;

pub struct Gateway {
    pub store: Arc<ConfigStore>,
    /// `None` when `audit.sink: none`: no accounting work at all.
    pub audit: Option<AuditSink>,
    /// Users' upstream OAuth grants (`credentials: oauth`, `/oauth/v1/…`).
    pub vault: Arc<Vault>,
    /// Connects the MCP GET streams that leave Pingora (`mcp_stream`).
    pub connector: Arc<TransportConnector>,
    /// `server.trusted_proxies`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
}

const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.store.snapshot())
    }

    /// check the head → route → authenticate → pick credential (`steps::admit`, or
    /// `steps::admit_forward` on a forward-proxy connection); a refusal is answered here.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // Requests a client pipelines are answered in order (Pingora otherwise closes after
        // the first answer and drops the rest unanswered).
        session.set_pipelining_enabled(true);
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let req = session.req_header();
        // Forwarding headers are read only from a trusted proxy: usually nobody is.
        let forwarded_for = (!self.trusted_proxies.is_empty())
            .then(|| req.headers.get_all(X_FORWARDED_FOR).iter())
            .into_iter()
            .flatten()
            .filter_map(|v| v.to_str().ok());
        ctx.client =
            crate::client_address::client_address(peer, forwarded_for, &self.trusted_proxies);
        ctx.request_id = request_id(
            req.headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
        );
        if crate::trace::enabled() {
            let parent = req.headers.get("traceparent").and_then(|v| v.to_str().ok());
            ctx.trace = Some(crate::trace::Context::from_header(parent));
        }
        if self.store.refusing_stale() {
            let shape = steps::guess_shape(session.req_header().uri.path());
            let error = crate::error::GatewayError::ControlPlaneStale;
            return refuse(session, ctx, Refusal { error, shape }).await;
        }
        if ctx.conn.is_none() {
            if let Some(answered) = self.own_paths(session, ctx).await {
                if !answered && session.req_header().method == http::Method::GET {
                    return mcp_stream::take(session, &self.connector, ctx, self.audit.as_ref())
                        .await;
                }
                return Ok(answered);
            }
        }
        let req = session.req_header();
        let admission = match ctx.conn.clone() {
            None => {
                let cert = session
                    .digest()
                    .and_then(|d| d.ssl_digest.as_ref())
                    .and_then(|s| s.extension.get::<crate::auth::PeerCert>());
                let peer = steps::Peer {
                    source: ctx.client,
                    cert,
                };
                steps::admit(req, &ctx.snap, peer, now_ms(), unix_now())
                    .await
                    .map(|a| (None, ForwardAdmitted::Provider(a)))
            }
            Some(conn) => {
                steps::admit_forward(req, (&conn, ctx.client), &ctx.snap, now_ms(), unix_now())
                    .await
                    .map(|(host, a)| (Some(host), a))
            }
        };
        match admission {
            Ok((host, admitted)) => {
                ctx.admitted(host, admitted, self.audit.is_some());
                // APIs that name the model (or the deployment) in the path.
                let kind = ctx.provider().map(|p| p.kind);
                if let (Some(kind), Some(acc)) = (kind, ctx.accounting.as_mut()) {
                    let path = session.req_header().uri.path();
                    if let Some(model) = steps::model_in_path(kind, path) {
                        acc.model = crate::audit::ModelScanner::known(model);
                    }
                }
                let answered = self.user_token(session, ctx).await?;
                if !answered && ctx.fallback().is_some() {
                    fallback::start(session, ctx).await?;
                }
                Ok(answered)
            }
            Err(refusal) => refuse(session, ctx, refusal).await,
        }
    }

    /// Forward-proxy connections hand their context to each request on them.
    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
        prev_ctx: Box<dyn Any + Send + Sync>,
    ) {
        if let Ok(conn) = prev_ctx.downcast::<Arc<ForwardConn>>() {
            ctx.conn = Some(*conn);
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        if let Some((dest, addr)) = ctx.passthrough() {
            return Ok(Box::new(HttpPeer::new(addr, false, dest.host.clone())));
        }
        if let Some(m) = ctx.mcp() {
            return mcp::peer(&m.server, ctx.retries).await;
        }
        let snap = ctx.snap.clone();
        let hop = ctx.fallback().map_or(0, |f| f.hop);
        let route = ctx.route_index().and_then(|i| snap.routes.get(i));
        let Some(provider) = route.and_then(|r| fallback::hop_provider(r, hop)) else {
            return Error::e_explain(ErrorType::InternalError, "no route chosen");
        };
        // A fallback hop keeps the key `fallback::move_on` picked for it.
        let fresh = ctx
            .fallback_mut()
            .is_some_and(|f| std::mem::take(&mut f.fresh));
        if ctx.retries > 0 && !fresh {
            // A retry goes to another healthy key when there is one (the principal's next one
            // with affinity).
            ctx.key = match (ctx.key, &ctx.principal) {
                (Some(k), Some(p)) if provider.affinity => {
                    Some(steps::pick_key(provider, p, now_ms(), Some(k)).unwrap_or(k))
                }
                (k, _) => k.map(|k| provider.pool.repick(k, now_ms())),
            };
        }
        let addr = provider.upstream.addr(ctx.retries).await.map_err(|e| {
            Error::because(ErrorType::ConnectError, "upstream address", e).into_up()
        })?;
        let mut peer = provider.upstream.peer(addr);
        // Only a hop with another after it stops waiting for a head early.
        if let Some(t) = fallback::chain(ctx).and_then(|c| c.timeout) {
            if fallback::can_move_on(ctx) {
                peer.options.response_header_timeout = Some(t);
            }
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(t) = &ctx.trace {
            upstream.insert_header("traceparent", t.traceparent())?;
        }
        if ctx.passthrough().is_some() {
            return steps::rewrite_passthrough(upstream);
        }
        if let Some(m) = ctx.mcp() {
            return mcp::rewrite(upstream, m);
        }
        if ctx.fallback().is_some() {
            fallback::rewrite_head(upstream, ctx)?;
        }
        let (Some(route), Some(provider), key) = (ctx.route(), ctx.provider(), ctx.key()) else {
            return Error::e_explain(ErrorType::InternalError, "no route chosen");
        };
        let inject = steps::Inject::of(provider.credentials, key, ctx.user_token.as_deref());
        steps::rewrite(upstream, route, provider, inject, ctx.principal.as_deref())?;
        if let Some(key) = key {
            key.metrics.requests.inc();
        }
        Ok(())
    }

    /// Scans the request body for its `model` as it streams upstream (nothing is held back).
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Read whole and accounted for in `request_filter`; each attempt sends its hop's body.
        if let Some(f) = ctx.fallback() {
            fallback::body(body, end_of_stream, f);
            return Ok(());
        }
        if let (Some(acc), Some(chunk)) = (ctx.accounting.as_mut(), body.as_ref()) {
            acc.bytes_in += chunk.len() as u64;
            if acc.llm {
                acc.model.feed(chunk);
            }
        }
        if end_of_stream && ctx.grant.counts_tokens() {
            if let Some(acc) = &ctx.accounting {
                let estimate = limits::estimate(acc.model.max_tokens(), acc.bytes_in);
                ctx.grant.reserve(estimate, limits::now_ns());
            }
        }
        if let (Some(m), Some(chunk)) = (ctx.mcp_mut(), body.as_ref()) {
            mcp::on_request_body(m, chunk)?;
        }
        Ok(())
    }

    /// Every response (Sluice's own refusals included) carries the request id.
    async fn response_filter(
        &self,
        session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        upstream.insert_header("x-request-id", ctx.request_id.as_str())?;
        if ctx.fallback().is_some() {
            let h1 = session.req_header().version <= http::Version::HTTP_11;
            fallback::on_response(upstream, ctx, h1)?;
        }
        if let Some(m) = ctx.mcp_mut() {
            mcp::on_response(upstream, m)?;
            if let Some(lists) = m.lists.as_mut() {
                lists.on_head(
                    upstream,
                    session.req_header().version == http::Version::HTTP_11,
                );
            }
        }
        if let Some(acc) = ctx.accounting.as_mut() {
            acc.ttfb = Some(ctx.started.elapsed());
            let ct = upstream
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            acc.usage = acc.llm.then(|| UsageParser::new(ct));
        }
        Ok(())
    }

    /// Reads usage from the response as it passes; the chunk itself goes on unchanged.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(m) = ctx.mcp_mut() {
            if let Some(lists) = m.lists.as_mut() {
                lists.on_body(body, end_of_stream);
            }
            if let Some(chunk) = body.as_ref() {
                m.bytes_out += chunk.len() as u64;
                m.rpc_error.feed(chunk);
            }
        }
        if let (Some(acc), Some(chunk)) = (ctx.accounting.as_mut(), body.as_ref()) {
            acc.bytes_out += chunk.len() as u64;
            if let Some(parser) = acc.usage.as_mut() {
                parser.feed(chunk);
            }
        }
        if let Some(answer) = ctx.key_answer.as_mut() {
            if let Some(chunk) = body.as_ref() {
                answer.feed(chunk);
            }
            // Decided before the last bytes go out: the client's next request sees the key's
            // new state.
            if end_of_stream {
                settle_key_answer(ctx);
            }
        }
        // Translated last: usage and key health read the provider's own words.
        if let Some(f) = ctx.fallback_mut() {
            fallback::on_body(body, end_of_stream, f);
        }
        Ok(None)
    }

    /// Feeds key health from the answer's head: 2xx clears the key's strikes, 429 cools it
    /// down for `Retry-After`; a 401/403 waits for its body (see `feedback`).
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (Some(provider), Some(key_idx)) = (ctx.provider(), ctx.key) else {
            return Ok(());
        };
        let status = upstream.status.as_u16();
        if let Some(key) = provider.keys.get(key_idx) {
            key.metrics.responses[status_class_index(status)].inc();
        }
        let header = |name| {
            upstream
                .headers
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
        };
        if Verdict::needs_body(provider.kind, status) {
            ctx.key_answer = Some(KeyAnswer::new(
                status,
                header(http::header::CONTENT_ENCODING),
            ));
        } else if let Some(verdict) = Verdict::of_head(
            status,
            (status == 429)
                .then(|| header(http::header::RETRY_AFTER))
                .flatten(),
        ) {
            feedback::apply(provider, key_idx, verdict);
        }
        if fallback::chain(ctx).is_some_and(|c| c.moves_on(status))
            && fallback::move_on(ctx, &status.to_string())
        {
            if let Some(f) = ctx.fallback_mut() {
                f.moving_on = true;
            }
            return Error::e_explain(
                ErrorType::HTTPStatus(status),
                "moving on to the route's next provider",
            );
        }
        if let Some(f) = ctx.fallback_mut() {
            f.started = true;
        }
        Ok(())
    }

    /// On a fallback route, a failure before the answer's head reached the client moves on
    /// (by the chain's `on`), anything later is never retried; elsewhere Pingora's default.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        if ctx.fallback().is_none() {
            return pingora_proxy::default_error_while_proxy(peer, session, e, client_reused);
        }
        let mut e = e.more_context(format!("Peer: {peer}"));
        let retry = fallback::after_error(session, &e, ctx);
        e.set_retry(retry);
        e
    }

    /// A connect failure happened before any byte reached the client: retry once (on another key).
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(key) = ctx.key() {
            key.metrics.connect_failures.inc();
        }
        if fallback::chain(ctx).is_some_and(|c| c.on_connect) && fallback::move_on(ctx, "connect") {
            e.set_retry(true);
        } else if ctx.retries == 0 {
            ctx.retries += 1;
            e.set_retry(true);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let answer = crate::error::proxy_failure(e.etype(), e.esource());
        let status = answer.as_ref().map_or(0, |(status, _)| *status);
        // Once the response head went out, the stream can only be cut.
        if let (Some((status, error)), None, Some(_)) =
            (answer, session.response_written(), ctx.mcp())
        {
            ctx.reason = Some(error.reason());
            let id = ctx.request_id.clone();
            let message = match status {
                413 => format!("the request body is larger than {} bytes", mcp::MAX_BODY),
                _ => error.to_string(),
            };
            mcp::write_rpc_error(session, status, &message, &id).await;
        } else if let (Some((status, error)), None) = (answer, session.response_written()) {
            // In the client's API: the route's provider's, whichever hop failed.
            let shape = ctx
                .route()
                .map(|r| ErrorShape::from(r.provider.kind))
                .unwrap_or(ErrorShape::OpenAi);
            ctx.reason = Some(error.reason());
            let id = ctx.request_id.clone();
            write_error(session, error, shape, status, &id).await;
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    /// Key health from a 401/403 body, metrics and the audit record, once per request.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.detached {
            return;
        }
        // A 401/403 body cut short is judged on what arrived.
        settle_key_answer(ctx);
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        if ctx.grant.counts_tokens() {
            settle_tokens(ctx, status);
        }
        if !ctx.charge.is_empty() {
            charge_budgets(ctx, self.audit.as_ref());
        }
        let kind = ctx
            .principal
            .as_ref()
            .map(|p| p.kind.as_str())
            .unwrap_or("none");
        crate::metrics::by_credential(kind).inc();
        if let Some(m) = ctx.mcp() {
            let method = session.req_header().method.as_str();
            accounting::record_mcp(
                self.audit.as_ref(),
                method,
                &ctx.request_id,
                ctx.started,
                m,
                status,
            );
        } else if let Some(sink) = &self.audit {
            if ctx.route().is_none_or(|r| r.audit) {
                accounting::record(sink, session, ctx, status);
            }
        }
        if let Some(t) = ctx.trace {
            crate::trace::record(t, span(session, ctx, status));
        }
        let class = status_class_index(status);
        match ctx.route() {
            Some(route) => {
                route.metrics.by_class[class].inc();
                route
                    .metrics
                    .duration
                    .observe(ctx.started.elapsed().as_secs_f64());
            }
            None => METRICS
                .requests
                .with_label_values(&["none", "none", crate::metrics::STATUS_CLASSES[class]])
                .inc(),
        }
        if let Some(e) = e {
            log::debug!(
                "{} {} → {status} ({}): {e}",
                session.req_header().method,
                session.req_header().uri.path(),
                ctx.reason.unwrap_or("error")
            );
        }
    }
}

impl Gateway {
    /// The proxy listener's own paths: the OAuth consent pages, protected-resource metadata and
    /// the MCP gateway. `None` for any other path (a provider route); `Some(true)` when answered
    /// here, `Some(false)` for an admitted MCP request.
    async fn own_paths(&self, session: &mut Session, ctx: &mut RequestCtx) -> Option<bool> {
        let path = session.req_header().uri.path();
        let snap = ctx.snap.clone();
        // The limits naming this endpoint (`endpoint:`, usually `per: source`), held until it
        // has answered.
        let _grant = match endpoint_of(path) {
            Some(endpoint) => {
                let at = crate::limits::At {
                    route: "",
                    provider: "",
                    mcp_server: None,
                    endpoint: Some(endpoint),
                    source: ctx.client,
                };
                match steps::limit_at(&snap, at, &crate::auth::Principal::anonymous()).await {
                    Ok(grant) => grant,
                    Err(error) => {
                        let shape = ErrorShape::OpenAi;
                        return refuse(session, ctx, Refusal { error, shape }).await.ok();
                    }
                }
            }
            None => crate::limits::Grant::default(),
        };
        let path = session.req_header().uri.path();
        let status = if path.starts_with(oauth::PREFIX) {
            ctx.reason = Some("oauth_endpoint");
            oauth::serve(session, &snap, &self.vault, &ctx.request_id).await
        } else if path.starts_with(super::issuer::PREFIX) {
            ctx.reason = Some("issuer_endpoint");
            super::issuer::serve(session, &snap, &self.vault, ctx.client, &ctx.request_id).await
        } else if super::issuer::METADATA_PATHS.contains(&path) {
            ctx.reason = Some("issuer_metadata");
            super::issuer::metadata(session, &snap, &ctx.request_id).await
        } else if path.starts_with(resource_metadata::PREFIX) {
            ctx.reason = Some("resource_metadata");
            resource_metadata::serve(session, &snap, &ctx.request_id).await
        } else if path.starts_with(mcp::PREFIX) {
            if let Err(error) = steps::check_head(session.req_header()) {
                ctx.reason = Some(error.reason());
                write_error(session, error, ErrorShape::OpenAi, 400, &ctx.request_id).await;
                return Some(true);
            }
            match mcp::admit(session, &snap, &self.vault, (&ctx.request_id, ctx.client)).await {
                mcp::Outcome::Admitted(mut m) => {
                    let answered = mcp_policy::enforce(session, &mut m, &ctx.request_id).await;
                    ctx.kind = super::ctx::RequestKind::Mcp(m);
                    let Some(status) = answered else {
                        return Some(false);
                    };
                    ctx.reason = Some("mcp_policy");
                    status
                }
                mcp::Outcome::Answered(status) => {
                    ctx.reason = Some("mcp_refused");
                    status
                }
            }
        } else {
            return None;
        };
        ctx.refused = status >= 400;
        Some(true)
    }

    /// For a `credentials: oauth` provider, the user's token from the vault; a refusal (not
    /// connected, exchange refused) is answered here with the link to connect.
    async fn user_token(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(provider) = ctx.provider() else {
            return Ok(false);
        };
        let (Some(name), Some(principal)) =
            (provider.oauth_provider.clone(), ctx.principal.clone())
        else {
            return Ok(false);
        };
        let shape = ErrorShape::from(provider.kind);
        let subject = steps::presented_credential(session.req_header(), ctx.conn.as_deref());
        let snap = ctx.snap.clone();
        match oauth::user_token(&self.vault, &snap, &principal, &name, subject.as_deref()).await {
            Ok(token) => {
                ctx.user_token = Some(token);
                Ok(false)
            }
            Err(f) => {
                ctx.reason = Some(f.reason());
                ctx.refused = true;
                oauth::write_failure(session, &f, shape, &ctx.request_id).await;
                Ok(true)
            }
        }
    }
}

/// Replaces the token limits' reservation with the usage the answer reported. An answer that
/// is not a success gives the reservation back; a success without usage (a stream without
/// `stream_options.include_usage`, one cut short) keeps it.
fn settle_tokens(ctx: &mut RequestCtx, status: u16) {
    let usage = ctx
        .accounting
        .as_mut()
        .and_then(|a| a.usage.as_mut())
        .and_then(|u| u.finish());
    let used = match usage {
        // As providers count their own limits: OpenAI's prompt tokens include cached ones,
        // Anthropic's input excludes cache reads (which its limits do not count) and writes.
        Some(u) => u.input + u.output + u.cache_write,
        None if !(200..300).contains(&status) => 0,
        None => return,
    };
    ctx.grant.settle(used, limits::now_ns());
}

/// The request's trace span: what it was, where it went, what came back and what it used.
fn span(session: &Session, ctx: &mut RequestCtx, status: u16) -> crate::trace::Span {
    let req = session.req_header();
    let route = ctx.route();
    let mut s = crate::trace::Span {
        name: format!(
            "{} {}",
            req.method,
            route.map_or("/", |r| if r.prefix.is_empty() {
                "forward"
            } else {
                r.prefix.as_str()
            })
        ),
        start: std::time::SystemTime::now().checked_sub(ctx.started.elapsed()),
        end: Some(std::time::SystemTime::now()),
        status,
        ..Default::default()
    };
    s.strings
        .push(("http.request.method", req.method.to_string()));
    s.strings
        .push(("url.path", req.uri.path().chars().take(512).collect()));
    s.strings
        .push(("sluice.request_id", ctx.request_id.clone()));
    if let Some(client) = ctx.client {
        s.strings.push(("client.address", client.to_string()));
    }
    if let Some(r) = route {
        s.strings.push(("sluice.route", r.prefix.clone()));
    }
    if let Some(p) = ctx.provider() {
        s.strings.push(("sluice.provider", p.name.clone()));
        s.strings
            .push(("gen_ai.system", format!("{:?}", p.kind).to_lowercase()));
    }
    if let Some(k) = ctx.key() {
        s.strings.push(("sluice.key_id", k.id.clone()));
    }
    if let Some(reason) = ctx.reason {
        s.strings.push(("sluice.error", reason.to_owned()));
    }
    let served = ctx.fallback().and_then(|f| f.served_model.clone());
    if let Some(acc) = ctx.accounting.as_mut() {
        if let Some(m) = acc.model.model() {
            s.strings.push(("gen_ai.request.model", m.to_owned()));
        }
        if let Some(m) = served {
            s.strings.push(("gen_ai.response.model", m));
        }
        if let Some(u) = acc.usage.as_mut().and_then(|u| u.finish()) {
            s.ints.push(("gen_ai.usage.input_tokens", u.input as i64));
            s.ints.push(("gen_ai.usage.output_tokens", u.output as i64));
            s.ints
                .push(("gen_ai.usage.cache_read_tokens", u.cache_read as i64));
        }
    }
    s
}

/// Charges the answer's usage to the request's budgets; a budget that crossed its warning share
/// gets an audit event.
fn charge_budgets(ctx: &mut RequestCtx, sink: Option<&AuditSink>) {
    let snap = ctx.snap.clone();
    let hop = ctx.fallback().map_or(0, |f| f.hop);
    // Priced as the provider that answered, for the model it was asked for.
    let served = ctx.fallback().and_then(|f| f.served_model.clone());
    let provider = ctx
        .route_index()
        .and_then(|i| snap.routes.get(i))
        .and_then(|r| fallback::hop_provider(r, hop));
    let Some(acc) = ctx.accounting.as_mut() else {
        return;
    };
    let Some(usage) = acc.usage.as_mut().and_then(|u| u.finish()) else {
        return;
    };
    let (Some(provider), Some(principal)) = (provider, ctx.principal.as_deref()) else {
        return;
    };
    let served = served.as_deref();
    let warnings = snap.budgets.charge(
        &ctx.charge,
        (provider.name.as_str(), provider.kind),
        served.or(acc.model.model()),
        &usage,
        principal,
        unix_now(),
    );
    if let Some(sink) = sink {
        for w in warnings {
            accounting::record_budget_warning(sink, &ctx.request_id, &w);
        }
    }
}

/// Applies a collected 401/403 answer to the key it was sent with.
fn settle_key_answer(ctx: &mut RequestCtx) {
    if let (Some(answer), Some(provider), Some(key_idx)) =
        (ctx.key_answer.take(), ctx.provider(), ctx.key)
    {
        feedback::apply(provider, key_idx, answer.verdict(provider));
    }
}

/// Answers a refused request in its shape (the resource metadata link on a reverse route's
/// challenge), counted and audited as refused.
/// Which of Sluice's own unauthenticated endpoints `path` is, for the limits naming it.
fn endpoint_of(path: &str) -> Option<crate::limits::spec::Endpoint> {
    use crate::limits::spec::Endpoint;
    if path.starts_with(oauth::PREFIX) {
        Some(Endpoint::Vault)
    } else if path.starts_with(super::issuer::PREFIX)
        || super::issuer::METADATA_PATHS.contains(&path)
    {
        Some(Endpoint::Issuer)
    } else {
        None
    }
}

async fn refuse(session: &mut Session, ctx: &mut RequestCtx, refusal: Refusal) -> Result<bool> {
    let Refusal { error, shape } = refusal;
    ctx.reason = Some(error.reason());
    ctx.refused = true;
    METRICS.rejected.with_label_values(&[error.reason()]).inc();
    // Reverse-proxy routes only: an intercepted host's paths are not ours to describe.
    let metadata = match (error.challenge(), &ctx.conn) {
        (Some(_), None) => {
            resource_metadata::for_refusal(&ctx.snap, session.req_header().uri.path())
        }
        _ => None,
    };
    let (status, id) = (error.status(), &ctx.request_id);
    read_small_body(session).await;
    write_error_for(session, error, shape, status, metadata.as_deref(), id).await;
    Ok(true)
}

/// Reads a refused request's small body (16 KiB at most, declared by `Content-Length`) within
/// a second, so that the client's connection serves its next request: answering before the
/// body ends closes it, and a client that retries with a fixed credential would pay a new
/// connection for each refusal. Larger bodies, chunked ones and `Expect: 100-continue` are not
/// waited for.
async fn read_small_body(session: &mut Session) {
    const SMALL: u64 = 16 * 1024;
    let req = session.req_header();
    let small = steps::declared_length(req).is_some_and(|n| n <= SMALL);
    if !small || req.headers.contains_key(http::header::EXPECT) || session.is_body_done() {
        return;
    }
    let read = session.as_mut().drain_request_body();
    let _ = tokio::time::timeout(Duration::from_secs(1), read).await;
}
