//! `sluice mock-upstream`: a fast OpenAI- and Anthropic-compatible server for tests, benches and
//! operators' load tests. It records which credential each request carried (`GET /_mock/stats`)
//! so tests can prove which key Sluice injected and that client credentials never arrived.

mod payload;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pingora::tls::{ServerConfig, TlsAcceptor};
use serde_json::json;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

use payload::Ask;

/// Timing and size of mock responses.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Delay before the response head.
    pub latency: Duration,
    /// Extra delay before the first streamed event (time to first token).
    pub ttft: Duration,
    /// Content chunks (tokens) per response.
    pub chunks: usize,
    /// Delay between streamed chunks.
    pub chunk_interval: Duration,
    /// A prompt cache per key (`--prompt-cache`).
    pub prompt_cache: bool,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            latency: Duration::ZERO,
            ttft: Duration::ZERO,
            chunks: 8,
            chunk_interval: Duration::ZERO,
            prompt_cache: false,
        }
    }
}

#[derive(Default)]
struct Stats {
    requests: u64,
    /// `"header: value"` of every credential-like header received, with counts.
    credentials: BTreeMap<String, u64>,
    /// Requests that arrived with any `x-sluice-*` header (Sluice must strip them).
    sluice_headers: u64,
    /// Requests that arrived with a forwarding header (`X-Forwarded-For`, `Forwarded`, …).
    forwarding_headers: u64,
    /// `--prompt-cache`: (key, prompt) pairs seen, and how many requests found theirs.
    prompts: std::collections::HashSet<(String, u64)>,
    cache_hits: u64,
    /// Requests by path (faults included), and the last request's path and JSON body.
    paths: BTreeMap<String, u64>,
    last: serde_json::Value,
}

struct Mock {
    opts: MockOptions,
    stats: Mutex<Stats>,
}

/// A body that can fail (`/_mock/cut/…` ends a stream with a broken connection).
type Body = BoxBody<Bytes, std::io::Error>;

/// A failure asked for in the path: `/_mock/status/{code}/…` answers `code` in the API's error
/// shape (a 429 with `Retry-After: 30`), `/_mock/cut/{n}/…` streams `n` events and breaks the
/// connection 300 ms later, `/_mock/slow/{ms}/…`
/// waits before the head. The rest of the path is served as usual, so a provider's `base_url`
/// can point at a failing mock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Status(u16),
    Cut(usize),
    Slow(u64),
}

fn fault(path: &str) -> (Option<Fault>, &str) {
    let Some(rest) = path.strip_prefix("/_mock/") else {
        return (None, path);
    };
    let mut parts = rest.splitn(3, '/');
    let (kind, n, tail) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
    let Some(n) = n.and_then(|n| n.parse::<u64>().ok()) else {
        return (None, path);
    };
    let f = match kind {
        Some("status") => Fault::Status(n.min(599) as u16),
        Some("cut") => Fault::Cut(n as usize),
        Some("slow") => Fault::Slow(n),
        _ => return (None, path),
    };
    // The tail keeps its leading slash: `/_mock/cut/2/v1/x` serves `/v1/x`.
    (Some(f), &path[path.len() - tail.len() - 1..])
}

/// Serves on `listener` until `shutdown` resolves; TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    opts: MockOptions,
    tls: Option<Arc<ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) {
    let mock = Arc::new(Mock {
        opts,
        stats: Mutex::default(),
    });
    let acceptor = tls.map(TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, _) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                log::warn!("mock upstream accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Without TCP_NODELAY, Nagle plus delayed ACK add ~40 ms to every small response.
        let _ = tcp.set_nodelay(true);
        let mock = mock.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let mock = mock.clone();
                async move { Ok::<_, Infallible>(mock.handle(req).await) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            let result = match acceptor {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(tls) => http.serve_connection(TokioIo::new(tls), service).await,
                    Err(e) => {
                        log::debug!("mock upstream TLS handshake failed: {e}");
                        return;
                    }
                },
                None => http.serve_connection(TokioIo::new(tcp), service).await,
            };
            if let Err(e) = result {
                log::debug!("mock upstream connection ended: {e}");
            }
        });
    }
}

