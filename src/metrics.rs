//! Prometheus metrics. Labels are bounded: route prefixes, provider names and key ids come from
//! configuration; nothing from a request (user, token, model) is ever a label value.
//! Per-route and per-key handles are resolved when a snapshot is built, so the hot path
//! increments an `IntCounter` directly instead of hashing label values.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::LazyLock;

/// The metrics as one table: each line is a field of `Metrics` and the definition that
/// creates and registers it.
macro_rules! metrics {
    ($($field:ident: $ty:ty = $make:ident($($arg:expr),* $(,)?);)*) => {
        pub struct Metrics {
            pub registry: Registry,
            $(pub $field: $ty,)*
        }

        impl Metrics {
            fn new() -> Metrics {
                let r = Registry::new();
                Metrics {
                    $($field: $make(&r, $($arg),*),)*
                    registry: r,
                }
            }
        }
    };
}

metrics! {
    requests: IntCounterVec = counter_vec("sluice_requests_total", "Requests answered, by route, provider and status class", &["route", "provider", "status_class"]);
    request_duration: HistogramVec = histogram_vec("sluice_request_duration_seconds", "Time from request head to the end of the response, by route and provider", &["route", "provider"], &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]);
    rejected: IntCounterVec = counter_vec("sluice_rejected_requests_total", "Requests refused by Sluice itself, by reason", &["reason"]);
    limits_backend_up: IntGauge = gauge("sluice_limits_backend_up", "1 while the shared limits backend (server.limits_backend, Redis) answers; 0: each replica enforces its share of every limit");
    key_health_messages: IntCounterVec = counter_vec("sluice_key_health_messages_total", "Key-health messages from other replicas, by outcome (applied, forged, other_secret, too_long, expired, unknown_key)", &["outcome"]);
    limits_replicas: IntGauge = gauge("sluice_limits_replicas", "Data-plane replicas alive in the shared limits backend (the divisor of the fallback shares)");
    budget_warnings: IntCounterVec = counter_vec("sluice_budget_warnings_total", "Budgets (and holders) whose spend crossed their warning share this period, by budget", &["budget"]);
    budget_spent_usd: GaugeVec = fgauge_vec("sluice_budget_spent_usd", "US dollars spent in the current period, by budget (all holders)", &["budget"]);
    budget_spent_tokens: IntGaugeVec = gauge_vec("sluice_budget_spent_tokens", "Tokens spent in the current period, by budget (all holders)", &["budget"]);
    spans_dropped: IntCounter = counter("sluice_trace_spans_dropped_total", "Trace spans not exported because the exporter was behind (server.otlp_endpoint)");
    fallbacks: IntCounterVec = counter_vec("sluice_fallbacks_total", "Requests moved on to a route's next provider, by the provider that failed and how (500, 429, connect, timeout)", &["provider", "outcome"]);
    limited: IntCounterVec = counter_vec("sluice_limit_refusals_total", "Requests refused by a limit, by limit name and reason (rate_limited, token_rate_limited, concurrency_limited)", &["limit", "reason"]);
    upstream_requests: IntCounterVec = counter_vec("sluice_upstream_requests_total", "Requests sent upstream, by provider and key id", &["provider", "key"]);
    upstream_responses: IntCounterVec = counter_vec("sluice_upstream_responses_total", "Upstream response heads, by provider, key id and status class", &["provider", "key", "status_class"]);
    connect_failures: IntCounterVec = counter_vec("sluice_upstream_connect_failures_total", "Failed upstream connection attempts, by provider and the key the request carried", &["provider", "key"]);
    key_state: IntGaugeVec = gauge_vec("sluice_key_state", "1 for the state each provider key is in (healthy, cooling_down, quarantined, draining, disabled)", &["provider", "key", "state"]);
    key_weight: IntGaugeVec = gauge_vec("sluice_key_weight", "Configured weight of each provider key", &["provider", "key"]);
    config_reloads: IntCounterVec = counter_vec("sluice_config_reload_total", "Configuration reloads by result (success, invalid, refused, unchanged)", &["result"]);
    auth_cache: IntCounterVec = counter_vec("sluice_jwt_cache_total", "JWT checks by verified-token cache result (hit, miss)", &["result"]);
    jwks_fetches: IntCounterVec = counter_vec("sluice_jwks_fetches_total", "JWKS fetches by issuer name and result (ok, error)", &["issuer", "result"]);
    audit_dropped: IntCounterVec = counter_vec("sluice_audit_dropped_total", "Audit records not written, by reason (queue_full, write_error, closed)", &["reason"]);
    tokens: IntCounterVec = counter_vec("sluice_tokens_total", "Model tokens by provider, model (first 50 seen, then `other`) and direction (input, output, cache_read, cache_write)", &["provider", "model", "direction"]);
    by_credential: IntCounterVec = counter_vec("sluice_requests_by_credential_total", "Requests by credential kind (opaque, jwt, anonymous, none)", &["kind"]);
    config_revision: IntGauge = gauge("sluice_config_revision", "Revision of the snapshot serving requests");
    config_last_success: IntGauge = gauge("sluice_config_last_reload_success_timestamp_seconds", "Unix time of the last successful configuration load");
    forward_connects: IntCounterVec = counter_vec("sluice_forward_connects_total", "Forward-proxy connections by outcome (intercepted, tunnelled, denied, auth_failed, bad_request, timeout, upstream_error, tls_failed, sni_mismatch, plain_http)", &["outcome"]);
    connections: IntGaugeVec = gauge_vec("sluice_connections", "Client connections held now, by listener (proxy, forward)", &["listener"]);
    connections_refused: IntCounterVec = counter_vec("sluice_connections_refused_total", "Client connections closed at accept for a cap, by listener and reason (total: server.max_connections, per_source: server.max_connections_per_source)", &["listener", "reason"]);
    forward_tunnels: IntGauge = gauge("sluice_forward_tunnels", "Forward-proxy connections open now (blind tunnels and intercepted connections)");
    forward_tunnel_bytes: IntCounterVec = counter_vec("sluice_forward_tunnel_bytes_total", "Bytes through blind tunnels, by direction (up: client to destination, down)", &["direction"]);
    forward_leaf_certs: IntCounterVec = counter_vec("sluice_forward_leaf_cert_cache_total", "Intercepted-host certificate lookups by cache result (hit, miss)", &["result"]);
    config_synchronized: IntGauge = gauge("sluice_config_synchronized", "1 when the last exchange with the control plane succeeded (0: serving the last good state)");
    control_plane_staleness: IntGauge = gauge("sluice_control_plane_staleness_seconds", "Seconds since this data plane last heard from its control plane (server.control_plane_max_staleness_seconds)");
    control_revision: IntGauge = gauge("sluice_control_revision", "Control-plane revision this data plane serves");
    mcp_requests: IntCounterVec = counter_vec("sluice_mcp_requests_total", "MCP requests by server, JSON-RPC method (a fixed set; other, batch, stream, delete) and outcome (status class, or refused)", &["server", "method", "outcome"]);
    oauth_grants: IntGaugeVec = gauge_vec("sluice_oauth_grants", "Users' grants held in the token vault, by OAuth provider (control plane)", &["provider"]);
    proxy_path: IntCounterVec = counter_vec("sluice_proxy_path_total", "Requests on the proxy listener by the loop that served them (sluice: Sluice's own HTTP/1 loop; pingora: pingora-proxy, for HTTP/2, upgrades, 100-continue, CONNECT, or server.proxy_loop: pingora)", &["path"]);
    upstream_pool: IntCounterVec = counter_vec("sluice_upstream_pool_total", "Upstream connections asked of Sluice's own keep-alive pool, by result (reused, new, stale: closed or expired while idle)", &["result"]);
    tls_cert_expiry: IntGaugeVec = gauge_vec("sluice_tls_certificate_expiry_timestamp_seconds", "When each certificate a TLS listener serves expires (Unix seconds), by listener and certificate (its first name)", &["listener", "certificate"]);
    tls_reloads: IntCounterVec = counter_vec("sluice_tls_reload_total", "Certificate reloads of a TLS listener by result (ok; error: the files did not load, the previous certificates keep serving)", &["listener", "result"]);
    tls_handshakes: IntCounterVec = counter_vec("sluice_tls_handshakes_total", "TLS handshakes on a public listener by result (h2 or http/1.1: done, with the protocol ALPN agreed; failed; timeout)", &["listener", "result"]);
    proxy_protocol: IntCounterVec = counter_vec("sluice_proxy_protocol_total", "PROXY protocol headers read from trusted load balancers, by listener and result (ok, local: a health check, invalid, timeout)", &["listener", "result"]);
    oauth_events: IntCounterVec = counter_vec("sluice_oauth_events_total", "Token-vault operations by OAuth provider, event (consent, refresh, exchange, revocation) and outcome (ok, error, invalid_grant, denied)", &["provider", "event", "outcome"]);
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let m = Metrics::new();
    m.preset();
    m
});

