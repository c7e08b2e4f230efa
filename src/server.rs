//! Assembles the Pingora `Server` for `sluice serve`: proxy listener, admin listener, config
//! watcher and (when configured) the embedded mock upstream.

use anyhow::Context;
use async_trait::async_trait;
use pingora::connectors::TransportConnector;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use std::path::Path;
use std::sync::Mutex;

use crate::admin::Admin;
use crate::audit::sink::Target;
use crate::audit::AuditSink;
use crate::auth::jwks::JwksRefresher;
use crate::auth::usage::UsageFlusher;
use crate::config::watch::ConfigWatcher;
use crate::config::{wire, ConfigStore};
use crate::control::crypto::MasterKey;
use crate::control::service::{ControlService, Mode};
use crate::edge::certs::{CertFiles, ListenerCerts};
use crate::edge::{Edge, EdgeTls};
use crate::forward::ca::CertAuthority;
use crate::mock::{self, MockOptions};
use crate::proxy::conn_caps::ConnCaps;
use crate::proxy::forward::ForwardProxy;
use crate::proxy::own_loop::OwnLoop;
use crate::proxy::Gateway;
use crate::vault::Vault;
use std::sync::Arc;

mod bound;
use bound::Bound;

/// Where the dynamic resources come from besides the file.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// The store (`sqlite://…`, `postgres://…`); default `sqlite://DATA_DIR/sluice.db`.
    pub database: Option<String>,
    /// Follow this control plane instead of running one (data plane only).
    pub control_plane: Option<String>,
    /// The data plane's token at the control plane (an owner with the `dataplane` role).
    pub token: Option<String>,
    /// The control plane's feed signing key (`ed25519:BASE64`, from `/v1/snapshot/key`);
    /// without it the first key seen is kept under the data dir (trust on first use).
    pub control_plane_key: Option<String>,
    /// Run the control plane only (`sluice control-plane`): the admin listener and the store,
    /// no proxy, forward or mock listener, no audit writer.
    pub control_plane_only: bool,
    /// Write the listeners' bound addresses here (JSON) once they all listen: how a caller
    /// learns the ports of listeners configured on port 0.
    pub ready_file: Option<std::path::PathBuf>,
}

/// `--ready-file`: written once the services run and the config file is watched (every
/// listener was bound before the server started, so connections queue until accepted).
struct ReadyFile {
    file: std::path::PathBuf,
    store: Arc<ConfigStore>,
    bound: Vec<u8>,
}

