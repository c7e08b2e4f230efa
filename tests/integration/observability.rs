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
        let log = dir.path().join("log");
        let mut child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus");
        // Its log names the port it got: `msg="Listening on" address=127.0.0.1:PORT`.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let port = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let found = text
                .lines()
                .find(|l| l.contains("msg=\"Listening on\""))
                .and_then(|l| l.rsplit("address=127.0.0.1:").next())
                .and_then(|p| p.trim().parse::<u16>().ok());
            if let Some(port) = found {
                break port;
            }
            assert!(
                std::time::Instant::now() < deadline && child.try_wait().ok().flatten().is_none(),
                "prometheus did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
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
        refused_port()
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

/// A tiny OTLP/HTTP receiver: every POSTed body (JSON), in order.
async fn otlp_receiver() -> (
    u16,
    std::sync::Arc<tokio::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                buf.extend_from_slice(&chunk[..n]);
                                continue;
                            }
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: Vec<u8> = buf.drain(..end + 4 + len).skip(end + 4).collect();
                    if head.starts_with("post /v1/traces") {
                        if let Ok(v) = serde_json::from_slice(&body) {
                            sink.lock().await.push(v);
                        }
                    }
                    let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if s.write_all(ok.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, got)
}

fn attribute<'a>(span: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    span["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["key"] == key))
        .map(|x| &x["value"])
        .unwrap_or(&serde_json::Value::Null)
}

/// With `server.otlp_endpoint`, each request is a span (route, provider, key, model, status,
/// usage) exported over OTLP/HTTP, continuing the client's trace and passing it upstream.
#[tokio::test]
async fn requests_are_exported_as_otlp_spans_and_their_trace_goes_upstream() {
    let (otlp, spans) = otlp_receiver().await;
    let mock = Mock::start(&[]);
    let echo = echo_api().await;
    let config = format!(
        r#"  otlp_endpoint: http://127.0.0.1:{otlp}
  otlp_service_name: gateway-eu
providers:
  - {{ name: openai, kind: openai, base_url: "{url}", keys: [{{ id: main, secret_ref: "env:KEY_O" }}] }}
  - {{ name: echo, kind: http, base_url: "http://127.0.0.1:{echo}", credentials: none }}
routes:
  - {{ prefix: /openai, provider: openai, auth: none }}
  - {{ prefix: /echo, provider: echo, auth: none }}
"#,
        url = mock.url()
    );
    let sluice = Sluice::start_with_env(&config, &[("KEY_O", "sk-openai-pool-000000")]);
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = client()
        .post(sluice.url("/openai/v1/chat/completions"))
        .header("traceparent", caller)
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.text().await;
    let echoed: serde_json::Value = client()
        .get(sluice.url("/echo/anything"))
        .header("traceparent", caller)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The upstream sees the caller's trace with Sluice's span as its parent.
    let head = echoed["head"].as_str().unwrap().to_ascii_lowercase();
    let upstream = head
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .expect("traceparent upstream")
        .trim()
        .to_owned();
    assert!(
        upstream.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{upstream}"
    );
    assert!(!upstream.contains("00f067aa0ba902b7"));

    let mut all = Vec::new();
    for _ in 0..100 {
        all = spans
            .lock()
            .await
            .iter()
            .flat_map(|b| {
                b["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        if all.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(all.len(), 2, "{all:?}");
    let batch = &spans.lock().await[0];
    assert_eq!(
        batch["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
        "gateway-eu"
    );
    let chat = all
        .iter()
        .find(|s| s["name"] == "POST /openai")
        .expect("chat span");
    assert_eq!(chat["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(chat["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(chat["kind"], 2);
    assert_eq!(attribute(chat, "sluice.provider")["stringValue"], "openai");
    assert_eq!(
        attribute(chat, "client.address")["stringValue"],
        "127.0.0.1"
    );
    assert_eq!(attribute(chat, "sluice.key_id")["stringValue"], "main");
    assert_eq!(
        attribute(chat, "gen_ai.request.model")["stringValue"],
        "gpt-mock"
    );
    assert_eq!(
        attribute(chat, "gen_ai.usage.output_tokens")["intValue"],
        "8"
    );
    assert_eq!(
        attribute(chat, "http.response.status_code")["intValue"],
        "200"
    );
    let start: u128 = chat["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u128 = chat["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(start > 0 && end >= start);
    // The echo span is the one whose id went upstream.
    let echo_span = all
        .iter()
        .find(|s| s["name"] == "GET /echo")
        .expect("echo span");
    assert_eq!(
        upstream,
        format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
            echo_span["spanId"].as_str().unwrap()
        )
    );
}

/// A collector address that is not an http(s) URL stops start-up with the field named.
#[test]
fn a_wrong_otlp_endpoint_stops_start_up_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.yaml");
    std::fs::write(
        &file,
        format!(
            "listeners: {{ proxy: \"127.0.0.1:0\", admin: \"127.0.0.1:0\" }}\ndata_dir: {}\nserver: {{ otlp_endpoint: \"otel-collector:4318\" }}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(sluice_bin())
        .args(["serve", "--config"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("sluice kept running with a wrong otlp_endpoint");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("server.otlp_endpoint: `otel-collector:4318` is not an http(s) URL"),
        "{stderr}"
    );
}
