//! Admin listener: `/metrics` (Prometheus), `/healthz` (process up), `/readyz` (a good snapshot is
//! serving), `/ca.pem` (the forward proxy's CA certificate). The control-plane API will live here too.

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

use crate::balance::KeyState;
use crate::clock::now_ms;
use crate::config::ConfigStore;
use crate::metrics::METRICS;

pub struct Admin {
    pub store: Arc<ConfigStore>,
    /// The forward proxy's CA certificate (PEM), when the forward listener is on.
    pub ca_pem: Option<String>,
}

const KEY_STATES: [&str; 5] = [
    "healthy",
    "cooling_down",
    "quarantined",
    "draining",
    "disabled",
];

impl Admin {
    /// Key gauges are derived from the live snapshot at scrape time: cool-downs expire by the
    /// clock, not by an event, and keys removed by a reload must disappear.
    fn refresh_key_gauges(&self) {
        let snap = self.store.snapshot();
        let now = now_ms();
        METRICS.key_state.reset();
        METRICS.key_weight.reset();
        for provider in &snap.providers {
            for (key, member) in provider.keys.iter().zip(provider.pool.members()) {
                let state = if !key.enabled {
                    "disabled"
                } else if key.weight == 0 {
                    "draining"
                } else {
                    match member.health.state(now) {
                        KeyState::Healthy => "healthy",
                        other => other.as_str(),
                    }
                };
                for s in KEY_STATES {
                    METRICS
                        .key_state
                        .with_label_values(&[&provider.name, &key.id, s])
                        .set(i64::from(s == state));
                }
                METRICS
                    .key_weight
                    .with_label_values(&[&provider.name, &key.id])
                    .set(i64::from(key.weight));
            }
        }
    }
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = resp.body().len();
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, len.into());
    resp
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        match path.as_str() {
            "/metrics" => {
                self.refresh_key_gauges();
                reply(200, "text/plain; version=0.0.4", METRICS.render())
            }
            "/ca.pem" => match &self.ca_pem {
                Some(pem) => reply(200, "application/x-pem-file", pem.clone().into_bytes()),
                None => reply(
                    404,
                    "application/json",
                    br#"{"error":"the forward proxy is off (listeners.forward): no CA"}"#.to_vec(),
                ),
            },
            "/healthz" => reply(200, "application/json", br#"{"status":"ok"}"#.to_vec()),
            "/readyz" => {
                if self.store.is_ready() {
                    let body = serde_json::json!({"status": "ready", "revision": self.store.snapshot().revision});
                    reply(200, "application/json", body.to_string().into_bytes())
                } else {
                    reply(
                        503,
                        "application/json",
                        br#"{"status":"starting"}"#.to_vec(),
                    )
                }
            }
            _ => reply(
                404,
                "application/json",
                br#"{"error":"not found"}"#.to_vec(),
            ),
        }
    }
}
