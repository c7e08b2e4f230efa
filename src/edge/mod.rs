//! What happens to a connection on a public listener before HTTP: the PROXY protocol header of
//! a trusted load balancer (the client's real address), the connection caps counted by that
//! address, then TLS (a certificate chosen by SNI, HTTP/2 or HTTP/1.1 by ALPN). The listener's
//! HTTP application gets the connection after all three.

pub mod certs;
pub mod proxy_protocol;
pub mod self_signed;
pub mod watch;

use async_trait::async_trait;
use ipnet::IpNet;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{Ssl, Stream, ALPN};
use pingora::server::ShutdownWatch;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::METRICS;
use crate::proxy::conn_caps::ConnCaps;
use certs::ListenerCerts;

/// A listener's application behind its edge.
pub struct Edge<A> {
    pub inner: Arc<A>,
    pub caps: Arc<ConnCaps>,
    /// TLS, when the listener serves HTTPS.
    pub tls: Option<Arc<EdgeTls>>,
    /// Load balancers whose connections start with a PROXY protocol header.
    pub proxy_protocol_from: Arc<[IpNet]>,
    /// How long the PROXY header and the TLS handshake may take, together.
    pub handshake_timeout: Duration,
}

/// A TLS listener's acceptor and the certificates its resolver serves (kept for reloads).
pub struct EdgeTls {
    pub acceptor: Acceptor,
    pub certs: Arc<ListenerCerts>,
}

impl EdgeTls {
    /// With `client_ca`, clients may present a certificate it issued; its identity reaches
    /// admission (`auth: client_cert`).
    pub fn new(
        certs: Arc<ListenerCerts>,
        http2: bool,
        client_ca: Option<&std::path::Path>,
    ) -> anyhow::Result<EdgeTls> {
        let config = certs.server_config(http2, client_ca)?;
        let mut acceptor = Acceptor::from_server_config(Arc::new(config));
        if client_ca.is_some() {
            acceptor = acceptor.with_callbacks(Box::new(certs::PeerCertCallback));
        }
        Ok(EdgeTls { acceptor, certs })
    }
}

fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
}

/// One edge for several services (a proxy thread each, `server.thread_per_core`): the same
/// application, caps and certificates.
impl<A> Clone for Edge<A> {
    fn clone(&self) -> Self {
        Edge {
            inner: self.inner.clone(),
            caps: self.caps.clone(),
            tls: self.tls.clone(),
            proxy_protocol_from: self.proxy_protocol_from.clone(),
            handshake_timeout: self.handshake_timeout,
        }
    }
}

impl<A> Edge<A> {
    fn listener(&self) -> &'static str {
        self.caps.listener()
    }

    /// The connection with its client's address: read from the PROXY header when the peer
    /// is a trusted load balancer. `None`: closed (no valid header in time).
    async fn client_of(&self, stream: Stream, deadline: tokio::time::Instant) -> Option<Stream> {
        let from_balancer = peer_ip(&stream)
            .is_some_and(|ip| self.proxy_protocol_from.iter().any(|n| n.contains(&ip)));
        if !from_balancer {
            return Some(stream);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let result = proxy_protocol::read(stream, left).await;
        let outcome = match &result {
            Ok((_, proxy_protocol::Header::Proxied(_))) => "ok",
            Ok((_, proxy_protocol::Header::Local)) => "local",
            Err(refused) => refused.as_str(),
        };
        METRICS
            .proxy_protocol
            .with_label_values(&[self.listener(), outcome])
            .inc();
        result.ok().map(|(stream, _)| stream)
    }

    /// The TLS handshake (boxed: a plain connection's task does not carry its size).
    async fn handshake(
        &self,
        tls: &EdgeTls,
        stream: Stream,
        deadline: tokio::time::Instant,
    ) -> Option<Stream> {
        // Pingora's listeners accept plain TCP streams (TLS is done here).
        let l4 = stream.into_any().downcast::<L4Stream>().ok()?;
        let handshake = Box::pin(tls.acceptor.tls_handshake(*l4));
        let (result, stream) = match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(tls)) => {
                let result = match tls.selected_alpn_proto() {
                    Some(ALPN::H2) => "h2",
                    _ => "http/1.1",
                };
                (result, Some(Box::new(tls) as Stream))
            }
            Ok(Err(e)) => {
                log::debug!("{} listener: TLS handshake failed: {e}", self.listener());
                ("failed", None)
            }
            Err(_) => ("timeout", None),
        };
        METRICS
            .tls_handshakes
            .with_label_values(&[self.listener(), result])
            .inc();
        stream
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Edge<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let deadline = tokio::time::Instant::now() + self.handshake_timeout;
        let stream = self.client_of(stream, deadline).await?;
        let _slot = match self.caps.admit(peer_ip(&stream)) {
            Ok(slot) => slot,
            Err(reason) => {
                METRICS
                    .connections_refused
                    .with_label_values(&[self.listener(), reason])
                    .inc();
                return None;
            }
        };
        let stream = match &self.tls {
            Some(tls) => self.handshake(tls, stream, deadline).await?,
            None => stream,
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}
