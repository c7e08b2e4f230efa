//! Turning a finished request's context into its audit record and token metrics.

use pingora_proxy::Session;

use super::ctx::RequestCtx;
use crate::audit::{AuditRecord, AuditSink, Stream};
use crate::metrics::{model_label, METRICS};

/// Longest field values recorded: a client chooses the path, the method, the model and (in
/// forward mode) the host, and must not be able to write 64 KiB lines with them.
const MAX_PATH: usize = 512;
const MAX_METHOD: usize = 16;
const MAX_MODEL: usize = 128;
const MAX_HOST: usize = 255;
const MAX_PRINCIPAL: usize = 256;

/// `text` cut to at most `max` bytes, at a character boundary.
fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

pub fn record(sink: &AuditSink, session: &Session, ctx: &mut RequestCtx, status: u16) {
    let req = session.req_header();
    let (model, usage, bytes_in, bytes_out, ttfb, stream) = match ctx.accounting.as_mut() {
        Some(acc) => {
            let stream = acc.usage.as_ref().is_some_and(|u| u.is_stream());
            let usage = acc.usage.as_mut().and_then(|u| u.finish());
            (
                acc.model.model().map(str::to_owned),
                usage,
                acc.bytes_in,
                acc.bytes_out,
                acc.ttfb,
                stream,
            )
        }
        None => (None, None, 0, 0, None, false),
    };
    // The model a fallback provider was asked for instead, when the chain maps it.
    let model = ctx
        .fallback()
        .and_then(|f| f.served_model.clone())
        .or(model);
    let route = ctx.route();
    let provider = ctx.provider().map(|p| p.name.as_str());
    let key = ctx.key();
    if let (Some(provider), Some(usage)) = (provider, usage) {
        count_tokens(provider, model.as_deref(), &usage);
    }
    let principal = ctx.principal.as_deref();
    let record = AuditRecord {
        time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        request_id: &ctx.request_id,
        client: ctx.client.map(|ip| ip.to_string()),
        principal: principal.map(|p| clip(&p.key, MAX_PRINCIPAL)),
        name: principal.map(|p| clip(&p.name, MAX_PRINCIPAL)),
        token_id: principal.and_then(|p| p.token_id.as_deref()),
        credential_kind: principal.map(|p| p.kind.as_str()),
        owner: principal.and_then(|p| p.owner_name()),
        provider_credential: route.map(|_| if key.is_some() { "centralized" } else { "byok" }),
        key_id: key.map(|k| k.id.as_str()),
        key_hint: key.map(|k| k.hint.as_str()),
        provider,
        route: route.map(|r| {
            if r.label.is_empty() {
                "/"
            } else {
                r.label.as_str()
            }
        }),
        host: ctx.forward_host.as_deref().map(|h| clip(h, MAX_HOST)),
        method: clip(req.method.as_str(), MAX_METHOD),
        path: clip(req.uri.path(), MAX_PATH),
        model: model.as_deref().map(|m| clip(m, MAX_MODEL)),
        stream,
        status,
        reason: ctx.reason,
        latency_ms: ctx.started.elapsed().as_secs_f64() * 1000.0,
        ttfb_ms: ttfb.map(|d| d.as_secs_f64() * 1000.0),
        bytes_in,
        bytes_out,
        usage,
        fallback: ctx.fallback().map_or(&[], |f| f.tried.as_slice()),
    };
    match serde_json::to_vec(&record) {
        Ok(mut line) => {
            line.push(b'\n');
            let stream = if ctx.refused {
                Stream::Refused
            } else {
                Stream::Usage
            };
            sink.record(&line, stream);
        }
        Err(e) => log::warn!("audit record not encoded: {e}"),
    }
}

/// An audit event for a budget that crossed its warning share (once per period and holder).
pub fn record_budget_warning(sink: &AuditSink, request_id: &str, w: &crate::budgets::Warning) {
    let record = serde_json::json!({
        "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        "request_id": request_id,
        "event": "budget_warning",
        "budget": w.budget,
        "holder": w.holder.as_deref().map(|h| clip(h, MAX_PRINCIPAL)),
        "share": (w.share * 1000.0).round() / 1000.0,
    });
    let mut line = record.to_string().into_bytes();
    line.push(b'\n');
    sink.record(&line, Stream::Usage);
}

/// `sluice_tokens_total` by provider, model and direction.
fn count_tokens(provider: &str, model: Option<&str>, usage: &crate::audit::Usage) {
    let model = model_label(model.unwrap_or("unknown"));
    for (direction, n) in [
        ("input", usage.input),
        ("output", usage.output),
        ("cache_read", usage.cache_read),
        ("cache_write", usage.cache_write),
    ] {
        if n > 0 {
            METRICS
                .tokens
                .with_label_values(&[provider, model, direction])
                .inc_by(n);
        }
    }
}

/// One audit record and one `sluice_mcp_requests_total` count per MCP request: the principal,
/// the server, the JSON-RPC method and tool, never arguments or results unless the server has
/// `record_payloads`.
pub fn record_mcp(
    sink: Option<&AuditSink>,
    http_method: &str,
    request_id: &str,
    started: std::time::Instant,
    mcp: &super::mcp::McpCtx,
    status: u16,
) {
    let (method, tool) = match http_method {
        "GET" => ("stream", None),
        "DELETE" => ("delete", None),
        _ => super::mcp::method_and_tool(&mcp.body),
    };
    let outcome = crate::metrics::STATUS_CLASSES[crate::metrics::status_class_index(status)];
    METRICS
        .mcp_requests
        .with_label_values(&[mcp.server.name.as_str(), method, outcome])
        .inc();
    let Some(sink) = sink else { return };
    let mut record = serde_json::json!({
        "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        "request_id": request_id,
        "event": "mcp",
        "principal": clip(&mcp.who, MAX_PRINCIPAL),
        "mcp_server": mcp.server.name,
        "http_method": clip(http_method, MAX_METHOD),
        "method": method,
        "tool": tool,
        "status": status,
        "rpc_error": mcp.rpc_error.code,
        "latency_ms": started.elapsed().as_secs_f64() * 1000.0,
        "bytes_in": mcp.bytes_in,
        "bytes_out": mcp.bytes_out,
    });
    if let Some(decision) = mcp.decision {
        record["policy"] = decision.into();
        if let Some(lists) = &mcp.lists {
            record["hidden"] = lists.hidden.into();
        }
    }
    if mcp.server.record_payloads {
        record["request"] = serde_json::from_slice(&mcp.body).unwrap_or_default();
    }
    let mut line = record.to_string().into_bytes();
    line.push(b'\n');
    sink.record(&line, Stream::Usage);
}
