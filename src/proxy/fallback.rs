//! A request on a route with a fallback chain (`routes[].fallback`): its body read whole before
//! the first attempt and kept to be resent, the provider (hop) it is on, what each failed hop
//! answered (for the audit record), and the translation between the client's API and a hop that
//! speaks the other one.
//!
//! Pingora drives the attempts: a hop that fails before its answer's head reaches the client
//! (connect error, a 5xx/429 head, no head in time) ends the attempt with a retryable error,
//! `upstream_peer` is asked again and the kept body goes out again through
//! `request_body_filter`. Once a head is written to the client nothing is retried.

use bytes::{Bytes, BytesMut};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::{Error, ErrorType, Result};
use pingora_proxy::Session;

use super::ctx::RequestCtx;
use crate::audit::Attempt;
use crate::clock::now_ms;
use crate::config::route::fallback::Fallback;
use crate::config::{Provider, ProviderKind, Route};
use crate::translate::{self, Format};

/// What a request on a fallback route carries from attempt to attempt.
#[derive(Debug)]
pub struct FallbackCtx {
    /// The request body as the client sent it.
    body: Bytes,
    /// The client's API, when its operation can be translated (chat completions or messages).
    client: Option<Format>,
    /// The route's own provider's API.
    family: Format,
    /// The model the client asked for.
    model: Option<String>,
    /// 0: the route's provider; `i`: the chain's `i`-th.
    pub hop: usize,
    /// The hops that failed, in order.
    pub tried: Vec<Attempt>,
    /// The hop changed: `upstream_peer` keeps the key picked for it.
    pub fresh: bool,
    /// The attempt ends to move on (its error is retried).
    pub moving_on: bool,
    /// A hop's answer head was taken: whatever happens next (even before the client saw a
    /// byte), the request stays with that hop.
    pub started: bool,
    /// This hop's body (model mapped, translated).
    hop_body: Bytes,
    /// The model this hop was asked for, when the chain maps it.
    pub served_model: Option<String>,
    /// This hop's answer, translated for the client.
    answer: Option<Answer>,
}

#[derive(Debug)]
enum Answer {
    /// A JSON answer (or error) is read whole, then translated.
    Whole {
        from: Format,
        to: Format,
        ok: bool,
        buf: Vec<u8>,
    },
    Stream(translate::Stream),
}

/// Longest answer (not streamed) held back to be translated whole.
const MAX_WHOLE_ANSWER: usize = 16 * 1024 * 1024;

/// The API family a provider speaks (`None` for `kind: http`).
fn family(kind: ProviderKind) -> Option<Format> {
    match kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => Some(Format::OpenAi),
        ProviderKind::Anthropic => Some(Format::Anthropic),
        // Not translated (yet): a Gemini route has no fallback chain across families.
        ProviderKind::Http | ProviderKind::Gemini | ProviderKind::AzureOpenAi => None,
    }
}

impl FallbackCtx {
    /// The state of a request admitted on `route` at `hop`, when the route has a chain.
    pub fn new(route: Option<&Route>, hop: usize) -> Option<Box<FallbackCtx>> {
        let route = route?;
        let family = family(route.provider.kind)?;
        route.fallback.as_ref()?;
        let tried = match hop {
            0 => Vec::new(),
            _ => {
                count(&route.provider.name, "no_healthy_key");
                vec![Attempt {
                    provider: route.provider.name.clone(),
                    key_id: None,
                    outcome: "no_healthy_key".into(),
                }]
            }
        };
        Some(Box::new(FallbackCtx {
            body: Bytes::new(),
            client: None,
            family,
            model: None,
            hop,
            tried,
            fresh: hop > 0,
            moving_on: false,
            started: false,
            hop_body: Bytes::new(),
            answer: None,
            served_model: None,
        }))
    }
}

fn count(provider: &str, outcome: &str) {
    crate::metrics::METRICS
        .fallbacks
        .with_label_values(&[provider, outcome])
        .inc();
}

