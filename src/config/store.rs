//! The live configuration: one `ArcSwap<Snapshot>` loaded once per request, and the reload path
//! (file change, SIGHUP) that validates a new snapshot whole before publishing it. A config that
//! fails validation, or that changes settings fixed at start (listeners), is refused and the last
//! good snapshot keeps serving.

use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::stored::ControlState;
use super::{load_with, wire, BuildContext, ConfigErrors, ParseCache, Snapshot};
use crate::auth::jwks::JwksRegistry;
use crate::auth::usage::UsageRegistry;
use crate::balance::HealthRegistry;
use crate::metrics::METRICS;

/// How a reload attempt ended.
#[derive(Debug)]
pub enum ReloadOutcome {
    Applied {
        revision: u64,
    },
    Invalid(ConfigErrors),
    /// The file changes settings that only a restart applies; nothing was applied.
    Refused(String),
}

pub struct ConfigStore {
    current: ArcSwap<Snapshot>,
    file: PathBuf,
    health: Arc<HealthRegistry>,
    pub jwks: Arc<JwksRegistry>,
    pub usage: Arc<UsageRegistry>,
    limits: Arc<crate::limits::Registry>,
    pub budgets: Arc<crate::budgets::Registry>,
    /// Serialises reloads and remembers what was loaded at start.
    writer: Mutex<Fixed>,
    ready: AtomicBool,
    /// A data plane cut off from its control plane for too long refuses requests
    /// (`server.control_plane_stale: refuse`).
    refusing_stale: AtomicBool,
    /// Set once the file is watched (edits from then on are seen).
    watching: AtomicBool,
    /// The control plane's resources, merged into every build (file change or new revision).
    control: Mutex<Option<Arc<ControlState>>>,
    parsed: ParseCache,
}

/// The parts of the file that cannot change while running.
#[derive(Debug, Clone, PartialEq)]
struct Fixed {
    listeners: wire::Listeners,
    server: wire::ServerOptions,
    audit: wire::Audit,
    data_dir: PathBuf,
    /// The forward proxy's CA files.
    ca: (Option<PathBuf>, Option<PathBuf>),
    revision: u64,
}

impl ConfigStore {
    /// Every key's health, across snapshots.
    pub fn health(&self) -> Arc<HealthRegistry> {
        self.health.clone()
    }

    /// Loads `file` (and the control plane's resources, when there are some yet) for the first
    /// time; any error stops start-up.
    /// `parsed` is the file as `config::read_file` returned it: it is not read again.
    pub fn open(
        file: &Path,
        parsed: (wire::Config, String),
        control: Option<ControlState>,
    ) -> Result<(Arc<ConfigStore>, wire::Config), ConfigErrors> {
        let ctx = BuildContext {
            revision: 1,
            secrets: control
                .as_ref()
                .map(|c| c.secrets.clone())
                .unwrap_or_default(),
            control_revision: control.as_ref().map(|c| c.dump.revision).unwrap_or(0),
            ..BuildContext::default()
        };
        // Spend recorded by the previous process, before the first budgets are built.
        ctx.budgets
            .load(&parsed.0.data_dir.join(crate::budgets::FILE));
        let control = control.map(Arc::new);
        let (file_config, source) = parsed;
        let parsed = ParseCache::seeded(source.clone(), file_config.clone());
        let (config, snapshot) =
            super::build_from(file, file_config, &source, &ctx, control.as_deref())?;
        for w in &snapshot.warnings {
            log::warn!("{}: {w}", file.display());
        }
        let store = ConfigStore {
            current: ArcSwap::from_pointee(snapshot),
            file: file.to_owned(),
            health: ctx.health.clone(),
            jwks: ctx.jwks.clone(),
            usage: ctx.usage.clone(),
            limits: ctx.limits.clone(),
            budgets: ctx.budgets.clone(),
            writer: Mutex::new(Fixed {
                listeners: config.listeners.clone(),
                server: config.server.clone(),
                audit: config.audit.clone(),
                data_dir: config.data_dir.clone(),
                ca: (
                    config.forward.ca_cert.clone(),
                    config.forward.ca_key.clone(),
                ),
                revision: 1,
            }),
            ready: AtomicBool::new(true),
            refusing_stale: AtomicBool::new(false),
            watching: AtomicBool::new(false),
            control: Mutex::new(control),
            parsed,
        };
        METRICS.config_revision.set(1);
        METRICS.reload("success");
        METRICS
            .config_last_success
            .set(crate::clock::unix_now() as i64);
        Ok((Arc::new(store), config))
    }

    /// The snapshot to serve one request with. Load it once per request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Ready is false while a control plane's first state is awaited.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The config watcher watches the file (and answers SIGHUP) from now on.
    pub fn set_watching(&self) {
        self.watching.store(true, Ordering::Release);
    }

    pub fn is_watching(&self) -> bool {
        self.watching.load(Ordering::Acquire)
    }

    /// Whether requests are refused for having lost the control plane.
    pub fn refusing_stale(&self) -> bool {
        self.refusing_stale.load(Ordering::Relaxed)
    }

    /// Sets it; returns what it was.
    pub fn set_refusing_stale(&self, refusing: bool) -> bool {
        self.refusing_stale.swap(refusing, Ordering::Relaxed)
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Publishes the control plane's resources (with the file's), or keeps the current
    /// snapshot (and the previous control state) when they do not build.
    pub fn set_control(&self, state: ControlState) -> ReloadOutcome {
        self.reload_with(Some(Arc::new(state)))
    }

