//! The observability kit against a live Sluice: every metric the Grafana dashboard queries is
//! exported, and a real Prometheus server scraping Sluice under a little load (with the
//! shipped rules loaded) answers the dashboard's key queries.

use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn kit(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// The metric names the dashboard's queries use.
fn dashboard_metrics() -> Vec<(String, String)> {
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(kit("grafana/sluice.json")).unwrap())
            .unwrap();
    let mut found = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().to_owned();
            let mut rest = expr.as_str();
            while let Some(at) = rest.find("sluice_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                found.push((name, expr.clone()));
            }
        }
    }
    assert!(found.len() >= 10, "{found:?}");
    found
}

/// A Prometheus server (the Debian package) killed on drop.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let bin = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect(
                "the observability test needs prometheus: run scripts/test.sh (apt prometheus)",
            );
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nrule_files: [\"{}\"]\nscrape_configs:\n  - job_name: sluice\n    static_configs: [{{ targets: [\"{target}\"] }}]\n",
            kit("prometheus/sluice-rules.yml").display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .expect("prometheus");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    async fn query(&self, expr: &str) -> Vec<Value> {
        let r = client()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", expr)])
            .send()
            .await;
        match r {
            Ok(r) => r.json::<Value>().await.unwrap_or_default()["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_what_the_dashboard_and_rules_query() {
    let mock = Mock::start(&[]);
    let dynamic = format!(
        "providers:\n  - {{ name: openai, kind: openai, base_url: \"{}\", keys: [{{ id: a, secret_ref: \"env:KEY_A\" }}] }}\nroutes:\n  - {{ prefix: /openai, provider: openai }}\ntokens:\n  - {}\nmcp_servers:\n  - {{ name: down, url: \"http://127.0.0.1:{}/mcp\", client_auth: token }}\naudit:\n  sink: file\n",
        mock.url(),
        tok().record,
        free_port()
    );
    let sluice = Sluice::start_with_env(&dynamic, &[("KEY_A", "sk-pool-key-a-000000")]);
    let admin = sluice.admin_url();
    let prometheus = Prometheus::start(admin.trim_start_matches("http://"));

    // A little traffic of each kind: answered, refused, an MCP server that is down.
    let load = async {
        for _ in 0..8 {
            for _ in 0..5 {
                assert_eq!(
                    chat_status(&sluice, "/openai/v1/chat/completions", &[]).await,
                    200
                );
            }
            let (s, _) = call(&sluice, "/openai/v1/chat/completions", &[]).await;
            assert_eq!(s, 401);
            let r = client()
                .post(sluice.url("/mcp/down"))
                .bearer_auth(&tok().token)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 502);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    load.await;

    // Every metric the dashboard queries is exported.
    let text = sluice.metrics().await;
    for (name, expr) in dashboard_metrics() {
        assert!(
            text.lines()
                .any(|l| !l.starts_with('#') && l.starts_with(name.as_str())),
            "the dashboard queries {name} ({expr}), which Sluice does not export"
        );
    }

    // Prometheus answers the dashboard's key queries and the recording rules.
    let key_queries = [
        "sum by (status_class) (rate(sluice_requests_total[1m]))",
        "histogram_quantile(0.99, sum by (le, route) (rate(sluice_request_duration_seconds_bucket[1m])))",
        "sum by (reason) (rate(sluice_rejected_requests_total[1m]))",
        "sum by (provider, state) (sluice_key_state)",
        "sum by (provider, model, direction) (rate(sluice_tokens_total[1m]))",
        "sum by (server, method, outcome) (rate(sluice_mcp_requests_total[1m]))",
        "sluice_config_revision",
        "sluice:requests:rate5m",
        "sluice:request_duration_seconds:p99_5m",
    ];
    for q in key_queries {
        let mut result = Vec::new();
        for _ in 0..40 {
            result = prometheus.query(q).await;
            if !result.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(!result.is_empty(), "Prometheus has no data for {q}");
    }
    let healthy = prometheus
        .query("sum by (provider) (sluice_key_state{state=\"healthy\"})")
        .await;
    assert_eq!(healthy[0]["value"][1], "1", "{healthy:?}");
    let alerts = prometheus.query("ALERTS").await;
    assert!(
        alerts.is_empty(),
        "no alert on a healthy gateway: {alerts:?}"
    );
}
