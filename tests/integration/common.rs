//! Test harness: real `sluice` processes and peers on 127.0.0.1, each listening on port 0 and
//! saying which port it got (`--ready-file`, a log line, a printed port): no port is reserved
//! and released beforehand. PostgreSQL and Redis are the tests' own, on Unix sockets.

use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port where connections are refused, for the life of the test process: a socket
/// bound there and never listening, so no other process can take the port meanwhile.
pub fn refused_port() -> u16 {
    static HELD: std::sync::OnceLock<(std::os::fd::OwnedFd, u16)> = std::sync::OnceLock::new();
    HELD.get_or_init(|| {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(([127, 0, 0, 1], 0).into())
            .expect("bind 127.0.0.1:0");
        let port = socket.local_addr().expect("local addr").port();
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: the descriptor was just taken out of `socket`, which no longer owns it.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(socket.into_raw_fd()) };
        (fd, port)
    })
    .1
}

/// The binary under test: this build's, or `SLUICE_TEST_BIN` (e.g. a release build, to read
/// the timings the tests print at release speed).
pub fn sluice_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("SLUICE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sluice").into())
    })
}

/// Waits until a process started with `--ready-file file` has written it (every listener
/// listens: no port was reserved beforehand, so none can be taken in between); its JSON.
fn wait_ready(file: &Path, child: &mut Child, what: &str, log: &Path) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        {
            return v;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited early ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} never became ready:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The port of the address `ready[key]` (`"127.0.0.1:41234"`).
fn port_of(ready: &Value, key: &str) -> Option<u16> {
    ready[key].as_str()?.rsplit(':').next()?.parse().ok()
}

