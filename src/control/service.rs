//! The control plane inside `sluice serve`: one background service (one runtime, so the store's
//! connections live where they are used) that serves the admin listener and keeps this data
//! plane on the newest revision.
//!
//! - Embedded (`--database`, default `sqlite://DATA_DIR/sluice.db`): the store is read here;
//!   writes through the API publish in-process, writes by other replicas (PostgreSQL) are seen
//!   through LISTEN/NOTIFY, with the revision polled once a second as a safety net. Token
//!   last-use times are written in batches.
//! - Data plane (`--control-plane URL --token T`): long-polls `GET URL/v1/snapshot` (gateway
//!   secrets sealed for its token; it never holds the master key), persists the last state that
//!   built under the data dir, and serves from it when the control plane is unreachable
//!   (`sluice_config_synchronized 0`).

use anyhow::Context;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::api::{self, ControlPlane};
use super::crypto::MasterKey;
use super::state::{self, ControlState};
use super::store::{Dump, Op, SqlStore, Store};
use super::vault::VaultWorker;
use crate::admin::Admin;
use crate::config::wire::{self, Role};
use crate::config::ConfigStore;
use crate::metrics::METRICS;

/// How often the store's revision is read even without a notification (SQLite; a PostgreSQL
/// listener that lost its connection).
const POLL_EVERY: Duration = Duration::from_secs(1);
const FLUSH_USAGE_EVERY: Duration = Duration::from_secs(10);
const LONG_POLL_SECONDS: u64 = 25;
const SWEEP_VAULT_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub enum Mode {
    Embedded {
        database: String,
    },
    DataPlane {
        url: String,
        token: String,
        /// The feed signing key to trust (`ed25519:…`); `None`: the first one seen.
        pin: Option<String>,
        stale: Staleness,
    },
}

/// How long a data plane may go without hearing from its control plane.
#[derive(Debug, Clone, Copy)]
pub struct Staleness {
    /// Past this, `/readyz` says not ready (zero: never).
    pub most: Duration,
    /// Past it, requests are refused too (503 `control_plane_stale`).
    pub refuse: bool,
}

/// Largest revision-feed answer a data plane reads.
const MAX_FEED_BYTES: usize = 64 << 20;
/// Where a data plane keeps the feed key it trusted first (no `--control-plane-key`).
const TRUSTED_KEY_FILE: &str = "control-plane.key";

pub struct ControlService {
    pub config: Arc<ConfigStore>,
    pub mode: Mode,
    pub data_dir: PathBuf,
    /// The audit file the console's usage charts read (`/v1/usage`).
    pub audit_file: PathBuf,
    pub key: Arc<MasterKey>,
    pub admin: Mutex<Option<(std::net::TcpListener, Admin)>>,
    /// Serve the admin listener over TLS with this configuration.
    pub admin_tls: Option<Arc<pingora::tls::ServerConfig>>,
    /// The data plane's vault requests, served here (embedded) or sent to the control plane.
    pub vault_jobs: Mutex<Option<tokio::sync::mpsc::Receiver<crate::vault::Job>>>,
    /// What connect links and the OAuth redirect URI start with.
    pub public_base_url: String,
    /// Where vault events are recorded (`None`: audit off, or a control plane only).
    pub audit: Option<crate::audit::AuditSink>,
}

impl ControlService {
    /// At start-up, before any listener serves: opens and migrates the store (a bad
    /// `--database` fails the start with a message), creates the first admin token on a first
    /// run, and returns the store's resources so the first snapshot already has them. A data
    /// plane returns its persisted state, if any.
    pub fn preflight(
        mode: &Mode,
        file_config: &wire::Config,
        key: &MasterKey,
    ) -> anyhow::Result<Option<ControlState>> {
        let data_dir = file_config.data_dir.as_path();
        let dump = match mode {
            Mode::Embedded { database } => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async {
                    let store = SqlStore::open(database).await?;
                    bootstrap(&store, file_config, data_dir).await?;
                    let alg = file_config.builtin_issuer.algorithm;
                    super::issuer::ensure(&store, key, crate::clock::unix_now(), alg).await?;
                    anyhow::Ok(store.dump().await?)
                })?
            }
            Mode::DataPlane { .. } => match load_persisted(&data_dir.join(PERSISTED))? {
                Some(dump) => {
                    log::info!(
                        "serving the persisted control-plane revision {} until the control plane answers",
                        dump.revision
                    );
                    dump
                }
                None => return Ok(None),
            },
        };
        let (state, problems) = ControlState::open(dump, key);
        for p in problems {
            log::error!("control plane: {p}");
        }
        Ok(Some(state))
    }
}