/// Reads and drops what is left of a refused request body, at most `DRAIN_BYTES` or for
/// `DRAIN_TIME` (a client sending more, or slower, gets the connection closed on it).
async fn drain(session: &mut Session) {
    const DRAIN_BYTES: usize = 64 * 1024 * 1024;
    const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut left = DRAIN_BYTES;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            left = left.saturating_sub(chunk.len());
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

/// Reads the whole request body before anything goes upstream; the session keeps it and sends
/// it on every attempt. A body over `max` bytes is refused with 413 (naming the `what` limit).
pub(super) async fn keep_body(session: &mut Session, max: usize, what: &str) -> Result<Bytes> {
    session
        .as_mut()
        .enable_retry_buffering_up_to(max.saturating_add(1));
    // A client waiting for `100 Continue` (curl does past 1 KiB) would otherwise wait its
    // timeout: the body is read here, before any upstream could answer it.
    let headers = &session.req_header().headers;
    let expects = headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let declared = super::steps::declared_length(session.req_header());
    let too_large = || {
        Error::e_explain(
            ErrorType::HTTPStatus(413),
            format!("the request body is larger than the {what} limit of {max} bytes"),
        )
    };
    // Refused before the body is asked for: a client waiting for `100 Continue` sends none.
    if declared.is_some_and(|n| n > max as u64) && expects {
        return too_large();
    }
    if expects {
        session.as_mut().write_continue_response().await?;
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_request_body().await? {
        if body.len() + chunk.len() > max {
            // The rest is read and dropped (within bounds) before the 413 goes out: closing
            // on unread bytes makes the kernel reset the connection, and the client would see
            // a reset instead of the answer.
            drain(session).await;
            return too_large();
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads the whole request body (Pingora keeps it to resend on each attempt); a body over the
/// chain's `max_body_bytes` is refused with 413.
pub async fn start(session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
    let Some(max) = chain(ctx).map(|c| c.max_body) else {
        return Ok(());
    };
    let body = keep_body(session, max, "fallback").await?;
    let path = session.req_header().uri.path().to_owned();
    if let Some(acc) = ctx.accounting.as_mut() {
        acc.bytes_in = body.len() as u64;
        if acc.llm {
            acc.model.feed(&body);
        }
    }
    let model = ctx
        .accounting
        .as_ref()
        .and_then(|a| a.model.model().map(str::to_owned))
        .filter(|m| m != crate::audit::scan::UNREAD)
        .or_else(|| model_of(&body));
    if let Some(f) = ctx.fallback_mut() {
        f.client = translatable(f.family, &path);
        f.hop_body = body.clone();
        f.body = body;
        f.model = model;
    }
    // What `request_body_filter` does for other routes, once for every attempt.
    if ctx.grant.counts_tokens() {
        if let Some(acc) = &ctx.accounting {
            let estimate = crate::limits::estimate(acc.model.max_tokens(), acc.bytes_in);
            ctx.grant.reserve(estimate, crate::limits::now_ns());
        }
    }
    Ok(())
}

/// The client's API when `path` is its chat operation (which another API can answer).
fn translatable(family: Format, path: &str) -> Option<Format> {
    let op = path.strip_suffix(family.operation())?;
    op.ends_with('/').then_some(family)
}

/// Whether an attempt that failed with `e` is retried on the next hop: only before the
/// answer's head reached the client, and by the chain's `on` (a head not in time is
/// `timeout`; any other upstream failure before it, a refused or dropped connection, `connect`).
pub fn after_error(session: &Session, e: &Error, ctx: &mut RequestCtx) -> bool {
    if let Some(f) = ctx.fallback_mut() {
        if std::mem::take(&mut f.moving_on) {
            return true;
        }
        if f.started {
            return false;
        }
    }
    if session.response_written().is_some() {
        return false;
    }
    let Some(chain) = chain(ctx) else {
        return false;
    };
    let outcome = match e.etype() {
        ErrorType::ReadTimedout if chain.timeout.is_some() => "timeout",
        ErrorType::ReadTimedout => return false,
        _ if *e.esource() == pingora::ErrorSource::Upstream && chain.on_connect => "connect",
        _ => return false,
    };
    move_on(ctx, outcome)
}

fn model_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Model {
        model: Option<String>,
    }
    serde_json::from_slice::<Model>(body).ok()?.model
}

/// The provider of hop `hop` (0: the route's own).
pub fn hop_provider(route: &Route, hop: usize) -> Option<&Provider> {
    match hop {
        0 => Some(&route.provider),
        i => route
            .fallback
            .as_ref()?
            .hops
            .get(i - 1)
            .map(|h| &*h.provider),
    }
}

/// Whether the chain has a hop after the current one that can serve this request (same API,
/// or a translatable operation) — whether a failure now can move on.
pub fn can_move_on(ctx: &RequestCtx) -> bool {
    next_hop(ctx).is_some()
}

fn next_hop(ctx: &RequestCtx) -> Option<usize> {
    let f = ctx.fallback()?;
    usable_hop(ctx.route()?, f.hop + 1, f.family, f.client.is_some())
}

/// The first hop from `from` that can serve the request (its API, or the other one when the
/// operation translates) and has a key to serve it with.
fn usable_hop(route: &Route, from: usize, client: Format, translates: bool) -> Option<usize> {
    let chain = route.fallback.as_ref()?;
    (from.max(1)..=chain.hops.len()).find(|&i| {
        let p = &chain.hops[i - 1].provider;
        (family(p.kind) == Some(client) || translates) && p.pool.any_available(now_ms())
    })
}

/// At admission, when the route's own provider has no healthy key: the first hop that can
/// answer, and its key for `principal`.
pub fn first_hop(
    route: &Route,
    path: &str,
    principal: &crate::auth::Principal,
    now_ms: u64,
) -> Option<(usize, usize)> {
    let client = family(route.provider.kind)?;
    let translates = translatable(client, path).is_some();
    let hop = usable_hop(route, 1, client, translates)?;
    let provider = hop_provider(route, hop)?;
    super::steps::pick_key(provider, principal, now_ms, None).map(|k| (hop, k))
}

/// Records the failed attempt (`outcome`) and moves to the next usable hop with a key of its
/// own; `false` when the chain is exhausted.
pub fn move_on(ctx: &mut RequestCtx, outcome: &str) -> bool {
    let Some(next) = next_hop(ctx) else {
        return false;
    };
    let attempt = Attempt {
        provider: ctx.provider().map(|p| p.name.clone()).unwrap_or_default(),
        key_id: ctx.key().map(|k| k.id.clone()),
        outcome: outcome.to_owned(),
    };
    let key = {
        let route = ctx.route();
        let provider = route.and_then(|r| hop_provider(r, next));
        match (provider, &ctx.principal) {
            (Some(p), Some(principal)) => super::steps::pick_key(p, principal, now_ms(), None),
            _ => None,
        }
    };
    let Some(key) = key else {
        return false;
    };
    ctx.key = Some(key);
    ctx.key_answer = None;
    count(&attempt.provider, outcome);
    if let Some(f) = ctx.fallback_mut() {
        f.tried.push(attempt);
        f.hop = next;
        f.fresh = true;
        f.answer = None;
    }
    true
}

/// The chain of the request's route.
pub fn chain(ctx: &RequestCtx) -> Option<&Fallback> {
    ctx.route()?.fallback.as_deref()
}

/// The hop's API when it differs from the client's (the request and answer are translated).
fn translated(f: &FallbackCtx, provider: &Provider) -> Option<(Format, Format)> {
    let to = family(provider.kind)?;
    (to != f.family).then_some((f.family, to))
}

/// Prepares this hop's request: the body (model mapped, translated) and its length, the path of
/// the other API's operation, the headers that API needs; a translated answer must not be
/// compressed.
pub fn rewrite_head(upstream: &mut RequestHeader, ctx: &mut RequestCtx) -> Result<()> {
    let (Some(route), Some(f)) = (ctx.route(), ctx.fallback()) else {
        return Ok(());
    };
    let Some(provider) = hop_provider(route, f.hop) else {
        return Ok(());
    };
    let model = match f.hop {
        0 => None,
        i => chain(ctx)
            .and_then(|c| c.hops.get(i - 1))
            .and_then(|h| h.model(f.model.as_deref())),
    };
    let (from, to) = translated(f, provider).unwrap_or((f.family, f.family));
    let body = if from == to && model.is_none() {
        f.body.clone()
    } else {
        let field = match provider.kind {
            ProviderKind::OpenAi => "max_completion_tokens",
            _ => "max_tokens",
        };
        let out = translate::request(from, to, &f.body, model, field)
            .map_err(|e| Error::because(ErrorType::HTTPStatus(400), "fallback request", e))?;
        Bytes::from(out)
    };
    if from != to {
        let path = upstream.uri.path();
        let swapped = path
            .strip_suffix(from.operation())
            .map(|head| format!("{head}{}", to.operation()));
        if let Some(p) = swapped {
            let uri = http::Uri::try_from(p)
                .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "fallback path", e))?;
            upstream.set_uri(uri);
        }
        upstream.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
        if to == Format::Anthropic {
            if !upstream.headers.contains_key("anthropic-version") {
                upstream.insert_header("anthropic-version", "2023-06-01")?;
            }
        } else {
            upstream.remove_header("anthropic-version");
            upstream.remove_header("anthropic-beta");
        }
    }
    // The body goes out whole: nobody waits for the upstream's `100 Continue`.
    upstream.remove_header(&http::header::EXPECT);
    if !f.body.is_empty() || !body.is_empty() {
        upstream.remove_header(&http::header::TRANSFER_ENCODING);
        upstream.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    }
    let served = model.map(str::to_owned);
    if let Some(f) = ctx.fallback_mut() {
        f.hop_body = body;
        f.served_model = served;
    }
    Ok(())
}

/// The kept body goes out (again) as this hop's body.
pub fn body(body: &mut Option<Bytes>, end_of_stream: bool, f: &FallbackCtx) {
    *body = match end_of_stream && !f.hop_body.is_empty() {
        true => Some(f.hop_body.clone()),
        false => None,
    };
}

/// Sets up the answer's translation when the hop speaks the other API: its length changes, so
/// the head loses `Content-Length`; `x-sluice-fallback` names the provider that answered when
/// it is not the route's own.
pub fn on_response(upstream: &mut ResponseHeader, ctx: &mut RequestCtx, h1: bool) -> Result<()> {
    let (Some(route), Some(f)) = (ctx.route(), ctx.fallback()) else {
        return Ok(());
    };
    if f.hop == 0 {
        return Ok(());
    }
    let Some(provider) = hop_provider(route, f.hop) else {
        return Ok(());
    };
    upstream.insert_header("x-sluice-fallback", provider.name.as_str())?;
    let Some((to, from)) = translated(f, provider) else {
        return Ok(());
    };
    let sse = upstream
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let answer = if sse {
        Answer::Stream(translate::Stream::new(from))
    } else {
        Answer::Whole {
            from,
            to,
            ok: upstream.status.is_success(),
            buf: Vec::new(),
        }
    };
    upstream.remove_header(&http::header::CONTENT_LENGTH);
    if h1 {
        upstream.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    if let Some(f) = ctx.fallback_mut() {
        f.answer = Some(answer);
    }
    Ok(())
}

/// Translates the answer's bytes as they pass (a whole JSON answer at its end).
pub fn on_body(body: &mut Option<Bytes>, end_of_stream: bool, f: &mut FallbackCtx) {
    let Some(answer) = f.answer.as_mut() else {
        return;
    };
    match answer {
        Answer::Stream(s) => {
            let mut out = body.take().map(|c| s.feed(&c)).unwrap_or_default();
            if end_of_stream {
                out.extend(s.finish());
            }
            *body = (!out.is_empty()).then(|| Bytes::from(out));
        }
        Answer::Whole { from, to, ok, buf } => {
            if let Some(chunk) = body.take() {
                buf.extend_from_slice(&chunk);
            }
            // An answer this large is not a chat completion: it goes on as it came.
            if buf.len() > MAX_WHOLE_ANSWER {
                *body = Some(Bytes::from(std::mem::take(buf)));
                f.answer = None;
                return;
            }
            if end_of_stream {
                let whole = std::mem::take(buf);
                let out = match ok {
                    true => translate::answer(*from, *to, &whole),
                    false => translate::error(*from, *to, &whole),
                };
                *body = Some(Bytes::from(out.unwrap_or(whole)));
            }
        }
    }
}
