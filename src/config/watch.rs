//! Reload triggers: a change to the config file on disk (editors that write in place or rename a
//! new file over the old one alike) and SIGHUP, which also re-reads `file:` secrets.

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::ConfigStore;

/// Changes closer together than this are one reload (editors write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(150);

pub struct ConfigWatcher {
    pub store: Arc<ConfigStore>,
}

#[async_trait]
impl BackgroundService for ConfigWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let file = self.store.file().to_owned();
        let name = file.file_name().map(|n| n.to_owned());
        let dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => ".".into(),
        };
        let notify_tx = tx.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                let ours = event.paths.iter().any(|p| p.file_name() == name.as_deref());
                if ours && !event.kind.is_access() {
                    let _ = notify_tx.send(());
                }
            }
        });
        // Keep the watcher alive for as long as this service runs.
        let _watcher = match watcher {
            Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => Some(w),
                Err(e) => {
                    log::error!("cannot watch {}: {e}; reload with SIGHUP", dir.display());
                    None
                }
            },
            Err(e) => {
                log::error!("cannot watch files: {e}; reload with SIGHUP");
                None
            }
        };
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                log::error!("cannot handle SIGHUP: {e}");
                None
            }
        };
        self.store.set_watching();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = rx.recv() => {}
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    log::info!("SIGHUP: reloading {}", file.display());
                }
            }
            // Let the writer finish, then coalesce everything that arrived meanwhile.
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            let store = self.store.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || store.reload()).await {
                log::error!("reload task failed: {e}");
            }
        }
    }
}