#[async_trait]
impl BackgroundService for ControlService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some((listener, admin)) = self.admin.lock().ok().and_then(|mut a| a.take()) else {
            return;
        };
        let mut router = admin.router();
        let stop = {
            let mut s = shutdown.clone();
            async move {
                let _ = s.changed().await;
            }
        };
        match &self.mode {
            Mode::Embedded { database } => {
                let store: Arc<dyn Store> = match SqlStore::open(database).await {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        log::error!("control plane: {e:#}");
                        return;
                    }
                };
                let (tx, _) = tokio::sync::watch::channel(self.config.snapshot().control_revision);
                let vault = match VaultWorker::new(
                    store.clone(),
                    self.key.clone(),
                    self.config.clone(),
                    self.public_base_url.clone(),
                    self.audit.clone(),
                ) {
                    Ok(v) => Arc::new(v),
                    Err(e) => {
                        log::error!("control plane: vault: {e:#}");
                        return;
                    }
                };
                let cp = Arc::new(ControlPlane {
                    store,
                    key: self.key.clone(),
                    config: self.config.clone(),
                    revision: tx,
                    changed: tokio::sync::Notify::new(),
                    vault: vault.clone(),
                    audit_file: self.audit_file.clone(),
                });
                if let Some(jobs) = self.vault_jobs.lock().ok().and_then(|mut j| j.take()) {
                    tokio::spawn(vault.clone().serve(jobs));
                }
                tokio::spawn(sweep_vault(vault, shutdown.clone()));
                tokio::spawn(api::rotate_on_schedule(cp.clone(), shutdown.clone()));
                if let Ok(signer) = self.key.feed_signer() {
                    log::info!(
                        "revision feed signed with {} (pin it on data planes: SLUICE_CONTROL_PLANE_KEY)",
                        super::crypto::feed_public_key(&signer)
                    );
                }
                if let Err(e) = cp.refresh().await {
                    log::error!("control plane: {e}");
                }
                self.config.set_ready(true);
                METRICS.config_synchronized.set(1);
                router = router
                    .merge(api::router(cp.clone()))
                    .merge(super::console::router());
                let follower = follow_store(cp.clone(), shutdown.clone());
                let notifications = listen_store(cp.clone(), shutdown.clone());
                let server = serve(listener, self.admin_tls.clone(), router, stop);
                tokio::join!(follower, notifications, server);
            }
            Mode::DataPlane {
                url,
                token,
                pin,
                stale,
            } => {
                if let Some(jobs) = self.vault_jobs.lock().ok().and_then(|mut j| j.take()) {
                    tokio::spawn(forward_vault(jobs, url.clone(), token.clone()));
                }
                let follower = follow_remote(
                    Follower {
                        config: self.config.clone(),
                        key: self.key.clone(),
                        url: url.clone(),
                        token: token.clone(),
                        pin: pin.clone(),
                        stale: *stale,
                        data_dir: self.data_dir.clone(),
                    },
                    shutdown.clone(),
                );
                let server = serve(listener, self.admin_tls.clone(), router, stop);
                tokio::join!(follower, server);
            }
        }
        let _ = shutdown.changed().await;
    }
}

async fn serve(
    listener: std::net::TcpListener,
    tls: Option<Arc<pingora::tls::ServerConfig>>,
    router: axum::Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("admin listener: {e}");
            return;
        }
    };
    let served = match tls {
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
        }
        Some(config) => match crate::admin::TlsListener::new(listener, config) {
            Ok(tls) => axum::serve(tls, router).with_graceful_shutdown(stop).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = served {
        log::error!("admin listener: {e}");
    }
}

/// Removes grants of deleted OAuth providers and updates the grants gauge.
async fn sweep_vault(vault: Arc<VaultWorker>, mut shutdown: ShutdownWatch) {
    loop {
        vault.sweep().await;
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_VAULT_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// A data plane's vault requests go to the control plane's `/v1/vault` (it holds the master
/// key and the grants).
async fn forward_vault(
    mut jobs: tokio::sync::mpsc::Receiver<crate::vault::Job>,
    url: String,
    token: String,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            log::error!("vault: {e}");
            return;
        }
    };
    let endpoint = format!("{}/v1/vault", url.trim_end_matches('/'));
    while let Some(job) = jobs.recv().await {
        let (client, endpoint, token) = (client.clone(), endpoint.clone(), token.clone());
        tokio::spawn(async move {
            let reply = async {
                let resp = client
                    .post(&endpoint)
                    .bearer_auth(token.trim())
                    .json(&job.request)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("the control plane answered {}", resp.status()));
                }
                resp.json::<crate::vault::Reply>()
                    .await
                    .map_err(|e| e.to_string())
            }
            .await
            .unwrap_or_else(|e| {
                log::warn!("vault: {e}");
                Err(crate::vault::Failure::unavailable(
                    "the control plane could not be reached",
                ))
            });
            let _ = job.reply.send(reply);
        });
    }
}

