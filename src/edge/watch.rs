//! Live certificate replacement: a change in a directory holding a listener's certificate or
//! key (in place, a rename over the file, or Kubernetes' `..data` symlink swap alike) or
//! SIGHUP reloads every TLS listener's certificates. Handshakes in flight finish with the set
//! they started with; a set that does not load leaves the previous one serving.

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::certs::ListenerCerts;
use crate::config::watch::{change_events, hangups, next_hangup, settle};

pub struct CertWatcher {
    pub certs: Vec<Arc<ListenerCerts>>,
}

impl CertWatcher {
    fn reload_all(&self) {
        for certs in &self.certs {
            match certs.reload() {
                Ok(()) => log::info!("reloaded the certificates of {certs:?}"),
                Err(e) => {
                    log::error!("certificates not reloaded, the previous ones keep serving: {e:#}")
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for CertWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let dirs: BTreeSet<PathBuf> = self
            .certs
            .iter()
            .flat_map(|c| c.files())
            .flat_map(|f| [&f.cert, &f.key])
            .map(|p| match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
                _ => PathBuf::from("."),
            })
            .collect();
        let dirs: Vec<PathBuf> = dirs.into_iter().collect();
        // Any change in those directories: a mounted secret changes a `..data` link, not the
        // files' names. A reload is a few file reads, and one that changes nothing is harmless.
        let (_watcher, mut rx) = change_events(&dirs, |_| true);
        let mut hangup = hangups();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = rx.recv() => {}
                Some(()) = next_hangup(&mut hangup) => log::info!("SIGHUP: reloading certificates"),
            }
            settle(&mut rx).await;
            self.reload_all();
        }
    }
}