    /// Builds the file with `state` as the control plane's resources, exactly as `set_control`
    /// would, without publishing: an error means `state` must not be committed. `publish`
    /// then serves the same build, so a change is built once.
    pub fn prepare_control(&self, state: ControlState) -> Result<Prepared, ConfigErrors> {
        let state = Arc::new(state);
        let after = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .revision;
        let ctx = self.context(after + 1, Some(&state));
        let built = load_with(&self.file, &ctx, Some(&state), &self.parsed)?;
        Ok(Prepared {
            state,
            built,
            after,
        })
    }

    /// Publishes a prepared build, unless another snapshot was published since it was built
    /// (`None`: that one stays; build again with `set_control` if it is older).
    pub fn publish(&self, prepared: Prepared) -> Option<ReloadOutcome> {
        let mut fixed = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if fixed.revision != prepared.after {
            return None;
        }
        Some(self.finish(&mut fixed, Ok(prepared.built), Some(prepared.state)))
    }

    /// Re-reads the file, validates it whole and publishes it, or keeps the current snapshot.
    pub fn reload(&self) -> ReloadOutcome {
        let control = self
            .control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.reload_with(control)
    }

    fn context(&self, revision: u64, control: Option<&Arc<ControlState>>) -> BuildContext {
        BuildContext {
            revision,
            health: self.health.clone(),
            jwks: self.jwks.clone(),
            usage: self.usage.clone(),
            limits: self.limits.clone(),
            budgets: self.budgets.clone(),
            secrets: control.map(|c| c.secrets.clone()).unwrap_or_default(),
            control_revision: control.map(|c| c.dump.revision).unwrap_or(0),
        }
    }

    fn reload_with(&self, control: Option<Arc<ControlState>>) -> ReloadOutcome {
        let mut fixed = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let ctx = self.context(fixed.revision + 1, control.as_ref());
        let built = load_with(&self.file, &ctx, control.as_deref(), &self.parsed);
        self.finish(&mut fixed, built, control)
    }

    /// Publishes a build (under the writer lock) unless it failed or changes fixed settings;
    /// the control state it was built with becomes the one later file reloads merge.
    fn finish(
        &self,
        fixed: &mut Fixed,
        built: Result<(wire::Config, Snapshot), ConfigErrors>,
        control: Option<Arc<ControlState>>,
    ) -> ReloadOutcome {
        let outcome = match built {
            Err(errors) => ReloadOutcome::Invalid(errors),
            Ok((config, snapshot)) => match fixed_changes(fixed, &config) {
                Some(message) => ReloadOutcome::Refused(message),
                None => {
                    // Each warning once, not again on every rebuild that still has it.
                    let before = self.current.load();
                    for w in snapshot
                        .warnings
                        .iter()
                        .filter(|w| !before.warnings.contains(w))
                    {
                        log::warn!("{}: {w}", self.file.display());
                    }
                    fixed.revision = snapshot.revision;
                    self.current.store(Arc::new(snapshot));
                    if control.is_some() {
                        *self.control.lock().unwrap_or_else(|p| p.into_inner()) = control;
                    }
                    ReloadOutcome::Applied {
                        revision: fixed.revision,
                    }
                }
            },
        };
        match &outcome {
            ReloadOutcome::Applied { revision } => {
                METRICS.reload("success");
                METRICS.config_revision.set(*revision as i64);
                METRICS
                    .config_last_success
                    .set(crate::clock::unix_now() as i64);
                log::info!(
                    "{}: configuration revision {revision} is serving",
                    self.file.display()
                );
            }
            ReloadOutcome::Invalid(errors) => {
                METRICS.reload("invalid");
                log::error!(
                    "configuration rejected, revision {} keeps serving:\n{errors}",
                    fixed.revision
                );
            }
            ReloadOutcome::Refused(message) => {
                METRICS.reload("refused");
                log::error!(
                    "configuration refused, revision {} keeps serving: {message}",
                    fixed.revision
                );
            }
        }
        outcome
    }
}

/// A build for a control-plane state, validated and not yet published (`prepare_control`).
pub struct Prepared {
    state: Arc<ControlState>,
    built: (wire::Config, Snapshot),
    /// The revision that was serving when it was built.
    after: u64,
}

fn fixed_changes(fixed: &Fixed, config: &wire::Config) -> Option<String> {
    let mut changed = Vec::new();
    let wire::Listeners {
        proxy,
        forward,
        admin,
        admin_tls,
        proxy_tls,
        mock,
    } = &config.listeners;
    let was = &fixed.listeners;
    if *proxy != was.proxy {
        changed.push(format!("listeners.proxy ({} → {proxy})", was.proxy));
    }
    if *forward != was.forward {
        changed.push("listeners.forward".to_owned());
    }
    if *admin != was.admin {
        changed.push(format!("listeners.admin ({} → {admin})", was.admin));
    }
    if *admin_tls != was.admin_tls {
        changed.push("listeners.admin_tls".to_owned());
    }
    if *proxy_tls != was.proxy_tls {
        changed.push("listeners.proxy_tls (the files' contents reload live)".to_owned());
    }
    if *mock != was.mock {
        changed.push("listeners.mock".to_owned());
    }
    if config.server != fixed.server {
        changed.push("server".to_owned());
    }
    if config.audit != fixed.audit {
        changed.push("audit".to_owned());
    }
    if config.data_dir != fixed.data_dir {
        changed.push("data_dir".to_owned());
    }
    if (&config.forward.ca_cert, &config.forward.ca_key) != (&fixed.ca.0, &fixed.ca.1) {
        changed.push("forward.ca_cert/ca_key".to_owned());
    }
    if changed.is_empty() {
        None
    } else {
        Some(format!(
            "{} cannot change while running; restart Sluice to apply them (undo them to apply the rest)",
            changed.join(", ")
        ))
    }
}