#[async_trait::async_trait]
impl BackgroundService for ReadyFile {
    async fn start(&self, _shutdown: ShutdownWatch) {
        for _ in 0..2000 {
            if self.store.is_watching() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if let Err(e) = crate::private::replace(&self.file, &self.bound) {
            log::error!("--ready-file {}: {e:#}", self.file.display());
        }
    }
}

/// Loads `config_file` (read once) and builds a server ready for `run_forever()`.
pub fn build(config_file: &Path, opts: &ServeOptions) -> anyhow::Result<Server> {
    let (file_config, source) = crate::config::read_file(config_file)
        .map_err(|errors| anyhow::anyhow!("{errors}\nfix the configuration and start again"))?;
    let mode = mode(opts, &file_config)?;
    // Listeners on port 0 are bound first: the proxy's address is the default public URL.
    let serves_traffic = !opts.control_plane_only;
    let mut bound = Bound::default();
    if serves_traffic {
        // With `thread_per_core`, a proxy socket per thread.
        let per_thread = file_config.server.thread_per_core.unwrap_or(false);
        let threads = per_thread.then(|| server_conf(&file_config.server).threads);
        let always = opts.ready_file.is_some();
        bound.bind_proxies(&file_config.listeners, always, threads)?;
    }
    crate::private::restrict_new_files();
    crate::private::data_dir(&file_config.data_dir)?;
    // A data plane opens the feed with the key its token derives; only a control plane holds
    // the master key.
    let key = Arc::new(match &mode {
        Mode::DataPlane { token, .. } => MasterKey::feed_key(token),
        Mode::Embedded { .. } => MasterKey::load_or_create(&file_config.data_dir)?,
    });
    let control = ControlService::preflight(&mode, &file_config, &key)?;
    let (store, config) = open_store(config_file, (file_config, source), control, &mode)?;

    let mut server = Server::new_with_opt_and_conf(None, server_conf(&config.server));
    server.bootstrap();
    bound.hand_to(&server);
    let mut ca = None;
    let (vault, vault_jobs) = Vault::new();
    let connector = Arc::new(TransportConnector::new(None));
    let mut audit = None;
    if serves_traffic {
        audit = add_audit(&mut server, &config);
        let trusted_proxies = nets(&config.server.trusted_proxies);
        let gateway = || Gateway {
            store: store.clone(),
            audit: audit.clone(),
            vault: vault.clone(),
            connector: connector.clone(),
            trusted_proxies: trusted_proxies.clone(),
        };
        let proxy_tls = add_proxy_tls(&mut server, &config, config_file)?;
        add_proxy(&mut server, &config, &bound, gateway(), proxy_tls);
        ca = add_forward(
            &mut server,
            &store,
            (&config, &bound),
            config_file,
            gateway(),
        )?;
    }
    let plane = Plane {
        mode,
        key,
        ca,
        vault_jobs,
        audit,
    };
    bound.admin = Some(add_control(
        &mut server,
        &store,
        &config,
        config_file,
        plane,
    )?);
    bound.mock = add_background(&mut server, &store, (&config, config_file), serves_traffic)?;
    if let Some(file) = opts.ready_file.clone() {
        server.add_service(background_service(
            "sluice ready file",
            ReadyFile {
                file,
                store: store.clone(),
                bound: serde_json::to_vec(&bound)?,
            },
        ));
    }
    Ok(server)
}

/// Addresses and CIDRs as written (checked when the snapshot was built).
fn nets(list: &[String]) -> Arc<[ipnet::IpNet]> {
    list.iter()
        .filter_map(|n| crate::client_address::parse_net(n))
        .collect()
}

/// The proxy listener's TLS, reloadable by the admin API and by the certificate watcher.
fn add_proxy_tls(
    server: &mut Server,
    config: &wire::Config,
    config_file: &Path,
) -> anyhow::Result<Option<EdgeTls>> {
    let tls = proxy_tls(config, config_file).context("listeners.proxy_tls")?;
    if let Some(tls) = &tls {
        crate::tls::register(tls.certs.clone());
        let certs = vec![tls.certs.clone()];
        let watcher = crate::edge::watch::CertWatcher { certs };
        server.add_service(background_service("sluice certificate watcher", watcher));
    }
    Ok(tls)
}

/// Embedded control plane (the default), or a data plane following `--control-plane`.
fn mode(opts: &ServeOptions, file_config: &wire::Config) -> anyhow::Result<Mode> {
    Ok(match (&opts.control_plane, &opts.token) {
        (Some(_), Some(_))
            if opts
                .control_plane_key
                .as_deref()
                .is_some_and(|k| !crate::control::crypto::valid_feed_key(k)) =>
        {
            anyhow::bail!(
                "--control-plane-key / SLUICE_CONTROL_PLANE_KEY: expected `ed25519:` and 32 bytes in base64, as GET /v1/snapshot/key shows"
            )
        }
        (Some(url), Some(token)) => Mode::DataPlane {
            url: url.clone(),
            token: token.clone(),
            pin: opts.control_plane_key.clone(),
            stale: crate::control::service::Staleness {
                most: std::time::Duration::from_secs(
                    file_config
                        .server
                        .control_plane_max_staleness_seconds
                        .unwrap_or(0),
                ),
                refuse: file_config.server.control_plane_stale == Some(wire::StaleAction::Refuse),
            },
        },
        (Some(_), None) => {
            anyhow::bail!("--control-plane needs --token (an owner with the dataplane role)")
        }
        (None, _) => Mode::Embedded {
            database: opts.database.clone().unwrap_or_else(|| {
                format!(
                    "sqlite://{}",
                    file_config.data_dir.join("sluice.db").display()
                )
            }),
        },
    })
}

/// The first snapshot: the file plus the store's resources. A data plane's persisted state
/// that no longer builds (sealed for a rotated token, or clashing with an edited file) is not a
/// reason to stay down: it starts from the file and waits for the control plane.
fn open_store(
    config_file: &Path,
    parsed: (wire::Config, String),
    control: Option<crate::config::stored::ControlState>,
    mode: &Mode,
) -> anyhow::Result<(Arc<ConfigStore>, wire::Config)> {
    let persisted = matches!(mode, Mode::DataPlane { .. }) && control.is_some();
    let opened = match ConfigStore::open(config_file, parsed.clone(), control) {
        Err(errors) if persisted => {
            log::warn!(
                "the persisted control-plane state does not build; waiting for the control plane:\n{errors}"
            );
            ConfigStore::open(config_file, parsed, None)
        }
        other => other,
    };
    let (store, config) = opened.map_err(|errors| {
        anyhow::anyhow!(
            "{errors}\n{} error(s): fix the configuration and start again",
            errors.0.len()
        )
    })?;
    if matches!(mode, Mode::DataPlane { .. }) && store.snapshot().control_revision == 0 {
        store.set_ready(false);
    }
    Ok((store, config))
}

fn server_conf(options: &wire::ServerOptions) -> ServerConf {
    ServerConf {
        threads: options.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
        grace_period_seconds: Some(options.grace_period_seconds.unwrap_or(60)),
        graceful_shutdown_timeout_seconds: Some(
            options.graceful_shutdown_timeout_seconds.unwrap_or(5),
        ),
        upstream_keepalive_pool_size: 1024,
        work_stealing: options.work_stealing.unwrap_or(true),
        ..ServerConf::default()
    }
}

/// The audit writer, when `audit.sink` is not `none`.
fn add_audit(server: &mut Server, config: &wire::Config) -> Option<AuditSink> {
    let target = audit_target(config)?;
    let (sink, writer) = AuditSink::new(target, config.audit.queue);
    server.add_service(background_service("sluice audit writer", writer));
    Some(sink)
}

/// Pingora's HTTP application for a proxy listener, with the request-head limits, HTTP/2's
/// stream limit and (`h2c`) HTTP/2 without TLS.
fn http_app(
    server: &Server,
    config: &wire::Config,
    gateway: Gateway,
    h2c: bool,
) -> pingora_proxy::HttpProxy<Gateway> {
    let mut http = pingora_proxy::http_proxy(&server.configuration, gateway);
    // Pingora's bounded defaults (64 KiB of headers) with the configured stream limit; h2
    // itself refuses rapid resets (20 pending), CONTINUATION floods and unacknowledged
    // SETTINGS/PING floods.
    let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
    h2.max_concurrent_streams(config.server.h2_max_concurrent_streams.unwrap_or(100));
    http.h2_options = Some(h2);
    let mut options = pingora::apps::HttpServerOptions::default();
    options.h2c = h2c;
    options.max_request_head_bytes = Some(config.server.max_request_head_bytes.unwrap_or(65_536));
    options.request_head_timeout = Some(std::time::Duration::from_secs(
        config.server.request_head_timeout_seconds.unwrap_or(10),
    ));
    // An idle kept-alive connection is closed after `keepalive_timeout_seconds` (a client's
    // HTTP/1.1 default is "forever"), and an unread request body after a refusal is drained for 10 s at most.
    let idle =
        std::time::Duration::from_secs(config.server.keepalive_timeout_seconds.unwrap_or(60));
    options.keepalive_idle_timeout = Some(idle);
    // The same for an HTTP/2 connection with no stream open, and one that never sends its
    // preface.
    options.h2_idle_timeout = Some(idle);
    options.total_drain_timeout = Some(std::time::Duration::from_secs(10));
    http.server_options = Some(options);
    http
}

/// The connection caps of the listener `name`.
fn conn_caps(config: &wire::Config, name: &'static str) -> Arc<ConnCaps> {
    Arc::new(ConnCaps::new(
        name,
        config.server.max_connections.unwrap_or(16_384),
        config.server.max_connections_per_source.unwrap_or(4096),
    ))
}

/// The edge of the listener `name`: its caps, PROXY protocol peers and handshake timeout.
fn edge<A>(config: &wire::Config, name: &'static str, inner: A, tls: Option<EdgeTls>) -> Edge<A> {
    let server = &config.server;
    Edge {
        inner: Arc::new(inner),
        caps: conn_caps(config, name),
        tls: tls.map(Arc::new),
        proxy_protocol_from: nets(&server.proxy_protocol_from),
        handshake_timeout: std::time::Duration::from_secs(
            server.request_head_timeout_seconds.unwrap_or(10),
        ),
    }
}

/// The reverse proxy listener: one service, or with `server.thread_per_core` one service of
/// one thread per socket bound for it (each thread's connections stay on that thread, as do
/// the upstream connections of `proxy::pool`, which are kept per thread).
fn add_proxy(
    server: &mut Server,
    config: &wire::Config,
    bound: &Bound,
    gateway: Gateway,
    tls: Option<EdgeTls>,
) {
    let connector = gateway.connector.clone();
    let conf = &server.configuration;
    crate::proxy::pool::set_capacity(conf.upstream_keepalive_pool_size, conf.threads);
    let h2c = tls.is_none() && config.server.h2c.unwrap_or(false);
    let http = Arc::new(http_app(server, config, gateway, h2c));
    let inner = OwnLoop {
        proxy: http,
        connector,
        own: config.server.proxy_loop.unwrap_or_default() == wire::ProxyLoop::Sluice,
    };
    let app = edge(config, "proxy", inner, tls);
    // Pingora reads ahead 64 KiB per connection by default (zeroed, so resident); its HTTP/1
    // parser reads into buffers of its own anyway, so none: idle clients pin no read buffer.
    let listener =
        |addr: &str| ListenerConfig::tcp(addr).l4_buffer(L4BufferSettings::default().read(0));
    if !bound.proxy_per_thread.is_empty() {
        for (i, key) in bound.proxy_per_thread.iter().enumerate() {
            let mut proxy = Service::new(format!("sluice proxy {i}"), app.clone());
            proxy.threads = Some(1);
            proxy.add_listener(listener(key));
            server.add_service(proxy);
        }
        return;
    }
    let mut proxy = Service::new("sluice proxy".to_owned(), app);
    let addr = bound
        .proxy
        .clone()
        .unwrap_or(config.listeners.proxy.clone());
    proxy.add_listener(listener(&addr));
    server.add_service(proxy);
}

/// The forward proxy listener (`listeners.forward`) and its CA, returned for `/ca.pem`.
fn add_forward(
    server: &mut Server,
    store: &Arc<ConfigStore>,
    (config, bound): (&wire::Config, &Bound),
    config_file: &Path,
    gateway: Gateway,
) -> anyhow::Result<Option<Arc<CertAuthority>>> {
    let Some(addr) = bound.forward.as_ref().or(config.listeners.forward.as_ref()) else {
        return Ok(None);
    };
    let ca = Arc::new(load_ca(config, config_file)?);
    let http = Arc::new(http_app(server, config, gateway, false));
    let inner = ForwardProxy {
        store: store.clone(),
        ca: ca.clone(),
        http,
    };
    let app = edge(config, "forward", inner, None);
    let mut forward = Service::new("sluice forward proxy".to_owned(), app);
    // Unbuffered reads: the head is read by hand and a tunnel then splices the raw socket, so
    // no byte may sit in a read-ahead buffer.
    forward.add_listener(
        ListenerConfig::tcp(addr.clone()).l4_buffer(L4BufferSettings::default().read(0)),
    );
    server.add_service(forward);
    Ok(Some(ca))
}

/// What the control service runs with besides the configuration.
struct Plane {
    mode: Mode,
    key: Arc<MasterKey>,
    ca: Option<Arc<CertAuthority>>,
    vault_jobs: tokio::sync::mpsc::Receiver<crate::vault::Job>,
    audit: Option<AuditSink>,
}

/// The admin listener with the control plane (or the data plane's follower) behind it.
fn add_control(
    server: &mut Server,
    store: &Arc<ConfigStore>,
    config: &wire::Config,
    config_file: &Path,
    plane: Plane,
) -> anyhow::Result<String> {
    let Plane {
        mode,
        key,
        ca,
        vault_jobs,
        audit,
    } = plane;
    let listeners = &config.listeners;
    let admin_tls = admin_tls(config, config_file).context("listeners.admin_tls")?;
    let admin_listener = std::net::TcpListener::bind(&listeners.admin)
        .with_context(|| format!("listeners.admin: cannot bind {}", listeners.admin))?;
    admin_listener.set_nonblocking(true)?;
    let admin_addr = admin_listener.local_addr()?.to_string();
    let mut control = background_service(
        "sluice control plane",
        ControlService {
            config: store.clone(),
            mode,
            data_dir: config.data_dir.clone(),
            audit_file: config
                .audit
                .path
                .clone()
                .unwrap_or_else(|| config.data_dir.join("audit.jsonl")),
            key,
            admin: Mutex::new(Some((
                admin_listener,
                Admin {
                    store: store.clone(),
                    ca_pem: ca.map(|ca| ca.pem.clone()),
                },
            ))),
            admin_tls,
            vault_jobs: Mutex::new(Some(vault_jobs)),
            public_base_url: config.public_base_url(),
            audit,
        },
    );
    control.threads = Some(2);
    server.add_service(control);
    Ok(admin_addr)
}

/// JWKS refresh, token last-use, the config watcher and the embedded mock upstream.
fn add_background(
    server: &mut Server,
    store: &Arc<ConfigStore>,
    (config, config_file): (&wire::Config, &Path),
    serves_traffic: bool,
) -> anyhow::Result<Option<String>> {
    if serves_traffic {
        add_shared_limits(server, store, config, config_file)?;
        add_trace_exporter(server, config)?;
        server.add_service(background_service(
            "sluice jwks refresher",
            JwksRefresher {
                registry: store.jwks.clone(),
            },
        ));
    }
    server.add_service(background_service(
        "sluice budget spend",
        BudgetFlusher {
            registry: store.budgets.clone(),
            file: config.data_dir.join(crate::budgets::FILE),
        },
    ));
    server.add_service(background_service(
        "sluice token usage",
        UsageFlusher {
            registry: store.usage.clone(),
            file: config.data_dir.join("token-last-used.json"),
        },
    ));
    server.add_service(background_service(
        "sluice config watcher",
        ConfigWatcher {
            store: store.clone(),
        },
    ));
    let mut mock = None;
    if let Some(addr) = config.listeners.mock.as_ref().filter(|_| serves_traffic) {
        // Bound now so a taken port fails start-up instead of a background task.
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("listeners.mock: cannot bind {addr}"))?;
        listener.set_nonblocking(true)?;
        mock = Some(listener.local_addr()?.to_string());
        let mut svc = background_service(
            "sluice mock upstream",
            EmbeddedMock {
                listener: Mutex::new(Some(listener)),
            },
        );
        svc.threads = Some(1);
        server.add_service(svc);
    }
    Ok(mock)
}