impl Mock {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        if path == "/_mock/stats" {
            return self.stats_response();
        }
        if path == "/_mock/reset" {
            if let Ok(mut s) = self.stats.lock() {
                *s = Stats::default();
            }
            return json_response(200, &json!({"reset": true}));
        }
        self.record(&req);
        let full = path.clone();
        let (fault, served) = fault(&full);
        let path = served.to_owned();
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let forced = header("x-mock-status").and_then(|v| v.parse::<u16>().ok());
        let key = header("authorization")
            .or_else(|| header("x-api-key"))
            .or_else(|| header("x-goog-api-key"));
        let code = header("x-mock-error-code");
        // Like OpenAI: a key answers 401 for an organization or project it is not a member of.
        let account = match (header("openai-organization"), header("openai-project")) {
            (Some(_), _) => Some("mismatched_organization"),
            (None, Some(_)) => Some("mismatched_project"),
            (None, None) => None,
        };
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        self.record_body(&full, &body);
        if !self.opts.latency.is_zero() {
            tokio::time::sleep(self.opts.latency).await;
        }
        if let Some(Fault::Slow(ms)) = fault {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        // A provider failing by its path stays benched through a test (a long `Retry-After`).
        let (forced, retry_after) = match fault {
            Some(Fault::Status(s)) => (Some(s), "30"),
            _ => (forced, "1"),
        };
        if let Some(status) = forced {
            return forced_error(status, &path, code.as_deref(), retry_after);
        }
        if let Some(code) = account {
            return forced_error(401, &path, Some(code), retry_after);
        }
        let mut ask = Ask::from_body(&body);
        if self.opts.prompt_cache {
            ask.cached_tokens = self.cached(key.as_deref(), &body, ask.input_tokens);
        }
        let cut = match fault {
            Some(Fault::Cut(n)) => Some(n),
            _ => None,
        };
        self.answer(&path, &ask, cut)
    }

    /// The API's answer for `path`, streamed when asked (cut after `cut` events).
    fn answer(&self, path: &str, ask: &Ask, cut: Option<usize>) -> Response<Body> {
        let n = self.opts.chunks;
        if let Some((model, method)) = gemini_call(path) {
            return match method {
                "generateContent" => json_response(200, &payload::gemini_json(ask, model, n)),
                "streamGenerateContent" => self.sse(payload::gemini_events(ask, model, n), cut),
                _ => json_response(200, &json!({"totalTokens": ask.input_tokens})),
            };
        }
        if path.ends_with("/chat/completions") {
            if ask.stream {
                return self.sse(payload::chat_events(ask, n), cut);
            }
            return json_response(200, &payload::chat_json(ask, n));
        }
        if path.ends_with("/responses") {
            if ask.stream {
                return self.sse(payload::response_events(ask, n), cut);
            }
            return json_response(200, &payload::response_json(ask, n, "completed"));
        }
        if path.ends_with("/messages") {
            if ask.stream {
                return self.sse(payload::message_events(ask, n), cut);
            }
            return json_response(200, &payload::message_json(ask, n));
        }
        if path.ends_with("/models") {
            return json_response(200, &payload::models_json());
        }
        json_response(
            404,
            &json!({"error": {"message": format!("mock upstream has no {path}"), "type": "invalid_request_error", "code": "unknown_url"}}),
        )
    }

