//! One audit record per request, built in `logging()` and handed to a sink that writes it off the
//! hot path. A full or failing sink never blocks or fails a request: the record is dropped and
//! `sluice_audit_dropped_total{reason}` counts it.

pub mod report;
pub mod scan;
pub mod sink;
pub mod usage;

use serde::Serialize;

pub use scan::ModelScanner;
pub use sink::{AuditSink, Stream};
pub use usage::{Usage, UsageParser};

/// What one request did. Never holds a secret: credentials appear as ids, provider keys as a
/// masked hint.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// RFC 3339, UTC.
    pub time: String,
    pub request_id: &'a str,
    /// The client's address: the connection's peer, or the address a trusted proxy
    /// (`server.trusted_proxies`) forwarded for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The principal's one rendering (`token:{id}`, `owner:{name}[#{id}]`,
    /// `jwt:{issuer}:{subject}`, `app:{client_id}`, `anonymous`).
    pub principal: Option<&'a str>,
    /// What people call it: a token's name, an owner's name, a subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// The opaque token presented, by id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<&'a str>,
    /// `opaque`, `jwt` or `anonymous`.
    pub credential_kind: Option<&'a str>,
    pub owner: Option<&'a str>,
    /// `centralized` (a pool key) or `byok` (the client's own key).
    pub provider_credential: Option<&'static str>,
    pub key_id: Option<&'a str>,
    pub key_hint: Option<&'a str>,
    pub provider: Option<&'a str>,
    /// For requests intercepted by the forward proxy, the route their provider is reached by
    /// (`forward` when none is declared).
    pub route: Option<&'a str>,
    /// Destination host of a forward-proxy request.
    pub host: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub model: Option<&'a str>,
    pub stream: bool,
    pub status: u16,
    /// Why Sluice refused or failed the request itself.
    pub reason: Option<&'a str>,
    pub latency_ms: f64,
    /// Time to the response head.
    pub ttfb_ms: Option<f64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub usage: Option<Usage>,
    /// The providers tried before the one that answered (a route's fallback chain), in order;
    /// `provider` and `key_id` name the one that answered.
    #[serde(skip_serializing_if = "<[Attempt]>::is_empty")]
    pub fallback: &'a [Attempt],
}

/// A provider that failed before its answer started, so the request moved on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// `500`…`599`, `429`, `connect` or `timeout`.
    pub outcome: String,
}