/// A process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Mock {
    pub port: u16,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Mock {
    pub fn start(extra: &[&str]) -> Mock {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("mock.log");
        let ready = dir.path().join("ready.json");
        let out = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(sluice_bin())
            .args(["mock-upstream", "--listen", "127.0.0.1:0", "--ready-file"])
            .arg(&ready)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn mock");
        let port = port_of(
            &wait_ready(&ready, &mut child, "mock upstream", &log),
            "listen",
        )
        .expect("the mock's port");
        Mock {
            port,
            _proc: Proc { child, log },
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn stats(&self) -> serde_json::Value {
        http_get(format!("{}/_mock/stats", self.url()))
            .await
            .expect("stats")
            .json()
            .await
            .expect("json")
    }

    /// How many requests arrived with `header: value`.
    pub async fn seen(&self, header_and_value: &str) -> u64 {
        self.stats().await["credentials"][header_and_value]
            .as_u64()
            .unwrap_or(0)
    }
}

/// Listener ports as written in a test's config file (0: the system picks, the ready file says).
#[derive(Debug, Clone, PartialEq)]
struct Listen {
    proxy: u16,
    admin: u16,
    forward: Option<u16>,
    /// `listeners.proxy_tls` (a YAML flow mapping), when the proxy listener serves HTTPS.
    proxy_tls: Option<String>,
}

impl Listen {
    fn lines(&self) -> String {
        let forward = self
            .forward
            .map(|p| format!("  forward: 127.0.0.1:{p}\n"))
            .unwrap_or_default();
        let tls = self
            .proxy_tls
            .as_ref()
            .map(|t| format!("  proxy_tls: {t}\n"))
            .unwrap_or_default();
        format!(
            "listeners:\n  proxy: 127.0.0.1:{}\n  admin: 127.0.0.1:{}\n{forward}{tls}",
            self.proxy, self.admin
        )
    }
}

pub struct Sluice {
    pub port: u16,
    pub admin: u16,
    /// The forward-proxy listener, when started with `start_forward`.
    pub forward: Option<u16>,
    env: Vec<(String, String)>,
    /// The listener addresses in the config file (`127.0.0.1:0` until pinned by a restart).
    listen: Listen,
    /// `serve`, or `control-plane` (no proxy listener).
    command: &'static str,
    args: Vec<String>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub proc: Proc,
}

impl Sluice {
    /// Starts `sluice serve` with `dynamic` (providers/routes/tokens YAML) under generated listeners.
    pub fn start(dynamic: &str) -> Sluice {
        Self::start_with_env(dynamic, &[])
    }

    pub fn start_with_env(dynamic: &str, env: &[(&str, &str)]) -> Sluice {
        Self::launch(dynamic, env, None, &[])
    }

    /// Starts `sluice serve` with extra arguments (e.g. `--database`, `--control-plane`).
    pub fn start_args(dynamic: &str, env: &[(&str, &str)], args: &[&str]) -> Sluice {
        Self::launch(dynamic, env, None, args)
    }

    /// Starts Sluice with the forward-proxy listener on too.
    pub fn start_forward(dynamic: &str, env: &[(&str, &str)]) -> Sluice {
        Self::launch(dynamic, env, Some(0), &[])
    }

    /// Starts `sluice control-plane` (the admin API and its store only).
    pub fn start_control_plane(env: &[(&str, &str)], args: &[&str]) -> Sluice {
        Self::launch_as("control-plane", "", env, None, args)
    }

    fn launch(dynamic: &str, env: &[(&str, &str)], forward: Option<u16>, args: &[&str]) -> Sluice {
        Self::launch_as("serve", dynamic, env, forward, args)
    }

    /// Starts Sluice with its proxy listener on TLS: `proxy_tls` is the YAML flow mapping
    /// of `listeners.proxy_tls` (`{ cert: …, key: … }`).
    pub fn start_tls(dynamic: &str, env: &[(&str, &str)], proxy_tls: &str) -> Sluice {
        Self::launch_with(
            "serve",
            dynamic,
            env,
            (None, Some(proxy_tls.to_owned())),
            &[],
        )
    }

    fn launch_as(
        command: &'static str,
        dynamic: &str,
        env: &[(&str, &str)],
        forward: Option<u16>,
        args: &[&str],
    ) -> Sluice {
        Self::launch_with(command, dynamic, env, (forward, None), args)
    }

    fn launch_with(
        command: &'static str,
        dynamic: &str,
        env: &[(&str, &str)],
        (forward, proxy_tls): (Option<u16>, Option<String>),
        args: &[&str],
    ) -> Sluice {
        let dir = tempfile::tempdir().expect("tempdir");
        let listen = Listen {
            proxy: 0,
            admin: 0,
            forward,
            proxy_tls,
        };
        let config = dir.path().join("sluice.yaml");
        std::fs::write(&config, Self::render(&listen, dir.path(), dynamic)).expect("write config");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (proc, ready) = Self::spawn(command, &config, &env, &args, dir.path());
        Sluice {
            port: port_of(&ready, "proxy").unwrap_or(0),
            admin: port_of(&ready, "admin").expect("the admin port"),
            forward: port_of(&ready, "forward"),
            listen,
            env,
            command,
            args,
            dir,
            config,
            proc,
        }
    }

    fn spawn(
        command: &str,
        config: &Path,
        env: &[(String, String)],
        args: &[String],
        dir: &Path,
    ) -> (Proc, Value) {
        let log = dir.join("sluice.log");
        let ready = dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut child = Command::new(sluice_bin())
            .args([command, "--config"])
            .arg(config)
            .arg("--ready-file")
            .arg(&ready)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            // Debug builds: the clocks move forward on request (`advance_clock`).
            .env("SLUICE_TEST_CLOCK", "1")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn sluice");
        let bound = wait_ready(&ready, &mut child, "sluice", &log);
        (Proc { child, log }, bound)
    }

    /// Writes the ports this process got into its config file, so a restart (or an edit of the
    /// file) keeps them.
    fn pin_listeners(&mut self) {
        let pinned = Listen {
            proxy: if self.command == "serve" {
                self.port
            } else {
                0
            },
            admin: self.admin,
            forward: self.forward,
            proxy_tls: self.listen.proxy_tls.clone(),
        };
        if pinned == self.listen {
            return;
        }
        let text = std::fs::read_to_string(&self.config).expect("config");
        assert!(
            text.contains(&self.listen.lines()),
            "the config's listener lines were rewritten: pin them in the test"
        );
        let text = text.replace(&self.listen.lines(), &pinned.lines());
        std::fs::write(&self.config, text).expect("pin listeners");
        self.listen = pinned;
    }

    /// Stops the process and starts it again on the same ports, config and data dir.
    pub fn relaunch(&mut self) {
        self.stop();
        self.proc = Self::spawn(
            self.command,
            &self.config,
            &self.env,
            &self.args,
            self.dir.path(),
        )
        .0;
    }

    /// `relaunch` with other arguments.
    pub fn relaunch_with(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self.relaunch();
    }

    /// Kills the process (it stays down until `relaunch`); its config file names the ports it
    /// had from now on.
    pub fn stop(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
        self.pin_listeners();
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin)
    }

    /// The first-run admin token (written by the embedded control plane).
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data/admin-token"))
            .expect("admin-token")
            .trim()
            .to_owned()
    }

    /// The config file: generated listeners and server options, then `dynamic`. A `server:`
    /// block opening `dynamic` adds its (indented) options to the generated ones.
    fn render(listen: &Listen, dir: &Path, dynamic: &str) -> String {
        let data = dir.join("data");
        let (extra, dynamic) = match dynamic.strip_prefix("server:\n") {
            Some(rest) => {
                let end = rest
                    .lines()
                    .take_while(|l| l.starts_with("  "))
                    .map(|l| l.len() + 1)
                    .sum::<usize>()
                    .min(rest.len());
                rest.split_at(end)
            }
            None => ("", dynamic),
        };
        format!(
            "{}data_dir: {}\nserver:\n  threads: 2\n  grace_period_seconds: 1\n  graceful_shutdown_timeout_seconds: 1\n{extra}{dynamic}",
            listen.lines(),
            data.display()
        )
    }

    /// `http://127.0.0.1:PORT` of the forward proxy.
    pub fn proxy_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.forward.expect("started with start_forward")
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `https://localhost:PORT{path}` of a proxy listener started with `start_tls`.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// Rewrites the dynamic part of the config (atomically, as editors and GitOps tools do).
    pub fn rewrite_config(&self, dynamic: &str) {
        let tmp = self.dir.path().join(".sluice.yaml.tmp");
        let mut f = std::fs::File::create(&tmp).expect("tmp config");
        f.write_all(Self::render(&self.listen, self.dir.path(), dynamic).as_bytes())
            .expect("write");
        f.sync_all().expect("sync");
        std::fs::rename(&tmp, &self.config).expect("rename");
    }

    pub fn write_raw_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("write raw config");
    }

    pub async fn metrics(&self) -> String {
        http_get(format!("http://127.0.0.1:{}/metrics", self.admin))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// The value of one metric sample line (`name{labels}`), 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// Waits until the serving revision reaches `revision` (reloads are asynchronous).
    pub async fn wait_revision(&self, revision: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.metric("sluice_config_revision").await as u64 >= revision {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "revision {revision} never served:\n{}",
            self.proc.log_text()
        );
    }

    /// Waits until a reload with `result` has been counted `count` times.
    pub async fn wait_reload_result(&self, result: &str, count: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let sample = format!("sluice_config_reload_total{{result=\"{result}\"}}");
        while Instant::now() < deadline {
            if self.metric(&sample).await as u64 >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{sample} never reached {count}:\n{}", self.proc.log_text());
    }
}

/// An opaque token and its `tokens:` record (YAML flow mapping, without the list dash).
pub struct TestToken {
    pub token: String,
    pub record: String,
}

/// A fresh opaque token; `extra` adds fields to the record (e.g. `, scopes: [llm]`).
pub fn opaque_token(extra: &str) -> TestToken {
    let (token, id, digest) = sluice::auth::opaque::generate().expect("randomness");
    TestToken {
        token,
        record: format!(
            "{{ id: {id}, sha256: \"sha256:{}\"{extra} }}",
            hex::encode(digest)
        ),
    }
}

/// One token shared by a test binary's simple cases.
pub fn tok() -> &'static TestToken {
    static TOKEN: std::sync::OnceLock<TestToken> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| opaque_token(", name: ci, owner: ci-bot"))
}

