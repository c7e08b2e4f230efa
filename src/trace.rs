//! OpenTelemetry traces (`server.otlp_endpoint`, off by default): one span per proxied request
//! (route, provider, key id, model, status, token usage), exported over OTLP/HTTP with JSON
//! encoding in batches, and the W3C trace context (`traceparent`) continued from the client and
//! sent upstream, so the provider call joins the caller's trace.
//!
//! The encoding is written here (a few structs of the OTLP JSON mapping) rather than taken from
//! the OpenTelemetry SDK: the SDK brings its own batch processor, runtime glue and ~40 crates for
//! what is one JSON document per batch, posted with the HTTP client Sluice already has.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::metrics::METRICS;

/// Spans waiting for export; beyond this they are dropped (and counted), never waited for.
const QUEUE: usize = 8192;
const BATCH: usize = 512;
const EVERY: Duration = Duration::from_secs(1);

/// A request's place in a trace: its trace id, the caller's span (if any) and its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    pub trace_id: [u8; 16],
    pub parent: Option<[u8; 8]>,
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl Context {
    /// Continues the client's `traceparent` when it is valid, else starts a trace.
    pub fn from_header(traceparent: Option<&str>) -> Context {
        let mut span_id = [0u8; 8];
        let _ = getrandom::fill(&mut span_id);
        if let Some((trace_id, parent, sampled)) = traceparent.and_then(parse) {
            return Context {
                trace_id,
                parent: Some(parent),
                span_id,
                sampled,
            };
        }
        let mut trace_id = [0u8; 16];
        let _ = getrandom::fill(&mut trace_id);
        Context {
            trace_id,
            parent: None,
            span_id,
            sampled: true,
        }
    }

    /// The `traceparent` for the upstream request: this span is its parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            if self.sampled { "01" } else { "00" }
        )
    }
}

/// `00-<32 hex>-<16 hex>-<2 hex>` (W3C Trace Context); all-zero ids are invalid.
fn parse(header: &str) -> Option<([u8; 16], [u8; 8], bool)> {
    let mut parts = header.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || trace.len() != 32 || parent.len() != 16 {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut parent_id = [0u8; 8];
    hex::decode_to_slice(trace, &mut trace_id).ok()?;
    hex::decode_to_slice(parent, &mut parent_id).ok()?;
    let flags = u8::from_str_radix(flags.get(..2)?, 16).ok()?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some((trace_id, parent_id, flags & 1 == 1))
}

/// One finished request, as the span says it.
#[derive(Debug, Clone, Default)]
pub struct Span {
    pub name: String,
    pub start: Option<SystemTime>,
    pub end: Option<SystemTime>,
    pub status: u16,
    /// (key, value) string attributes, and integer ones.
    pub strings: Vec<(&'static str, String)>,
    pub ints: Vec<(&'static str, i64)>,
}

struct Exporter {
    tx: mpsc::Sender<(Context, Span)>,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// Whether spans are exported (the request path makes a context only then).
pub fn enabled() -> bool {
    EXPORTER.get().is_some()
}

/// Queues a finished span (dropped when the exporter is behind).
pub fn record(ctx: Context, span: Span) {
    if let Some(e) = EXPORTER.get() {
        if ctx.sampled && e.tx.try_send((ctx, span)).is_err() {
            METRICS.spans_dropped.inc();
        }
    }
}

/// Starts exporting to `endpoint` (`http://collector:4318`; spans go to `/v1/traces`); the
/// returned future posts batches until the process stops.
pub fn install(endpoint: &str, service: &str) -> impl std::future::Future<Output = ()> {
    let (tx, mut rx) = mpsc::channel(QUEUE);
    let _ = EXPORTER.set(Exporter { tx });
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let service = service.to_owned();
    async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let deadline = tokio::time::sleep(EVERY);
            tokio::pin!(deadline);
            while batch.len() < BATCH {
                tokio::select! {
                    got = rx.recv() => match got {
                        Some(s) => batch.push(s),
                        None => return,
                    },
                    _ = &mut deadline => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            let body = encode(&service, &batch);
            batch.clear();
            match client.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => log::warn!("OTLP export to {url}: {}", r.status()),
                Err(e) => log::warn!("OTLP export to {url}: {e}"),
            }
        }
    }
}

fn nanos(t: Option<SystemTime>) -> String {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos().to_string())
        .unwrap_or_else(|| "0".to_owned())
}

/// The OTLP/JSON `ExportTraceServiceRequest` for a batch.
fn encode(service: &str, batch: &[(Context, Span)]) -> Value {
    let spans: Vec<Value> = batch
        .iter()
        .map(|(ctx, s)| {
            let mut attributes: Vec<Value> = s
                .strings
                .iter()
                .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
                .collect();
            attributes.extend(
                s.ints
                    .iter()
                    .map(|(k, v)| json!({"key": k, "value": {"intValue": v.to_string()}})),
            );
            attributes.push(json!({"key": "http.response.status_code", "value": {"intValue": s.status.to_string()}}));
            let mut span = json!({
                "traceId": hex::encode(ctx.trace_id),
                "spanId": hex::encode(ctx.span_id),
                "name": s.name,
                "kind": 2,
                "startTimeUnixNano": nanos(s.start),
                "endTimeUnixNano": nanos(s.end),
                "attributes": attributes,
                // 2 = error: Sluice or the upstream failed (5xx) or the request never got an answer.
                "status": {"code": if s.status >= 500 || s.status == 0 { 2 } else { 0 }},
            });
            if let Some(parent) = ctx.parent {
                span["parentSpanId"] = json!(hex::encode(parent));
            }
            span
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "sluice", "version": env!("CARGO_PKG_VERSION")}, "spans": spans}],
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_continued_or_started() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = Context::from_header(Some(h));
        assert_eq!(hex::encode(c.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            c.parent.map(hex::encode).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(c.sampled);
        let up = c.traceparent();
        assert!(up.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && up.ends_with("-01"));
        assert_ne!(
            &up[36..52],
            "00f067aa0ba902b7",
            "our own span, not the caller's"
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            let c = Context::from_header(Some(bad));
            assert!(c.parent.is_none(), "{bad}");
        }
        assert!(
            !Context::from_header(Some(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
            ))
            .sampled
        );
    }
}