/// Status classes used as label values, indexed by `status / 100 - 1`.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub fn status_class_index(status: u16) -> usize {
    (usize::from(status / 100)).clamp(1, 5) - 1
}

impl Metrics {
    /// Counters over a fixed set of label values start at 0, so that they are exported before
    /// the first event and `increase()` over them is right from the first one.
    fn preset(&self) {
        for reason in ["queue_full", "write_error", "closed"] {
            self.audit_dropped.with_label_values(&[reason]);
        }
        for result in ["success", "invalid", "refused", "unchanged"] {
            self.config_reloads.with_label_values(&[result]);
        }
        for outcome in [
            "intercepted",
            "tunnelled",
            "denied",
            "auth_failed",
            "bad_request",
            "timeout",
            "upstream_error",
            "tls_failed",
            "sni_mismatch",
            "plain_http",
        ] {
            self.forward_connects.with_label_values(&[outcome]);
        }
        for path in ["sluice", "pingora"] {
            self.proxy_path.with_label_values(&[path]);
        }
        for result in ["reused", "new", "stale"] {
            self.upstream_pool.with_label_values(&[result]);
        }
    }

    pub fn reload(&self, result: &str) {
        self.config_reloads.with_label_values(&[result]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("metrics encoding failed: {e}");
        }
        out
    }
}