/// Wakes `follow_store` on each change another replica commits (PostgreSQL LISTEN/NOTIFY).
async fn listen_store(cp: Arc<ControlPlane>, mut shutdown: ShutdownWatch) {
    let mut listener = loop {
        match cp.store.listen().await {
            Ok(Some(l)) => break l,
            Ok(None) => return,
            Err(e) => log::warn!("control plane: cannot listen for changes (polling): {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
    };
    loop {
        tokio::select! {
            r = listener.recv() => match r {
                Ok(()) => cp.changed.notify_one(),
                Err(e) => {
                    log::warn!("control plane: change notifications: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Keeps the embedded data plane on the store's newest revision and writes token uses.
async fn follow_store(cp: Arc<ControlPlane>, mut shutdown: ShutdownWatch) {
    let mut flushed = std::collections::BTreeMap::new();
    let mut next_flush = tokio::time::Instant::now() + FLUSH_USAGE_EVERY;
    loop {
        tokio::select! {
            _ = cp.changed.notified() => {}
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        match cp.store.revision().await {
            Ok(rev) if rev != *cp.revision.borrow() => {
                if let Err(e) = cp.refresh().await {
                    log::warn!("control plane: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => log::warn!("control plane: {e}"),
        }
        if tokio::time::Instant::now() >= next_flush {
            next_flush = tokio::time::Instant::now() + FLUSH_USAGE_EVERY;
            let now = cp.config.usage.snapshot();
            let changed: Vec<(String, u64)> = now
                .iter()
                .filter(|(k, v)| flushed.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            match cp.store.touch_tokens(&changed).await {
                Ok(()) => flushed = now,
                Err(e) => log::warn!("control plane: token last-use not written: {e}"),
            }
        }
    }
}

/// First run: when no owner has the admin role, creates owner `admin` and a token for it,
/// written to `data_dir/admin-token` (0600).
async fn bootstrap(
    store: &dyn Store,
    file_config: &wire::Config,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let file_admins = file_config
        .owners
        .iter()
        .any(|o| o.role == Some(Role::Admin));
    let stored = store.list(state::OWNER).await?;
    let store_admins = stored.iter().any(|r| {
        serde_json::from_value::<wire::Owner>(r.body.clone())
            .is_ok_and(|o| o.role == Some(Role::Admin))
    });
    if file_admins || store_admins {
        return Ok(());
    }
    let (token, id, digest) =
        crate::auth::opaque::generate().map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
    let owner = wire::Owner {
        name: "admin".into(),
        id: Some(
            crate::auth::opaque::random_base62(12)
                .map_err(|e| anyhow::anyhow!("randomness: {e}"))?,
        ),
        enabled: true,
        role: Some(Role::Admin),
        permissions: Vec::new(),
    };
    let record = wire::Token {
        grants: true,
        owner_id: owner.id.clone(),
        id: id.clone(),
        sha256: format!("sha256:{}", hex::encode(digest)),
        name: Some("bootstrap-admin".into()),
        owner: Some("admin".into()),
        scopes: Vec::new(),
        expires_at: None,
        revoked_at: None,
    };
    let ops = vec![
        Op::Create {
            kind: state::OWNER.into(),
            name: "admin".into(),
            body: serde_json::to_value(&owner)?,
        },
        Op::Create {
            kind: state::TOKEN.into(),
            name: id,
            body: serde_json::to_value(&record)?,
        },
    ];
    match store.apply(&ops).await {
        Ok(_) => {}
        // Another replica bootstrapped first.
        Err(super::store::StoreError::Conflict { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let file = data_dir.join("admin-token");
    crate::private::data_dir(data_dir)?;
    let _ = std::fs::remove_file(&file);
    crate::private::write(&file, format!("{token}\n").as_bytes())?;
    log::warn!(
        "first run: an admin token was written to {} — use it as SLUICE_ADMIN_TOKEN for the `sluice` CLI, then create your own and delete the file",
        file.display()
    );
    Ok(())
}

/// What a data plane follows its control plane with.
struct Follower {
    config: Arc<ConfigStore>,
    key: Arc<MasterKey>,
    url: String,
    token: String,
    pin: Option<String>,
    stale: Staleness,
    data_dir: PathBuf,
}

/// Follows a remote control plane by long-poll; persists each good state. Only feeds signed
/// by the pinned key (or the first key seen) are taken, revisions never go back, and the
/// data plane is ready once it serves a control-plane state and while it has heard from the
/// control plane within the staleness allowed.
async fn follow_remote(f: Follower, mut shutdown: ShutdownWatch) {
    let config = &f.config;
    // The persisted state (if any) was loaded at start-up.
    let mut revision = config.snapshot().control_revision;
    let serving = Arc::new(std::sync::atomic::AtomicBool::new(revision > 0));
    let heard = Arc::new(std::sync::atomic::AtomicU64::new(crate::clock::now_ms()));
    tokio::spawn(watch_staleness(
        config.clone(),
        f.stale,
        serving.clone(),
        heard.clone(),
        shutdown.clone(),
    ));
    METRICS.config_synchronized.set(0);
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(LONG_POLL_SECONDS + 10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            log::error!("control-plane client: {e}");
            return;
        }
    };
    let base = f.url.trim_end_matches('/').to_owned();
    let mut pin = f.pin.clone();
    let mut backoff = Duration::from_millis(250);
    loop {
        if pin.is_none() {
            pin = trust_first_key(&client, &base, &f.data_dir).await;
        }
        let wait = if revision == 0 { 0 } else { LONG_POLL_SECONDS };
        let nonce = match feed_nonce() {
            Ok(n) => n,
            Err(e) => {
                log::error!("control plane: {e}");
                return;
            }
        };
        let request = client
            .get(format!(
                "{base}/v1/snapshot?after={revision}&wait={wait}&nonce={nonce}"
            ))
            .bearer_auth(&f.token)
            .send();
        let outcome = tokio::select! {
            r = request => r,
            _ = shutdown.changed() => return,
        };
        let asked = (pin.as_deref(), nonce.as_str(), revision);
        let ok = match outcome {
            Ok(resp) => match f.take_answer(resp, asked).await {
                Ok(Some((rev, applied))) => {
                    revision = rev;
                    if applied {
                        serving.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    true
                }
                Ok(None) => true,
                Err(e) => {
                    log::warn!("control plane {base}: {e}");
                    false
                }
            },
            Err(e) => {
                log::warn!("control plane {base} unreachable: {e}");
                false
            }
        };
        METRICS.config_synchronized.set(i64::from(ok));
        METRICS.control_revision.set(revision as i64);
        if ok {
            heard.store(crate::clock::now_ms(), std::sync::atomic::Ordering::Relaxed);
            backoff = Duration::from_millis(250);
        } else {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

impl Follower {
    /// What one feed answer says: `None` for "nothing newer" (signed by the control plane for
    /// this very request: a man in the middle answering 304s is not heard), the revision
    /// followed and whether it serves for a snapshot, or why the answer is refused.
    async fn take_answer(
        &self,
        resp: reqwest::Response,
        (pin, nonce, revision): (Option<&str>, &str, u64),
    ) -> Result<Option<(u64, bool)>, String> {
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            let said = revision.to_string();
            let message = super::crypto::feed_message(nonce, 304, said.as_bytes());
            let signed = signature(&resp)
                .zip(pin)
                .is_some_and(|(sig, p)| super::crypto::feed_signed_by(p, &message, &sig));
            return if signed {
                Ok(None)
            } else {
                Err("a 304 not signed by its feed key: ignored".into())
            };
        }
        if !status.is_success() {
            return Err(status.to_string());
        }
        let dump = signed_dump(resp, (pin, nonce, revision))
            .await
            .map_err(|e| format!("snapshot refused: {e}"))?;
        Ok(Some(
            apply_revision(&self.config, &self.key, dump, &self.data_dir).await,
        ))
    }
}

/// Once a second: ready while serving a control-plane state heard from within the staleness
/// allowed; past it, refusing requests too when so configured.
async fn watch_staleness(
    config: Arc<ConfigStore>,
    stale: Staleness,
    serving: Arc<std::sync::atomic::AtomicBool>,
    heard: Arc<std::sync::atomic::AtomicU64>,
    mut shutdown: ShutdownWatch,
) {
    use std::sync::atomic::Ordering::Relaxed;
    loop {
        let silent = crate::clock::now_ms().saturating_sub(heard.load(Relaxed));
        METRICS.control_plane_staleness.set((silent / 1000) as i64);
        let too_stale = !stale.most.is_zero() && silent > stale.most.as_millis() as u64;
        let refusing = too_stale && stale.refuse;
        if config.set_refusing_stale(refusing) != refusing {
            if refusing {
                log::error!(
                    "no word from the control plane for {}s: refusing requests (server.control_plane_stale: refuse)",
                    silent / 1000
                );
            } else {
                log::info!("control plane heard from again: serving requests");
            }
        }
        config.set_ready(serving.load(Relaxed) && !too_stale);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The feed key kept from the first contact (trust on first use), or fetched and kept now.
async fn trust_first_key(
    client: &reqwest::Client,
    base: &str,
    data_dir: &std::path::Path,
) -> Option<String> {
    let file = data_dir.join(TRUSTED_KEY_FILE);
    if let Ok(kept) = std::fs::read_to_string(&file) {
        return Some(kept.trim().to_owned());
    }
    let resp = client
        .get(format!("{base}/v1/snapshot/key"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if resp.content_length().is_some_and(|n| n > 4096) {
        return None;
    }
    let body: serde_json::Value = resp.json().await.ok()?;
    let key = body["public_key"]
        .as_str()
        .filter(|k| super::crypto::valid_feed_key(k))?
        .to_owned();
    if let Err(e) = crate::private::replace(&file, key.as_bytes()) {
        log::warn!("cannot keep the control plane's feed key: {e:#}");
    }
    log::warn!(
        "trusting the control plane's feed key {key} from first contact; pin it with SLUICE_CONTROL_PLANE_KEY"
    );
    Some(key)
}

/// A fresh random nonce for one feed request (128 bits and more).
fn feed_nonce() -> anyhow::Result<String> {
    crate::auth::token_format::random_base62(24).map_err(|e| anyhow::anyhow!("randomness: {e}"))
}

/// The answer's feed signature header.
fn signature(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(super::crypto::FEED_SIGNATURE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The feed answer's snapshot, if its body is within [`MAX_FEED_BYTES`], signed by `pin` for
/// this request's `nonce`, and newer than `revision`.
async fn signed_dump(
    mut resp: reqwest::Response,
    (pin, nonce, revision): (Option<&str>, &str, u64),
) -> Result<Dump, String> {
    let pin = pin.ok_or("the control plane's feed key is unknown")?;
    let signature = signature(&resp).ok_or("unsigned")?;
    if resp.content_length().unwrap_or(0) > MAX_FEED_BYTES as u64 {
        return Err(format!("larger than {MAX_FEED_BYTES} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_FEED_BYTES {
            return Err(format!("larger than {MAX_FEED_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let message = super::crypto::feed_message(nonce, 200, &body);
    if !super::crypto::feed_signed_by(pin, &message, &signature) {
        return Err("not signed by the control plane's feed key".into());
    }
    let dump = serde_json::from_slice::<Dump>(&body).map_err(|e| e.to_string())?;
    if dump.revision <= revision {
        return Err(format!(
            "revision {} is not newer than {revision} (revisions never go back)",
            dump.revision
        ));
    }
    Ok(dump)
}

/// Publishes a revision from the feed; a state that built is persisted for the next start.
/// Returns the revision (followed even when it did not build: the next one may) and whether
/// it serves now.
async fn apply_revision(
    config: &Arc<ConfigStore>,
    key: &Arc<MasterKey>,
    dump: Dump,
    data_dir: &std::path::Path,
) -> (u64, bool) {
    let rev = dump.revision;
    let sealed = serde_json::to_vec(&dump);
    match super::offpath::publish(config.clone(), key.clone(), dump).await {
        Ok(crate::config::store::ReloadOutcome::Applied { .. }) => {
            if let Err(e) = sealed
                .map_err(anyhow::Error::from)
                .and_then(|b| crate::private::replace(&data_dir.join(PERSISTED), &b))
            {
                log::warn!("cannot persist the control-plane snapshot: {e:#}");
            }
            (rev, true)
        }
        Ok(other) => {
            log::error!("control plane revision {rev} not applied: {other:?}");
            (rev, false)
        }
        Err(e) => {
            log::error!("control plane revision {rev} not applied: {e}");
            (rev, false)
        }
    }
}

/// The last control-plane state that built, under the data dir.
const PERSISTED: &str = "control-snapshot.json";

fn load_persisted(file: &std::path::Path) -> anyhow::Result<Option<Dump>> {
    match std::fs::read(file) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).context("not a snapshot")?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}