/// Posts `CHAT` to `path` with `headers`; returns the status and Sluice's refusal reason
/// (`x-sluice-error`, empty when the request went through).
pub async fn call(sluice: &Sluice, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = client().post(sluice.url(path)).body(CHAT);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    (r.status().as_u16(), sluice_error(&r))
}

/// Sluice's refusal reason (`x-sluice-error`), empty when there is none.
pub fn sluice_error(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-sluice-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Status of `CHAT` posted to `path` with the shared test token and `extra` headers.
pub async fn chat_status(sluice: &Sluice, path: &str, extra: &[(&str, &str)]) -> u16 {
    let bearer = format!("Bearer {}", tok().token);
    let mut headers = vec![("authorization", bearer.as_str())];
    headers.extend_from_slice(extra);
    call(sluice, path, &headers).await.0
}

/// A plain-HTTP client. The system's root certificates are not loaded: nothing here speaks
/// TLS through reqwest, and loading them costs tens of milliseconds per client, which would
/// show up in the timings the tests print.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .tls_built_in_root_certs(false)
        .build()
        .expect("client")
}

/// `GET url` with `client()`.
pub async fn http_get(url: String) -> reqwest::Result<reqwest::Response> {
    client().get(url).send().await
}

pub const CHAT: &str = r#"{"model":"gpt-mock","messages":[{"role":"user","content":"hello"}]}"#;
pub const CHAT_STREAM: &str = r#"{"model":"gpt-mock","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello"}]}"#;