fn register<C: prometheus::core::Collector + 'static>(r: &Registry, c: C) {
    if let Err(e) = r.register(Box::new(c)) {
        log::error!("metric registration failed: {e}");
    }
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(unreachable_metric);
    register(r, c.clone());
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(unreachable_metric);
    register(r, g.clone());
    g
}

fn fgauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(unreachable_metric);
    register(r, g.clone());
    g
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .unwrap_or_else(unreachable_metric);
    register(r, h.clone());
    h
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(unreachable_metric);
    register(r, c.clone());
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(unreachable_metric);
    register(r, g.clone());
    g
}

/// Metric definitions above are constants; an error here is a programming error caught by tests.
fn unreachable_metric<T>(e: prometheus::Error) -> T {
    panic!("invalid metric definition: {e}")
}

/// The request counter for a credential kind (a fixed set: handles resolved once).
pub fn by_credential(kind: &str) -> &'static IntCounter {
    static HANDLES: LazyLock<[IntCounter; 4]> = LazyLock::new(|| {
        ["opaque", "jwt", "anonymous", "none"]
            .map(|k| METRICS.by_credential.with_label_values(&[k]))
    });
    let i = match kind {
        "opaque" => 0,
        "jwt" => 1,
        "anonymous" => 2,
        _ => 3,
    };
    &HANDLES[i]
}

/// Model names used as label values: the first [`MAX_MODEL_LABELS`] seen, then `other`, so a
/// client sending made-up model names cannot grow the metric without bound.
pub const MAX_MODEL_LABELS: usize = 50;

pub fn model_label(model: &str) -> &'static str {
    // At most MAX_MODEL_LABELS names are ever interned (leaked), so no allocation per request.
    static SEEN: LazyLock<arc_swap::ArcSwap<Vec<&'static str>>> = LazyLock::new(Default::default);
    static WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let find = |seen: &[&'static str]| seen.iter().copied().find(|m| *m == model);
    // Lock-free in the common case: the model was seen before.
    if let Some(label) = find(&SEEN.load()) {
        return label;
    }
    let _guard = WRITER.lock().unwrap_or_else(|p| p.into_inner());
    let seen = SEEN.load();
    if let Some(label) = find(&seen) {
        return label;
    }
    if seen.len() < MAX_MODEL_LABELS {
        let label: &'static str = Box::leak(model.to_owned().into_boxed_str());
        let mut next = (**seen).clone();
        next.push(label);
        SEEN.store(std::sync::Arc::new(next));
        return label;
    }
    "other"
}

/// Counters for one route, resolved once per snapshot.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    pub by_class: [IntCounter; 5],
    pub duration: prometheus::Histogram,
}

impl RouteMetrics {
    pub fn new(route: &str, provider: &str) -> RouteMetrics {
        let m = &*METRICS;
        RouteMetrics {
            by_class: STATUS_CLASSES
                .map(|class| m.requests.with_label_values(&[route, provider, class])),
            duration: m.request_duration.with_label_values(&[route, provider]),
        }
    }
}

/// Counters for one provider key, resolved once per snapshot.
#[derive(Debug, Clone)]
pub struct KeyMetrics {
    pub requests: IntCounter,
    pub responses: [IntCounter; 5],
    pub connect_failures: IntCounter,
}

impl KeyMetrics {
    pub fn new(provider: &str, key: &str) -> KeyMetrics {
        let m = &*METRICS;
        KeyMetrics {
            requests: m.upstream_requests.with_label_values(&[provider, key]),
            responses: STATUS_CLASSES.map(|class| {
                m.upstream_responses
                    .with_label_values(&[provider, key, class])
            }),
            connect_failures: m.connect_failures.with_label_values(&[provider, key]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_metrics_register_and_render() {
        RouteMetrics::new("/x", "x").by_class[1].inc();
        METRICS.reload("success");
        let text = String::from_utf8(METRICS.render()).unwrap();
        assert!(text
            .contains("sluice_requests_total{provider=\"x\",route=\"/x\",status_class=\"2xx\"} 1"));
        assert!(text.contains("sluice_config_reload_total{result=\"success\"}"));
        assert_eq!(status_class_index(204), 1);
        assert_eq!(status_class_index(599), 4);
        assert_eq!(status_class_index(0), 0);
    }
}
