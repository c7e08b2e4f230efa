//! `sluice` command line: wiring only.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice::cli;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// mimalloc: pingora allocates per request and per chunk; glibc malloc/free measured at ~14 % of
/// proxy CPU under load. Builds without the `mimalloc` feature use the system allocator (heap
/// profilers).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "AI gateway edge proxy: provider-key pools, auth and accounting for LLM traffic"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (reverse proxy, admin listener, config watcher).
    ///
    /// Example: sluice serve --config conf/sluice.yaml
    Serve {
        #[arg(long, short, default_value = "conf/sluice.yaml", env = "SLUICE_CONFIG")]
        config: PathBuf,
        /// The control plane's store: sqlite://PATH (default: sluice.db under data_dir) or
        /// postgres://… (several replicas may share one database).
        #[arg(long, env = "SLUICE_DATABASE")]
        database: Option<String>,
        /// Run a data plane only, following this control plane (e.g. http://cp:9090).
        #[arg(long, env = "SLUICE_CONTROL_PLANE", conflicts_with = "database")]
        control_plane: Option<String>,
        /// The data plane's token at the control plane (owner with the dataplane role).
        #[arg(long, env = "SLUICE_CONTROL_TOKEN", requires = "control_plane")]
        token: Option<String>,
        /// The control plane's revision-feed key (`ed25519:…`, from GET /v1/snapshot/key):
        /// feeds signed by any other key are refused. Default: the first key seen, kept in
        /// the data dir.
        #[arg(long, env = "SLUICE_CONTROL_PLANE_KEY", requires = "control_plane")]
        control_plane_key: Option<String>,
        /// Once every listener listens, write their addresses here as JSON (`{"proxy":
        /// "127.0.0.1:41234", …}`): how to learn the ports of listeners on port 0.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Run the control plane only: the admin API over its store, no proxy listeners. Several
    /// replicas may share one PostgreSQL database; data planes follow any of them.
    ///
    /// Example: sluice control-plane --database postgres://sluice@db/sluice
    ControlPlane {
        #[arg(long, short, default_value = "conf/sluice.yaml", env = "SLUICE_CONFIG")]
        config: PathBuf,
        /// The store: sqlite://PATH (default: sluice.db under data_dir) or postgres://….
        #[arg(long, env = "SLUICE_DATABASE")]
        database: Option<String>,
        /// Once the admin listener listens, write its address here as JSON.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Validate a configuration file; exits non-zero with every error (file:line: field: problem).
    ///
    /// Example: sluice check --config conf/sluice.yaml
    Check {
        #[arg(long, short, default_value = "conf/sluice.yaml")]
        config: PathBuf,
        /// Also print the configuration as understood: parsed with every default, and what was
        /// built from it (routes, providers, key pools, issuers, tokens, forward proxy).
        #[arg(long)]
        explain: bool,
    },
    /// Usage totals from the audit files (the current one and its rotations).
    ///
    /// Example: sluice usage --by model --since 24h
    Usage {
        #[arg(long, short, default_value = "conf/sluice.yaml")]
        config: PathBuf,
        /// An audit file to read instead of the one the config names.
        #[arg(long)]
        file: Option<PathBuf>,
        /// principal, provider or model.
        #[arg(long, default_value = "principal")]
        by: String,
        /// Only records at or after this: a duration back from now (24h, 7d) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only records before this (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The forward proxy's CA (clients must trust it to use intercepted hosts).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Certificates for the TLS listeners: make a self-signed one, or reload the listeners'.
    Tls {
        #[command(subcommand)]
        command: TlsCommand,
    },
    /// Opaque API tokens: `generate` works offline (for the config file); the other verbs use
    /// the admin API.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Providers in the control plane's store (admin API).
    Provider {
        #[command(subcommand)]
        command: cli::ProviderCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Provider keys (same as `sluice provider key`).
    Key {
        #[command(subcommand)]
        command: cli::KeyCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Secrets: write-only values, encrypted at rest (admin API).
    Secret {
        #[command(subcommand)]
        command: cli::SecretCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Trusted JWT issuers (admin API).
    Issuer {
        #[command(subcommand)]
        command: cli::IssuerCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// MCP servers fronted at /mcp/{name} (admin API).
    Mcp {
        #[command(subcommand)]
        command: cli::McpCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Agents' HTTP APIs served at /agents/{agent}/{env} (admin API).
    Agent {
        #[command(subcommand)]
        command: cli::AgentCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// OAuth apps of Sluice's issuer for agent environments (admin API).
    App {
        #[command(subcommand)]
        command: cli::AppCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Routes (admin API).
    Route {
        #[command(subcommand)]
        command: cli::RouteCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Rate and concurrency limits per token, owner, route, provider or app (admin API).
    Limit {
        #[command(subcommand)]
        command: cli::LimitCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Spend caps per period in tokens and US dollars (admin API).
    Budget {
        #[command(subcommand)]
        command: cli::BudgetCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Token owners and their admin roles (admin API).
    Owner {
        #[command(subcommand)]
        command: cli::OwnerCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Upstream OAuth providers: authorization servers Sluice is a client of.
    Oauth {
        #[command(subcommand)]
        command: cli::OauthCmd,
        #[command(flatten)]
        conn: cli::Conn,
    },
    /// Print the admin API's OpenAPI document (the repository's openapi.json).
    ///
    /// Example: sluice openapi > openapi.json
    Openapi,
    /// Run a fast OpenAI/Anthropic-compatible mock upstream (tests, benches, load tests).
    ///
    /// Example: sluice mock-upstream --listen 127.0.0.1:9999 --chunks 16 --chunk-interval-ms 5
    MockUpstream(MockArgs),
}

#[derive(clap::Args)]
struct MockArgs {
    #[arg(long, default_value = "127.0.0.1:9999")]
    listen: String,
    /// Delay before the response head.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Delay before the first streamed event.
    #[arg(long, default_value_t = 0)]
    ttft_ms: u64,
    /// Content chunks per response.
    #[arg(long, default_value_t = 8)]
    chunks: usize,
    /// Act like a provider's prompt cache, per key: a chat prompt seen before with the same key
    /// reports its input as cached tokens (counted in the stats' `cache_hits`).
    #[arg(long)]
    prompt_cache: bool,
    /// Delay between streamed chunks.
    #[arg(long, default_value_t = 0)]
    chunk_interval_ms: u64,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Once listening, write the bound address here as JSON (`{"listen": "127.0.0.1:41234"}`):
    /// how to learn the port of `--listen 127.0.0.1:0`.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum CaCommand {
    /// Print the CA certificate (PEM), creating the CA under the data dir if it does not exist.
    ///
    /// Example: sluice ca export --config conf/sluice.yaml > sluice-ca.pem
    ///          HTTPS_PROXY=http://any:$TOKEN@127.0.0.1:8888 SSL_CERT_FILE=sluice-ca.pem my-agent
    Export {
        #[arg(long, short, default_value = "conf/sluice.yaml", env = "SLUICE_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Write a certificate for trying HTTPS: `cert.pem` and `key.pem` for
    /// `listeners.proxy_tls`, signed by a throw-away CA (`ca.pem`, for clients to trust; its key
    /// is not kept).
    ///
    /// Example: sluice tls self-signed --out conf/tls localhost 127.0.0.1
    ///          curl --cacert conf/tls/ca.pem https://localhost:8443/healthz
    SelfSigned {
        /// Where to write ca.pem, cert.pem and key.pem.
        #[arg(long, default_value = "tls")]
        out: PathBuf,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 90)]
        days: i64,
        /// DNS names and IP addresses the certificate is for.
        #[arg(default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()])]
        names: Vec<String>,
    },
    /// Load the listeners' certificate files again now, as a file change or SIGHUP does (the
    /// admin API of a process with the embedded control plane: `POST /v1/tls/reload`).
    ///
    /// Example: SLUICE_ADMIN_URL=http://127.0.0.1:9090 sluice tls reload
    Reload {
        #[command(flatten)]
        conn: cli::Conn,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    #[command(flatten)]
    Server(cli::ServerTokenCmd),
    /// Create a token: prints it once, and the record to add under `tokens:` (only the SHA-256
    /// of its secret is ever written down).
    ///
    /// Example: sluice token generate --name ci --owner ci-bot --scopes llm,embeddings --expires-in 30d
    Generate(cli::TokenFields),
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            database,
            control_plane,
            token,
            control_plane_key,
            ready_file,
        } => serve(
            &config,
            sluice::server::ServeOptions {
                database,
                control_plane,
                token,
                control_plane_key,
                ready_file,
                control_plane_only: false,
            },
        ),
        Command::ControlPlane {
            config,
            database,
            ready_file,
        } => serve(
            &config,
            sluice::server::ServeOptions {
                database,
                ready_file,
                control_plane_only: true,
                ..Default::default()
            },
        ),
        Command::Ca {
            command: CaCommand::Export { config },
        } => ca_export(&config),
        Command::Tls { command } => match command {
            TlsCommand::SelfSigned { out, days, names } => tls_self_signed(&out, days, &names),
            TlsCommand::Reload { conn } => cli::tls_reload(&conn),
        },
        Command::Openapi => {
            print!("{}", sluice::control::openapi::json());
            Ok(())
        }
        Command::Check { config, explain } => check(&config, explain),
        Command::Usage {
            config,
            file,
            by,
            since,
            until,
            json,
        } => usage(config, file, &by, since, until, json),
        Command::Token {
            command: TokenCommand::Server(cmd),
            conn,
        } => cli::token(&conn, cmd),
        Command::Provider { command, conn } => cli::provider(&conn, command),
        Command::Key { command, conn } => cli::key(&conn, command),
        Command::Secret { command, conn } => cli::secret(&conn, command),
        Command::Issuer { command, conn } => cli::issuer(&conn, command),
        Command::Route { command, conn } => cli::route(&conn, command),
        Command::Owner { command, conn } => cli::owner(&conn, command),
        Command::Limit { command, conn } => cli::limit(&conn, command),
        Command::Budget { command, conn } => cli::budget(&conn, command),
        Command::Oauth { command, conn } => cli::oauth(&conn, command),
        Command::Mcp { command, conn } => cli::mcp(&conn, command),
        Command::Agent { command, conn } => cli::agent(&conn, command),
        Command::App { command, conn } => cli::app(&conn, command),
        Command::Token {
            conn: _,
            command: TokenCommand::Generate(fields),
        } => {
            let (token, record) = cli::generate_token(fields)?;
            println!("Token (shown once; store it now):\n{token}\n\nAdd under `tokens:` in the config:\n  - {record}");
            Ok(())
        }
        Command::MockUpstream(args) => mock_upstream(args),
    }
}

/// `sluice ca export`: the forward proxy's CA certificate, for clients to trust.
fn ca_export(config: &std::path::Path) -> anyhow::Result<()> {
    let (wire, _) = sluice::config::read_file(config)?;
    let ca = sluice::server::load_ca(&wire, config)?;
    print!("{}", ca.pem);
    Ok(())
}

fn serve(config: &std::path::Path, opts: sluice::server::ServeOptions) -> anyhow::Result<()> {
    let server = sluice::server::build(config, &opts)?;
    server.run_forever()
}

/// `sluice check`: every error as `file:line: field: problem`, exit status 1.
fn check(config: &std::path::Path, explain: bool) -> anyhow::Result<()> {
    match sluice::server::check(config) {
        Ok(summary) => {
            println!("{summary}");
            if explain {
                let (wire, snap) = sluice::config::load(config, &Default::default())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                print!("{}", sluice::config::describe::describe(&wire, &snap));
            }
            Ok(())
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{} error(s)", errors.0.len());
            std::process::exit(1)
        }
    }
}

/// `sluice mock-upstream`: serves until Ctrl-C.
fn mock_upstream(args: MockArgs) -> anyhow::Result<()> {
    let MockArgs {
        listen,
        latency_ms,
        ttft_ms,
        chunks,
        prompt_cache,
        chunk_interval_ms,
        tls_cert,
        tls_key,
        threads,
        ready_file,
    } = args;
    let opts = sluice::mock::MockOptions {
        latency: Duration::from_millis(latency_ms),
        ttft: Duration::from_millis(ttft_ms),
        chunks,
        chunk_interval: Duration::from_millis(chunk_interval_ms),
        prompt_cache,
    };
    let tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some(sluice::tls::server_config(&cert, &key)?),
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        log::info!("mock upstream listening on {addr}");
        if let Some(file) = &ready_file {
            let text = serde_json::json!({ "listen": addr.to_string() }).to_string();
            let tmp = file.with_extension("tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, file)?;
        }
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        sluice::mock::serve(listener, opts, tls, stop).await;
        Ok(())
    })
}

fn usage(
    config: PathBuf,
    file: Option<PathBuf>,
    by: &str,
    since: Option<String>,
    until: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    use sluice::audit::report::{self, GroupBy};
    let by = match by {
        "principal" => GroupBy::Principal,
        "provider" => GroupBy::Provider,
        "model" => GroupBy::Model,
        other => anyhow::bail!("--by {other}: use principal, provider or model"),
    };
    // Prices and provider kinds from the config when it can be read (else no dollars).
    let read = sluice::config::read_file(&config);
    let wire = read.as_ref().ok().map(|(w, _)| w);
    let path = match file {
        Some(f) => f,
        None => {
            let (w, _) = read.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
            w.audit
                .path
                .clone()
                .unwrap_or_else(|| w.data_dir.join("audit.jsonl"))
        }
    };
    let prices = sluice::budgets::Prices::new(wire.map_or(&[][..], |w| &w.prices));
    let kinds: std::collections::HashMap<String, sluice::config::ProviderKind> = wire
        .iter()
        .flat_map(|w| w.providers.iter().map(|p| (p.name.clone(), p.kind)))
        .collect();
    let price = |provider: &str, model: Option<&str>, u: &sluice::audit::Usage| {
        let kind = kinds
            .get(provider)
            .copied()
            .unwrap_or(sluice::config::ProviderKind::OpenAi);
        prices.cost_micro_usd(provider, kind, model, u)
    };
    let when = |s: Option<String>| -> anyhow::Result<Option<std::time::SystemTime>> {
        let Some(s) = s else { return Ok(None) };
        if let Ok(d) = humantime::parse_duration(&s) {
            return Ok(Some(std::time::SystemTime::now() - d));
        }
        Ok(Some(humantime::parse_rfc3339_weak(&s).with_context(
            || format!("`{s}` is neither a duration nor an RFC 3339 time"),
        )?))
    };
    let files = report::files(&path);
    anyhow::ensure!(!files.is_empty(), "no audit file at {}", path.display());
    let totals = report::totals(&files, by, when(since)?, when(until)?, &price)?;
    if json {
        let map: serde_json::Map<String, serde_json::Value> = totals
            .iter()
            .map(|(k, t)| {
                (k.clone(), serde_json::json!({"requests": t.requests, "input": t.input, "output": t.output, "cache_read": t.cache_read, "cache_write": t.cache_write, "usd": t.micro_usd as f64 / 1e6}))
            })
            .collect();
        println!("{}", serde_json::Value::Object(map));
    } else {
        print!("{}", report::table(by, &totals));
    }
    Ok(())
}

/// `sluice tls self-signed`: writes the certificate and prints the config lines for it.
fn tls_self_signed(out: &Path, days: i64, names: &[String]) -> anyhow::Result<()> {
    let w = sluice::edge::self_signed::write(out, names, days)?;
    // Absolute: the config file resolves relative paths from its own directory.
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let (ca, cert, key) = (abs(&w.ca), abs(&w.cert), abs(&w.key));
    let (ca, cert, key) = (ca.display(), cert.display(), key.display());
    let names = names.join(", ");
    println!(
        "wrote {cert} and {key} (for {names}), signed by {ca}\n\nlisteners:\n  proxy_tls:\n    cert: {cert}\n    key: {key}\n\nclients trust {ca} (SSL_CERT_FILE, curl --cacert)"
    );
    Ok(())
}