/// `server.limits_backend`: the Redis connection shared by limits, budgets and key health.
fn add_shared_limits(
    server: &mut Server,
    store: &Arc<ConfigStore>,
    config: &wire::Config,
    config_file: &Path,
) -> anyhow::Result<()> {
    if let Some(url) = config.server.limits_backend.as_deref() {
        let key = match config.server.limits_backend_key_ref.as_deref() {
            Some(r) => {
                let base = config_file.parent().unwrap_or(Path::new("."));
                let key = crate::secrets::resolve(r, base)
                    .map_err(|e| anyhow::anyhow!("server.limits_backend_key_ref: {e}"))?;
                if key.expose().len() < 32 {
                    anyhow::bail!(
                        "server.limits_backend_key_ref: the key must be at least 32 characters (e.g. `openssl rand -hex 32`)"
                    );
                }
                Some(key)
            }
            None => None,
        };
        let namespace = config
            .server
            .namespace
            .as_deref()
            .unwrap_or(crate::limits::shared::DEFAULT_NAMESPACE);
        let backend = crate::limits::shared::install(url, namespace, key, store.health())?;
        server.add_service(background_service(
            "sluice limits backend",
            LimitsBackend { backend },
        ));
    }
    Ok(())
}

/// `server.otlp_endpoint`: the span exporter, once the endpoint is checked.
fn add_trace_exporter(server: &mut Server, config: &wire::Config) -> anyhow::Result<()> {
    let Some(endpoint) = config.server.otlp_endpoint.as_deref() else {
        return Ok(());
    };
    let valid = url::Url::parse(endpoint)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !valid {
        anyhow::bail!(
            "server.otlp_endpoint: `{endpoint}` is not an http(s) URL of an OTLP collector (e.g. http://otel-collector:4318)"
        );
    }
    let service = config
        .server
        .otlp_service_name
        .as_deref()
        .unwrap_or("sluice");
    server.add_service(background_service(
        "sluice trace exporter",
        TraceExporter {
            run: Mutex::new(Some(Box::pin(crate::trace::install(endpoint, service)))),
        },
    ));
    Ok(())
}

