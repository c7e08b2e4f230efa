//! Per-request state. The snapshot is loaded once, here, so a request sees one consistent
//! configuration from its first filter to `logging()` even if a reload happens meanwhile.

use std::sync::Arc;
use std::time::Instant;

use crate::auth::Principal;
use crate::config::{Provider, ProviderKey, Route, Snapshot};

#[derive(Debug)]
pub struct RequestCtx {
    pub snap: Arc<Snapshot>,
    pub started: Instant,
    /// Index into `snap.routes`.
    pub route: Option<usize>,
    pub principal: Option<Arc<Principal>>,
    /// Index into the provider's `keys`; `None` when the client's own key is used (BYOK).
    pub key: Option<usize>,
    /// Upstream connection attempts after the first (a failed connect is retried once).
    pub retries: usize,
    /// Why Sluice refused the request itself, for metrics and logs.
    pub reason: Option<&'static str>,
}

impl RequestCtx {
    pub fn new(snap: Arc<Snapshot>) -> RequestCtx {
        RequestCtx {
            snap,
            started: Instant::now(),
            route: None,
            principal: None,
            key: None,
            retries: 0,
            reason: None,
        }
    }

    pub fn route(&self) -> Option<&Route> {
        self.route.and_then(|i| self.snap.routes.get(i))
    }

    pub fn provider(&self) -> Option<&Provider> {
        self.route().map(|r| &*r.provider)
    }

    pub fn key(&self) -> Option<&ProviderKey> {
        let provider = self.provider()?;
        self.key.and_then(|i| provider.keys.get(i))
    }
}