/// The test identity provider: `oidc-provider` under Node (tests/idp/server.js).
pub struct Idp {
    pub port: u16,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Idp {
    pub fn start() -> Idp {
        use std::io::BufRead;
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp");
        assert!(
            root.join("node_modules/oidc-provider").exists(),
            "the JWT tests need oidc-provider: run scripts/test.sh (npm ci in tests/idp)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("idp.log");
        let mut child = Command::new("node")
            .arg(root.join("server.js"))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("node");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("idp port line");
        let port = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["port"].as_u64())
            .unwrap_or_else(|| {
                panic!(
                    "idp did not start: {line} {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            }) as u16;
        Idp {
            port,
            _proc: Proc { child, log },
            _dir: dir,
        }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client_credentials access token (JWT) for `client` (`rs-client` or `es-client`).
    pub async fn token(&self, client: &str, scope: &str) -> String {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", &format!("{client}-secret")),
            ("scope", scope),
            ("resource", "urn:sluice:gateway"),
        ];
        let resp: serde_json::Value = self::client()
            .post(format!("{}/token", self.issuer()))
            .form(&form)
            .send()
            .await
            .expect("token request")
            .json()
            .await
            .expect("token json");
        resp["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {resp}"))
            .to_owned()
    }

    /// Tokens signed with the IdP's current keys for claims it would never issue.
    pub async fn mint(&self, request: serde_json::Value) -> serde_json::Value {
        client()
            .post(format!("{}/_test/mint", self.issuer()))
            .body(request.to_string())
            .send()
            .await
            .expect("mint")
            .json()
            .await
            .expect("mint json")
    }

    pub async fn rotate(&self) {
        let r = client()
            .post(format!("{}/_test/rotate", self.issuer()))
            .send()
            .await
            .expect("rotate");
        assert!(r.status().is_success());
    }

    /// Drops every key but the newest pair (after `rotate`: the old keys are gone).
    pub async fn retire(&self) {
        let r = client()
            .post(format!("{}/_test/retire", self.issuer()))
            .send()
            .await
            .expect("retire");
        assert!(r.status().is_success());
    }

    pub async fn jwks_fetches(&self) -> u64 {
        let v: serde_json::Value = http_get(format!("{}/_test/stats", self.issuer()))
            .await
            .expect("stats")
            .json()
            .await
            .expect("json");
        v["jwks"].as_u64().unwrap_or(0)
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// The admin API, the CLI and PostgreSQL, for the control-plane tests.

pub const MASTER: &str = "c2x1aWNlLXRlc3QtbWFzdGVyLWtleS0zMi1ieXRlcyE="; // 32 bytes, base64

/// The PostgreSQL server the tests use, as an URL to its `postgres` database:
/// `SLUICE_TEST_DATABASE_URL` when set, else a private cluster this test process starts once
/// (`initdb` + `postgres` under `target/tmp`, or the system's temporary directory as root,
/// listening on a Unix socket only: no port to race for) and stops when it exits.
fn pg_server() -> &'static str {
    static SERVER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("SLUICE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => private_cluster(),
    })
}

/// A PostgreSQL server binary (`initdb`, `postgres`, `pg_ctl`): on the PATH, or the newest
/// Debian `postgresql` package's.
fn pg_bin(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| {
            let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .flatten()
                .map(|e| e.path().join("bin").join(name))
                .filter(|p| p.is_file())
                .collect();
            versions.sort();
            versions.pop()
        })
        .unwrap_or_else(|| {
            panic!("{name} not found: install PostgreSQL (scripts/test.sh does) or set SLUICE_TEST_DATABASE_URL")
        })
}

/// Starts a throwaway cluster; its URL. PostgreSQL refuses to run as root, so as root it runs
/// as the `postgres` user the package creates.
fn private_cluster() -> String {
    let root = running_as_root();
    // As root the cluster runs as `postgres`, which may not reach into the checkout (a clone
    // under /root): then it lives under the system's temporary directory.
    let in_target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pg");
    // The socket's path must fit PostgreSQL's 107 bytes.
    let base = if root || in_target.as_os_str().len() > 60 {
        Path::new("/tmp").join("sluice-test-pg")
    } else {
        in_target
    };
    std::fs::create_dir_all(&base).expect("the cluster's base directory");
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755));
    }
    let dir = tempfile::Builder::new()
        .prefix("c")
        .tempdir_in(&base)
        .expect("cluster dir")
        .keep();
    let (data, sock) = (dir.join("data"), dir.join("s"));
    std::fs::create_dir_all(&sock).expect("socket dir");
    let as_owner = |program: PathBuf| {
        let mut c = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.stdin(Stdio::null());
        c
    };
    if root {
        let status = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(status.success(), "chown the cluster dir to postgres");
    }
    let out = as_owner(pg_bin("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ])
        .output()
        .expect("initdb");
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_owner(pg_bin("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .args(["-w", "-l"])
        .arg(dir.join("log"))
        .arg("-o")
        .arg(format!(
            "-c listen_addresses='' -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            sock.display()
        ))
        .arg("start")
        .output()
        .expect("pg_ctl start");
    assert!(
        out.status.success(),
        "pg_ctl start: {}{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    );
    // Stopped (and removed) when this process exits: a watcher waits for its stdin to close.
    let stop = format!(
        "trap '' INT TERM HUP; read _; {}pg_ctl -D '{}' -m immediate stop >/dev/null 2>&1; rm -rf '{}'",
        if root { "runuser -u postgres -- " } else { "" },
        data.display(),
        dir.display()
    )
    .replace("pg_ctl", &pg_bin("pg_ctl").display().to_string());
    let watcher = Command::new("sh")
        .args(["-c", &stop])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cluster watcher");
    // Kept for the life of the process: its stdin closes when the process ends.
    std::mem::forget(watcher);
    format!(
        "postgres://postgres@localhost/postgres?host={}",
        sock.display()
    )
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The server's URL for database `name`.
fn pg_url(name: &str) -> String {
    let mut url = reqwest::Url::parse(pg_server()).expect("SLUICE_TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A fresh PostgreSQL database on the test server (`pg_server`), dropped afterwards.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

/// Runs `sql` in the server's `postgres` database.
fn psql(sql: &str) {
    let out = Command::new("psql")
        .arg("-w")
        .arg(pg_url("postgres"))
        .args(["-v", "ON_ERROR_STOP=1", "-qc", sql])
        .stdin(Stdio::null())
        .output()
        .expect("psql (the PostgreSQL client)");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).expect("random");
        let name = format!("sluice_t_{}", hex::encode(b));
        psql(&format!("CREATE DATABASE {name}"));
        PgDatabase {
            url: pg_url(&name),
            name,
        }
    }

    /// Every resource body, as stored.
    pub fn bodies(&self) -> String {
        self.rows("SELECT kind, name, body FROM sluice_resources")
    }

    /// The rows `sql` selects, as psql prints them unaligned.
    pub fn rows(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .arg("-w")
            .arg(&self.url)
            .args(["-Atc", sql])
            .stdin(Stdio::null())
            .output()
            .expect("psql");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg("-w")
            .arg(pg_url("postgres"))
            .stdin(Stdio::null())
            .arg("-qc")
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

pub async fn api(
    sluice_admin: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let c = client();
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = c.request(m, format!("{sluice_admin}{path}"));
    if !token.is_empty() {
        req = req.bearer_auth(token);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let r = req.send().await.expect("admin API");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub async fn new_token_for(admin: &str, root: &str, owner: &str, role: Option<&str>) -> String {
    let (s, v) = api(
        admin,
        root,
        "POST",
        "/v1/owners",
        Some(&json!({"name": owner, "role": role}).to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api(
        admin,
        root,
        "POST",
        "/v1/tokens",
        Some(&json!({"name": owner, "owner": owner}).to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().expect("token").to_owned()
}

/// Runs the `sluice` CLI against an admin API.
pub fn cli(admin: &str, token: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(sluice_bin())
        .args(args)
        .env("SLUICE_ADMIN_URL", admin)
        .env("SLUICE_ADMIN_TOKEN", token)
        .envs(env.iter().copied())
        .output()
        .expect("sluice cli");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sluice {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub async fn status_with(port: u16, token: &str) -> u16 {
    client()
        .post(format!("http://127.0.0.1:{port}/llm/v1/chat/completions"))
        .bearer_auth(token)
        .body(CHAT)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Waits until `port` answers `want` for `token`; returns how long it took.
pub async fn until_status(port: u16, token: &str, want: u16) -> Duration {
    let started = Instant::now();
    while status_with(port, token).await != want {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "port {port} never answered {want}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

/// The control revision `admin` serves (0 while not ready).
pub async fn serving_revision(admin: &str) -> u64 {
    readyz(admin).await["control_revision"]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until `admin` serves control revision `rev` or a newer one (10 s at most).
pub async fn until_revision(admin: &str, rev: u64) {
    let started = Instant::now();
    while serving_revision(admin).await < rev {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{admin} never served revision {rev}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub async fn readyz(admin: &str) -> Value {
    match http_get(format!("{admin}/readyz")).await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// An HTTP API that answers every request with the request head it received (as JSON).
pub async fn echo_api() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = serde_json::json!({"head": String::from_utf8_lossy(&head)}).to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

/// The first audit record `find` accepts, waiting up to 5 s for the writer.
pub async fn wait_audit(
    sluice: &Sluice,
    find: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let path = sluice.dir.path().join("data/audit.jsonl");
    for _ in 0..50 {
        let audit = std::fs::read_to_string(&path).unwrap_or_default();
        let found = audit
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| find(r));
        if found.is_some() {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    None
}

/// Moves the clocks of `planes` `ms` forward (debug builds; `POST /_test/clock/advance`):
/// instead of sleeping until a token nears its expiry or a cool-down ends.
pub async fn advance_clock(planes: &[&Sluice], ms: u64) {
    for p in planes {
        let r = client()
            .post(format!("{}/_test/clock/advance?ms={ms}", p.admin_url()))
            .send()
            .await
            .expect("advance the clock");
        assert_eq!(
            r.status(),
            200,
            "the test clock needs a debug build of sluice (SLUICE_TEST_BIN)"
        );
    }
}

/// Waits until `sample` on `sluice`'s `/metrics` is `want` (5 s at most).
pub async fn until_metric(sluice: &Sluice, sample: &str, want: f64) {
    for _ in 0..200 {
        if sluice.metric(sample).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{sample} never became {want}");
}

/// A config with one provider of `kind` named `name` over `mock`, with a pool of two keys
/// (`{p}1`, `{p}2`, from the variables `KEY_{P}1`, `KEY_{P}2`), routed at `/{name}` for the test
/// token, audited to a file.
pub fn two_key_config(mock: &Mock, kind: &str, name: &str, p: char) -> String {
    let up = p.to_ascii_uppercase();
    format!(
        r#"audit:
  sink: file
providers:
  - {{ name: {name}, kind: {kind}, base_url: "{url}", keys: [{{ id: {p}1, secret_ref: "env:KEY_{up}1" }}, {{ id: {p}2, secret_ref: "env:KEY_{up}2" }}] }}
routes:
  - {{ prefix: /{name}, provider: {name}, auth: token }}
tokens:
  - {sha}
"#,
        url = mock.url(),
        sha = tok().record
    )
}