/// The forward proxy's CA as configured (`forward.ca_cert`/`ca_key`, relative to the config
/// file) or under the data dir, created there on first use.
pub fn load_ca(config: &wire::Config, config_file: &Path) -> anyhow::Result<CertAuthority> {
    let base = config_file.parent().unwrap_or(Path::new("."));
    let cert = config.forward.ca_cert.as_ref().map(|p| base.join(p));
    let key = config.forward.ca_key.as_ref().map(|p| base.join(p));
    CertAuthority::load_or_create(&config.data_dir, cert.as_deref(), key.as_deref())
}

/// The proxy listener's TLS (`listeners.proxy_tls`, files relative to the config file).
pub fn proxy_tls(config: &wire::Config, config_file: &Path) -> anyhow::Result<Option<EdgeTls>> {
    let Some(tls) = &config.listeners.proxy_tls else {
        return Ok(None);
    };
    let base = config_file.parent().unwrap_or(Path::new("."));
    let files = |cert: &Path, key: &Path| CertFiles {
        cert: base.join(cert),
        key: base.join(key),
    };
    let mut all = vec![files(&tls.cert, &tls.key)];
    all.extend(tls.sni.iter().map(|f| files(&f.cert, &f.key)));
    let certs = Arc::new(ListenerCerts::load("proxy", all)?);
    let client_ca = tls.client_ca.as_ref().map(|p| base.join(p));
    EdgeTls::new(certs, tls.http2.unwrap_or(true), client_ca.as_deref()).map(Some)
}

