//! Hot reload under load: zero-downtime key rotation, broken configs, refused changes, SIGHUP.

use crate::common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const KEYS: [(&str, &str); 2] = [
    ("KEY_A", "sk-rotate-a-0000000"),
    ("KEY_B", "sk-rotate-b-0000000"),
];
const A: &str = "authorization: Bearer sk-rotate-a-0000000";
const B: &str = "authorization: Bearer sk-rotate-b-0000000";

fn config(mock: &Mock, keys: &[(&str, u32)]) -> String {
    let keys: String = keys
        .iter()
        .map(|(id, w)| {
            format!(
                "      - {{ id: {id}, secret_ref: \"env:KEY_{}\", weight: {w} }}\n",
                id.to_uppercase()
            )
        })
        .collect();
    format!(
        "providers:\n  - name: openai\n    kind: openai\n    base_url: {}\n    keys:\n{keys}routes:\n  - {{ prefix: /openai, provider: openai, auth: none }}\n",
        mock.url()
    )
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    broken_streams: AtomicU64,
}

/// Waits until the load loop has completed `n` more requests (load between steps, without
/// guessing how long that takes).
async fn until_served(tally: &Tally, n: u64) {
    let target = tally.ok.load(Ordering::Relaxed) + n;
    let started = std::time::Instant::now();
    while tally.ok.load(Ordering::Relaxed) < target {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the load loop stalled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A bounded load loop: `workers` clients alternating JSON requests and SSE streams until stopped.
fn start_load(
    url: String,
    workers: usize,
) -> (
    Arc<AtomicBool>,
    Arc<Tally>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let handles = (0..workers)
        .map(|w| {
            let (stop, tally, url) = (stop.clone(), tally.clone(), url.clone());
            tokio::spawn(async move {
                let c = client();
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let stream = i % 2 == 0;
                    i += 1;
                    let body = if stream { CHAT_STREAM } else { CHAT };
                    match c.post(&url).body(body).send().await {
                        Ok(r) if r.status().is_success() => match r.text().await {
                            Ok(t) if !stream || t.ends_with("data: [DONE]\n\n") => {
                                tally.ok.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                tally.broken_streams.fetch_add(1, Ordering::Relaxed);
                            }
                        },
                        Ok(r) => {
                            eprintln!("non-2xx: {}", r.status());
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("request error: {e}");
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    (stop, tally, handles)
}

async fn stop_load(stop: Arc<AtomicBool>, handles: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_under_load_has_zero_failures() {
    let mock = Mock::start(&["--chunks", "4", "--chunk-interval-ms", "5"]);
    let sluice = Sluice::start_with_env(&config(&mock, &[("a", 1)]), &KEYS);
    let (stop, tally, handles) = start_load(sluice.url("/openai/v1/chat/completions"), 8);
    until_served(&tally, 30).await;

    let steps: [&[(&str, u32)]; 4] = [
        &[("a", 3), ("b", 1)],
        &[("a", 1), ("b", 3)],
        &[("a", 0), ("b", 1)],
        &[("b", 1)],
    ];
    for (i, keys) in steps.iter().enumerate() {
        sluice.rewrite_config(&config(&mock, keys));
        sluice.wait_revision(i as u64 + 2).await;
        until_served(&tally, 30).await;
    }
    let a_after_removal = mock.seen(A).await;
    until_served(&tally, 30).await;
    stop_load(stop, handles).await;

    let ok = tally.ok.load(Ordering::Relaxed);
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0);
    assert_eq!(tally.broken_streams.load(Ordering::Relaxed), 0);
    assert!(ok > 100, "the load loop barely ran: {ok}");
    assert_eq!(
        mock.seen(A).await,
        a_after_removal,
        "a removed key was used"
    );
    assert!(mock.seen(B).await > 0);
    assert_eq!(
        sluice
            .metric("sluice_config_reload_total{result=\"success\"}")
            .await,
        5.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_config_mid_load_keeps_the_last_good_snapshot() {
    let mock = Mock::start(&[]);
    let good = config(&mock, &[("a", 1)]);
    let sluice = Sluice::start_with_env(&good, &KEYS);
    let (stop, tally, handles) = start_load(sluice.url("/openai/v1/chat/completions"), 4);
    until_served(&tally, 30).await;

    // Line 16 of the rendered file: the route names a provider that does not exist.
    let broken = good.replace(
        "provider: openai, auth: none",
        "provider: opnai, auth: none",
    );
    sluice.rewrite_config(&broken);
    sluice.wait_reload_result("invalid", 1).await;
    until_served(&tally, 30).await;
    stop_load(stop, handles).await;

    assert_eq!(tally.failed.load(Ordering::Relaxed), 0);
    assert_eq!(tally.broken_streams.load(Ordering::Relaxed), 0);
    assert!(tally.ok.load(Ordering::Relaxed) > 20);
    assert_eq!(sluice.metric("sluice_config_revision").await, 1.0);
    let log = sluice.proc.log_text();
    let file = sluice.config.display().to_string();
    assert!(
        log.contains(&format!(
            "{file}:16: routes[0].provider: no provider named `opnai`"
        )),
        "{log}"
    );

    // `sluice check` reports the same error and fails.
    let out = std::process::Command::new(sluice_bin())
        .args(["check", "--config"])
        .arg(&sluice.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("routes[0].provider: no provider named `opnai`"),
        "{stderr}"
    );

    // A syntax error is located too, and fixing the file applies it.
    sluice.write_raw_config(
        &std::fs::read_to_string(&sluice.config)
            .unwrap()
            .replace("kind: openai", "kind: [openai"),
    );
    sluice.wait_reload_result("invalid", 2).await;
    sluice.rewrite_config(&good);
    sluice.wait_revision(2).await;
    assert_eq!(
        call(&sluice, "/openai/v1/chat/completions", &[]).await.0,
        200
    );
}

#[tokio::test]
async fn listener_changes_are_refused_and_nothing_is_half_applied() {
    let mock = Mock::start(&[]);
    let sluice = Sluice::start_with_env(&config(&mock, &[("a", 1)]), &KEYS);
    let text = std::fs::read_to_string(&sluice.config).unwrap();
    let moved = text
        .replace("proxy: 127.0.0.1:0", "proxy: 127.0.0.1:1")
        .replace("secret_ref: \"env:KEY_A\"", "secret_ref: \"env:KEY_B\"");
    sluice.write_raw_config(&moved);
    sluice.wait_reload_result("refused", 1).await;
    assert!(
        sluice.proc.log_text().contains("listeners.proxy"),
        "{}",
        sluice.proc.log_text()
    );
    assert_eq!(
        call(&sluice, "/openai/v1/chat/completions", &[]).await.0,
        200
    );
    assert_eq!(
        mock.seen(A).await,
        1,
        "the key change riding along must not be applied"
    );
}

#[tokio::test]
async fn sighup_rereads_secret_files() {
    let mock = Mock::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("openai-key");
    std::fs::write(&secret, "sk-from-file-1111111\n").unwrap();
    let cfg = format!(
        "providers:\n  - {{ name: openai, kind: openai, base_url: \"{}\", keys: [{{ id: f, secret_ref: \"file:{}\" }}] }}\nroutes:\n  - {{ prefix: /openai, provider: openai, auth: none }}\n",
        mock.url(),
        secret.display()
    );
    let sluice = Sluice::start(&cfg);
    let c = client();
    assert_eq!(
        c.post(sluice.url("/openai/v1/models"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    std::fs::write(&secret, "sk-from-file-2222222\n").unwrap();
    sluice.proc.signal("HUP");
    sluice.wait_revision(2).await;
    assert_eq!(
        c.post(sluice.url("/openai/v1/models"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        mock.seen("authorization: Bearer sk-from-file-1111111")
            .await,
        1
    );
    assert_eq!(
        mock.seen("authorization: Bearer sk-from-file-2222222")
            .await,
        1
    );
}
