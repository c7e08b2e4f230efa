//! Where audit records go: JSON lines appended to a file (rotated by size) or to stdout, written
//! by a background service from a bounded queue.

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use tokio::sync::mpsc;

use crate::metrics::METRICS;

/// The request side: `record()` never waits.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Vec<u8>>,
}

impl AuditSink {
    /// A sink and the writer service that drains it.
    pub fn new(target: Target, queue: usize) -> (AuditSink, AuditWriter) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        (
            AuditSink { tx },
            AuditWriter {
                rx: Mutex::new(Some(rx)),
                target,
            },
        )
    }

    /// Queues one JSON line; drops it (counted) when the writer is behind.
    pub fn record(&self, line: Vec<u8>) {
        if let Err(e) = self.tx.try_send(line) {
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => "queue_full",
                mpsc::error::TrySendError::Closed(_) => "closed",
            };
            METRICS.audit_dropped.with_label_values(&[reason]).inc();
        }
    }
}

#[derive(Debug, Clone)]
pub enum Target {
    Stdout,
    File {
        path: PathBuf,
        max_bytes: u64,
        keep: usize,
    },
}

pub struct AuditWriter {
    rx: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    target: Target,
}

/// An open audit file and its size, rotated to `path.1`, `path.2`, … when it would pass `max_bytes`.
struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<std::fs::File>,
    size: u64,
}

impl RotatingFile {
    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
            self.file = Some(file);
        }
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
            return self.write(line);
        }
        if let Some(file) = self.file.as_mut() {
            file.write_all(line)?;
            self.size += line.len() as u64;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let numbered = |n: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            return std::fs::remove_file(&self.path);
        }
        let _ = std::fs::remove_file(numbered(self.keep));
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&self.path, numbered(1))
    }
}

#[async_trait]
impl BackgroundService for AuditWriter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut rx) = self.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let mut file = match &self.target {
            Target::File {
                path,
                max_bytes,
                keep,
            } => Some(RotatingFile {
                path: path.clone(),
                max_bytes: *max_bytes,
                keep: *keep,
                file: None,
                size: 0,
            }),
            Target::Stdout => None,
        };
        loop {
            let line = tokio::select! {
                line = rx.recv() => line,
                _ = shutdown.changed() => {
                    // Drain what is queued, then stop.
                    rx.close();
                    rx.recv().await
                }
            };
            let Some(line) = line else { return };
            let written = match file.as_mut() {
                Some(f) => f.write(&line),
                None => std::io::stdout().lock().write_all(&line),
            };
            if let Err(e) = written {
                METRICS
                    .audit_dropped
                    .with_label_values(&["write_error"])
                    .inc();
                log::warn!("audit record not written: {e}");
            }
        }
    }
}