/// The admin listener's TLS configuration (`listeners.admin_tls`, relative to the config file),
/// loaded once: it is fixed for the life of the process.
pub fn admin_tls(
    config: &wire::Config,
    config_file: &Path,
) -> anyhow::Result<Option<Arc<pingora::tls::ServerConfig>>> {
    let Some(files) = &config.listeners.admin_tls else {
        return Ok(None);
    };
    let base = config_file.parent().unwrap_or(Path::new("."));
    crate::tls::server_config(&base.join(&files.cert), &base.join(&files.key)).map(Some)
}

fn audit_target(config: &wire::Config) -> Option<Target> {
    let wire::Audit {
        sink,
        path,
        max_bytes,
        keep,
        queue: _,
    } = &config.audit;
    match sink {
        wire::AuditSinkKind::None => None,
        wire::AuditSinkKind::Stdout => Some(Target::Stdout),
        wire::AuditSinkKind::File => Some(Target::File {
            path: path
                .clone()
                .unwrap_or_else(|| config.data_dir.join("audit.jsonl")),
            max_bytes: *max_bytes,
            keep: *keep,
        }),
    }
}

struct EmbeddedMock {
    listener: Mutex<Option<std::net::TcpListener>>,
}

/// Writes the budgets' spend to `data_dir/budgets.json` every 5 s and at shutdown.
struct BudgetFlusher {
    registry: Arc<crate::budgets::Registry>,
    file: std::path::PathBuf,
}

