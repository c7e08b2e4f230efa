//! Snapshot rebuilds for the control plane run on one thread of their own at a lower CPU
//! priority (nice +10): on a busy machine a 20 ms rebuild of a large configuration yields the
//! CPU to the proxy's workers instead of competing with them. Requests never wait for a build
//! (they read the current snapshot); only admin writes and revision swaps do.

use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use super::crypto::MasterKey;
use super::state::ControlState;
use super::store::Dump;
use crate::config::store::ReloadOutcome;
use crate::config::ConfigStore;

type Job = Box<dyn FnOnce() + Send>;

/// How much nicer than the proxy the build thread is.
const NICE: i32 = 10;

fn queue() -> Option<&'static mpsc::Sender<Job>> {
    static QUEUE: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            let spawned = std::thread::Builder::new()
                .name("sluice-build".into())
                .spawn(move || {
                    // Linux: the nice value is per thread; this one only.
                    let me = rustix::thread::gettid();
                    if let Err(e) = rustix::process::setpriority_process(Some(me), NICE) {
                        log::debug!("snapshot builds keep the normal priority: {e}");
                    }
                    while let Ok(job) = rx.recv() {
                        // A panicking build fails its caller (its reply is dropped), not the thread.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            match spawned {
                Ok(_) => Some(tx),
                Err(e) => {
                    log::warn!("no build thread ({e}); snapshots build on the control plane's");
                    None
                }
            }
        })
        .as_ref()
}

/// Runs `f` on the build thread and waits for it without blocking the caller's runtime.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let Some(queue) = queue() else {
        return Ok(f());
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    if let Err(mpsc::SendError(job)) = queue.send(job) {
        // The thread is gone (it never exits while the process runs): build here.
        job();
    }
    rx.await
        .map_err(|_| anyhow::anyhow!("the snapshot build panicked"))
}

/// Opens a revision's secrets with `key` and publishes it on the build thread (secrets that do
/// not open are logged; the build then names the keys that needed them).
pub async fn publish(
    config: Arc<ConfigStore>,
    key: Arc<MasterKey>,
    dump: Dump,
) -> anyhow::Result<ReloadOutcome> {
    run(move || {
        let revision = dump.revision;
        let (state, problems) = ControlState::open(dump, &key);
        for p in problems {
            log::error!("control plane revision {revision}: {p}");
        }
        config.set_control(state)
    })
    .await
}
