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

/// Change events (any but access) on files in `dirs` that `wanted` accepts. The watcher must
/// be kept for as long as events are wanted; `None` when watching is impossible (logged:
/// SIGHUP still works).
pub fn change_events(
    dirs: &[std::path::PathBuf],
    wanted: impl Fn(&std::path::Path) -> bool + Send + 'static,
) -> (
    Option<notify::RecommendedWatcher>,
    mpsc::UnboundedReceiver<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() && event.paths.iter().any(|p| wanted(p)) {
                let _ = tx.send(());
            }
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            log::error!("cannot watch files: {e}; reload with SIGHUP");
            return (None, rx);
        }
    };
    for dir in dirs {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            log::error!("cannot watch {}: {e}; reload with SIGHUP", dir.display());
        }
    }
    (Some(watcher), rx)
}

/// SIGHUP, or `None` (logged) when it cannot be handled.
pub fn hangups() -> Option<tokio::signal::unix::Signal> {
    signal(SignalKind::hangup())
        .map_err(|e| log::error!("cannot handle SIGHUP: {e}"))
        .ok()
}

/// The next SIGHUP (never, without a handler).
pub async fn next_hangup(hangup: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match hangup.as_mut() {
        Some(h) => h.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits `DEBOUNCE` and swallows the events that arrived meanwhile: editors and tools write
/// in several steps, and one reload follows them all.
pub async fn settle(rx: &mut mpsc::UnboundedReceiver<()>) {
    tokio::time::sleep(DEBOUNCE).await;
    while rx.try_recv().is_ok() {}
}

#[async_trait]
impl BackgroundService for ConfigWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let file = self.store.file().to_owned();
        let name = file.file_name().map(|n| n.to_owned());
        let dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => ".".into(),
        };
        let (_watcher, mut rx) = change_events(&[dir], move |p| p.file_name() == name.as_deref());
        let mut hangup = hangups();
        self.store.set_watching();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = rx.recv() => {}
                Some(()) = next_hangup(&mut hangup) => {
                    log::info!("SIGHUP: reloading {}", file.display());
                }
            }
            settle(&mut rx).await;
            let store = self.store.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || store.reload()).await {
                log::error!("reload task failed: {e}");
            }
        }
    }
}