#[async_trait]
impl BackgroundService for BudgetFlusher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            let stop = tokio::select! {
                _ = shutdown.changed() => true,
                _ = tick.tick() => false,
            };
            if let Err(e) = self.registry.save(&self.file) {
                log::warn!("budget spend not saved: {e:#}");
            }
            if stop {
                return;
            }
        }
    }
}

/// Posts trace batches to the OTLP collector.
struct TraceExporter {
    run: Mutex<Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>>,
}

#[async_trait]
impl BackgroundService for TraceExporter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let run = self.run.lock().ok().and_then(|mut r| r.take());
        if let Some(run) = run {
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = run => {}
            }
        }
    }
}

/// Keeps the shared limits backend connected, heartbeating and counting replicas.
struct LimitsBackend {
    backend: Arc<crate::limits::shared::Shared>,
}

#[async_trait]
impl BackgroundService for LimitsBackend {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = self.backend.clone().run() => {}
            _ = crate::limits::sync_flights() => {}
        }
    }
}

#[async_trait]
impl BackgroundService for EmbeddedMock {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self.listener.lock().ok().and_then(|mut l| l.take());
        let Some(std_listener) = taken else { return };
        match tokio::net::TcpListener::from_std(std_listener) {
            Ok(listener) => {
                let stop = async move {
                    let _ = shutdown.changed().await;
                };
                mock::serve(listener, MockOptions::default(), None, stop).await;
            }
            Err(e) => log::error!("embedded mock upstream cannot start: {e}"),
        }
    }
}