    /// The input tokens a provider's prompt cache would serve: all of them when this key saw
    /// this prompt before (at most 100,000 prompts are remembered).
    fn cached(&self, key: Option<&str>, body: &[u8], input: u64) -> u64 {
        use std::hash::{Hash, Hasher};
        let Ok(mut stats) = self.stats.lock() else {
            return 0;
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        let entry = (key.unwrap_or("").to_owned(), h.finish());
        if stats.prompts.contains(&entry) {
            stats.cache_hits += 1;
            return input;
        }
        if stats.prompts.len() < 100_000 {
            stats.prompts.insert(entry);
        }
        0
    }

    fn record(&self, req: &Request<Incoming>) {
        let Ok(mut stats) = self.stats.lock() else {
            return;
        };
        stats.requests += 1;
        let names = crate::auth::CREDENTIAL_HEADERS
            .iter()
            .map(http::HeaderName::as_str)
            .chain([crate::auth::SLUICE_TOKEN_HEADER]);
        for name in names {
            for value in req.headers().get_all(name) {
                let key = format!("{name}: {}", String::from_utf8_lossy(value.as_bytes()));
                *stats.credentials.entry(key).or_default() += 1;
            }
        }
        // Credentials in the query string (Google's, Azure's) count too.
        let query = req.uri().query().into_iter().flat_map(|q| q.split('&'));
        let credential = [
            "key",
            "access_token",
            "oauth_token",
            "subscription-key",
            "api-key",
        ];
        for (name, value) in query.filter_map(|p| p.split_once('=')) {
            let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            if credential.contains(&name.trim_start_matches('$')) || value.contains("sluice_") {
                *stats
                    .credentials
                    .entry(format!("?key={value}"))
                    .or_default() += 1;
            }
        }
        if req
            .headers()
            .keys()
            .any(|n| n.as_str().starts_with("x-sluice-"))
        {
            stats.sluice_headers += 1;
        }
        let forwarding = [
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-real-ip",
        ];
        if forwarding.iter().any(|n| req.headers().contains_key(*n)) {
            stats.forwarding_headers += 1;
        }
    }

    fn record_body(&self, path: &str, body: &[u8]) {
        let Ok(mut stats) = self.stats.lock() else {
            return;
        };
        *stats.paths.entry(path.to_owned()).or_default() += 1;
        stats.last = json!({
            "path": path,
            "body": serde_json::from_slice::<serde_json::Value>(body).unwrap_or(serde_json::Value::Null),
        });
    }

    fn stats_response(&self) -> Response<Body> {
        let Ok(stats) = self.stats.lock() else {
            return json_response(500, &json!({"error": "stats unavailable"}));
        };
        json_response(
            200,
            &json!({"requests": stats.requests, "credentials": stats.credentials, "sluice_headers": stats.sluice_headers, "forwarding_headers": stats.forwarding_headers, "cache_hits": stats.cache_hits, "paths": stats.paths, "last": stats.last}),
        )
    }

    /// A text/event-stream response whose events are written one frame each, paced by the
    /// options; with `cut`, the connection breaks after that many events.
    fn sse(&self, events: Vec<String>, cut: Option<usize>) -> Response<Body> {
        let (ttft, interval) = (self.opts.ttft, self.opts.chunk_interval);
        let limit = cut.unwrap_or(usize::MAX);
        let frames = stream::unfold(
            (events.into_iter().enumerate(), true),
            move |(mut events, first)| async move {
                let (i, event) = events.next()?;
                if i >= limit {
                    // Long enough for the head and the first events to reach the client.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    return Some((
                        Err(std::io::Error::other("cut by /_mock/cut")),
                        (events, false),
                    ));
                }
                let wait = if first { ttft } else { interval };
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Some((Ok(Frame::data(Bytes::from(event))), (events, false)))
            },
        );
        let mut resp = Response::new(BodyExt::boxed(StreamBody::new(frames)));
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-cache"),
        );
        resp
    }
}

fn json_response(status: u16, value: &serde_json::Value) -> Response<Body> {
    let body = Bytes::from(value.to_string());
    let mut resp = Response::new(Full::new(body).map_err(|e| match e {}).boxed());
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The error a real provider sends for `status` (requested with `x-mock-status`), in the shape
/// of the API the path belongs to; `code` (`x-mock-error-code`) replaces the error code
/// (OpenAI) or type (Anthropic). A 401 is the provider's own "invalid key" error by default; a
/// 429 says `Retry-After: retry_after`.
/// A Gemini call's model and method: `…/models/{model}:{method}`.
fn gemini_call(path: &str) -> Option<(&str, &str)> {
    path.split_once("/models/")?.1.split_once(':')
}

fn forced_error(
    status: u16,
    path: &str,
    code: Option<&str>,
    retry_after: &'static str,
) -> Response<Body> {
    // Google's shape; `x-mock-error-code` is the ErrorInfo reason (`API_KEY_INVALID`).
    if gemini_call(path).is_some() {
        let reason = code.unwrap_or("MOCK_FORCED");
        let value = json!({"error": {"code": status, "message": format!("mock upstream forced {status}"),
            "status": if status == 400 { "INVALID_ARGUMENT" } else { "UNKNOWN" },
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}]}});
        return json_response(status, &value);
    }
    let anthropic = path.ends_with("/messages");
    let value = match (anthropic, status, code) {
        (true, _, code) => {
            let kind = code.unwrap_or(match status {
                401 => "authentication_error",
                403 => "permission_error",
                429 => "rate_limit_error",
                _ => "api_error",
            });
            json!({"type": "error", "error": {"type": kind, "message": format!("mock upstream forced {status}")}})
        }
        (false, 401, None) => {
            json!({"error": {"message": "Incorrect API key provided (mock upstream forced 401)", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})
        }
        (false, _, Some(code)) => {
            json!({"error": {"message": format!("mock upstream forced {status}"), "type": "invalid_request_error", "param": null, "code": code}})
        }
        (false, _, None) => {
            json!({"error": {"message": format!("mock upstream forced {status}"), "type": "mock_error", "code": status}})
        }
    };
    let mut resp = json_response(status, &value);
    if status == 429 {
        resp.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static(retry_after),
        );
    }
    resp
}
