//! When each opaque token was last used: an atomic per token on the request path, written to
//! `data_dir/token-last-used.json` in batches by a background service.

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FLUSH_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct LastUsed(AtomicU64);

impl LastUsed {
    /// Records a use (Unix seconds); one relaxed load in the common case of the same second.
    pub fn mark(&self, now_unix: u64) {
        if self.0.load(Ordering::Relaxed) < now_unix {
            self.0.store(now_unix, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Last-use records by token id, shared by all snapshots.
#[derive(Debug, Default)]
pub struct UsageRegistry {
    entries: Mutex<HashMap<String, Arc<LastUsed>>>,
}

impl UsageRegistry {
    pub fn get(&self, id: &str) -> Arc<LastUsed> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.entry(id.to_owned()).or_default().clone()
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .filter(|(_, v)| v.get() > 0)
            .map(|(k, v)| (k.clone(), v.get()))
            .collect()
    }
}

/// Writes the registry to disk when it changed (atomically: temp file then rename).
pub struct UsageFlusher {
    pub registry: Arc<UsageRegistry>,
    pub file: PathBuf,
}

impl UsageFlusher {
    fn flush(&self, last: &mut BTreeMap<String, u64>) {
        let now = self.registry.snapshot();
        if now == *last {
            return;
        }
        let body = serde_json::to_vec_pretty(&now).unwrap_or_default();
        match crate::private::replace(&self.file, &body) {
            Ok(()) => *last = now,
            Err(e) => log::warn!("cannot write {}: {e:#}", self.file.display()),
        }
    }
}

#[async_trait]
impl BackgroundService for UsageFlusher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut last = BTreeMap::new();
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    self.flush(&mut last);
                    return;
                }
                _ = tick.tick() => self.flush(&mut last),
            }
        }
    }
}