/// `sluice check`: validates a file and describes it, or returns every error.
pub fn check(config_file: &Path) -> Result<String, crate::config::ConfigErrors> {
    let (config, snap) = crate::config::load(config_file, &Default::default())?;
    let tls = [
        ("listeners.admin_tls", admin_tls(&config, config_file).err()),
        ("listeners.proxy_tls", proxy_tls(&config, config_file).err()),
    ];
    let source = std::fs::read_to_string(config_file).unwrap_or_default();
    let errors: Vec<_> = tls
        .into_iter()
        .filter_map(|(path, e)| Some((path, e?)))
        .map(|(path, e)| crate::config::ConfigError {
            file: Some(config_file.to_owned()),
            line: crate::config::locate::Lines::of(&source).line(path),
            path: path.to_owned(),
            message: format!("{e:#}"),
        })
        .collect();
    if !errors.is_empty() {
        return Err(crate::config::ConfigErrors(errors));
    }
    let keys: usize = snap.providers.iter().map(|p| p.keys.len()).sum();
    let mut out = format!(
        "{}: ok ({} providers, {} keys, {} routes, {} tokens)",
        config_file.display(),
        snap.providers.len(),
        keys,
        snap.routes.len(),
        snap.tokens.len()
    );
    for w in &snap.warnings {
        out.push_str(&format!("\nwarning: {w}"));
    }
    Ok(out)
}
