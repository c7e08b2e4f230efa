//! Admin listener (axum): `/metrics` (Prometheus), `/healthz` (process up), `/readyz` (a good
//! snapshot is serving), `/ca.pem` (the forward proxy's CA certificate), and — when this process
//! runs the control plane — the `/v1` admin API.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
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
        METRICS.budget_spent_usd.reset();
        METRICS.budget_spent_tokens.reset();
        let now = crate::clock::unix_now();
        for b in &snap.budgets.all {
            if let Some((tokens, usd)) = self.store.budgets.spent(&b.spec.name, now) {
                METRICS
                    .budget_spent_usd
                    .with_label_values(&[&b.spec.name])
                    .set(usd);
                METRICS
                    .budget_spent_tokens
                    .with_label_values(&[&b.spec.name])
                    .set(tokens as i64);
            }
        }
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

    /// The base routes of the admin listener.
    pub fn router(self) -> Router {
        let mut router = Router::new();
        if crate::clock::test_clock_enabled() {
            log::warn!(
                "SLUICE_TEST_CLOCK=1 (a debug build): POST /_test/clock/advance moves the clocks"
            );
            router = router.route("/_test/clock/advance", axum::routing::post(advance_clock));
        }
        router
            .route("/metrics", get(metrics))
            .route(
                "/healthz",
                get(|| async { json(StatusCode::OK, r#"{"status":"ok"}"#.into()) }),
            )
            .route("/readyz", get(readyz))
            .route("/ca.pem", get(ca_pem))
            .with_state(Arc::new(self))
            .fallback(|| async {
                json(
                    StatusCode::NOT_FOUND,
                    r#"{"error":{"code":"not_found","message":"no such endpoint"}}"#.into(),
                )
            })
    }
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    admin.refresh_key_gauges();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        METRICS.render(),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct Advance {
    ms: u64,
}

/// Tests only (`clock::test_clock_enabled`): both clocks `ms` forward.
async fn advance_clock(axum::extract::Query(a): axum::extract::Query<Advance>) -> Response {
    // At most a day at a time: the monotonic clock must not overflow.
    crate::clock::advance(a.ms.min(86_400_000));
    json(StatusCode::OK, format!(r#"{{"advanced_ms":{}}}"#, a.ms))
}

async fn readyz(State(admin): State<Arc<Admin>>) -> Response {
    if admin.store.is_ready() {
        let snap = admin.store.snapshot();
        let body = serde_json::json!({"status": "ready", "revision": snap.revision, "control_revision": snap.control_revision});
        json(StatusCode::OK, body.to_string())
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"starting"}"#.into(),
        )
    }
}

async fn ca_pem(State(admin): State<Arc<Admin>>) -> Response {
    match &admin.ca_pem {
        Some(pem) => ([(header::CONTENT_TYPE, "application/x-pem-file")], pem.clone()).into_response(),
        None => json(
            StatusCode::NOT_FOUND,
            r#"{"error":{"code":"not_found","message":"the forward proxy is off (listeners.forward): no CA"}}"#.into(),
        ),
    }
}

/// The admin listener over TLS. Connections are accepted and their handshakes run in tasks of
/// their own (10 s at most), so a slow or silent client cannot hold up the others.
pub struct TlsListener {
    local: std::net::SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsConn, std::net::SocketAddr)>,
}

type TlsConn = pingora::tls::ServerTlsStream<tokio::net::TcpStream>;

const TLS_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

impl TlsListener {
    pub fn new(
        listener: tokio::net::TcpListener,
        config: Arc<pingora::tls::ServerConfig>,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let acceptor = pingora::tls::TlsAcceptor::from(config);
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            while !tx.is_closed() {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        log::warn!("admin listener: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => log::debug!("admin TLS handshake from {peer}: {e}"),
                        Err(_) => log::debug!("admin TLS handshake from {peer}: timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsConn;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
