//! Limits (`limits:`): refusals the official SDKs understand, token allowances fed by the
//! usage of streamed and unstreamed answers, concurrency held until a stream's last byte, and
//! limits managed through the admin API and the CLI.

use crate::common::*;
use crate::sdk::run_with_env;
use std::time::Duration;

fn id_of(t: &TestToken) -> String {
    let rest = t.record.split("id: ").nth(1).expect("id");
    rest.split(',').next().expect("id").trim().to_owned()
}

fn providers(mock: &Mock) -> String {
    format!(
        r#"providers:
  - {{ name: openai, kind: openai, base_url: "{url}", keys: [{{ id: o, secret_ref: "env:KEY_O" }}] }}
  - {{ name: anthropic, kind: anthropic, base_url: "{url}", keys: [{{ id: a, secret_ref: "env:KEY_A" }}] }}
routes:
  - {{ prefix: /openai, provider: openai, auth: token }}
  - {{ prefix: /anthropic, provider: anthropic, auth: token }}
"#,
        url = mock.url()
    )
}

const KEYS: [(&str, &str); 2] = [
    ("KEY_O", "sk-openai-pool-000000"),
    ("KEY_A", "sk-ant-pool-0000000"),
];

fn sdk(base: &str, token: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec![base, token];
    all.extend_from_slice(args);
    run_with_env("limits_client.py", &all, &[])
}

#[tokio::test]
async fn the_sdks_get_rate_limit_errors_with_their_providers_headers_and_honour_retry_after() {
    let mock = Mock::start(&[]);
    let (per_min, per_sec, anth) = (
        opaque_token(", owner: batch"),
        opaque_token(", owner: interactive"),
        opaque_token(", owner: claude-users"),
    );
    let config = format!(
        r#"{providers}tokens:
  - {a}
  - {b}
  - {c}
limits:
  - {{ name: batch, owner: batch, requests_per_minute: 3 }}
  - {{ name: interactive, token: {b_id}, requests_per_second: 1 }}
  - {{ name: claude, route: /anthropic, owner: claude-users, requests_per_minute: 2 }}
"#,
        providers = providers(&mock),
        a = per_min.record,
        b = per_sec.record,
        c = anth.record,
        b_id = id_of(&per_sec),
    );
    let sluice = Sluice::start_with_env(&config, &KEYS);
    let openai = sluice.url("/openai/v1");

    let out = sdk(&openai, &per_min.token, &["openai-until-429"]);
    assert_eq!(out["admitted"], 3, "{out}");
    assert_eq!(out["error"], "RateLimitError");
    assert_eq!(out["status"], 429);
    let h = &out["headers"];
    assert_eq!(h["x-sluice-error"], "rate_limited");
    assert_eq!(h["x-ratelimit-limit-requests"], "3");
    assert_eq!(h["x-ratelimit-remaining-requests"], "0");
    // One request every 20 s: the next fits in at most 20 s, the whole minute's in 60 s.
    let retry: u64 = h["retry-after"].as_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{h}");
    let reset = h["x-ratelimit-reset-requests"].as_str().unwrap();
    assert!(reset.ends_with('s'), "{reset}");
    assert_eq!(out["body"]["error"]["code"], "rate_limit_exceeded");
    assert_eq!(out["body"]["error"]["type"], "requests");
    assert_eq!(mock.stats().await["requests"], 3);

    // The SDK's default retries follow Retry-After (ms precision): the second of two quick
    // calls is refused once, then admitted on its first retry. Its own back-off (~0.5 s)
    // would have been refused again.
    let out = sdk(&openai, &per_sec.token, &["openai-retry", "2"]);
    assert_eq!(out["ok"], 2, "{out}");
    let refusals = r#"sluice_limit_refusals_total{limit="interactive",reason="rate_limited"}"#;
    assert_eq!(sluice.metric(refusals).await, 1.0);
    assert_eq!(
        sluice
            .metric(r#"sluice_rejected_requests_total{reason="rate_limited"}"#)
            .await,
        2.0
    );

    let base = sluice.url("/anthropic");
    let out = sdk(&base, &anth.token, &["anthropic-until-429"]);
    assert_eq!(out["admitted"], 2, "{out}");
    assert_eq!(out["error"], "RateLimitError");
    let h = &out["headers"];
    assert_eq!(h["anthropic-ratelimit-requests-limit"], "2");
    assert_eq!(h["anthropic-ratelimit-requests-remaining"], "0");
    let reset = h["anthropic-ratelimit-requests-reset"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(reset).is_ok(), "{reset}");
    assert_eq!(out["body"]["type"], "error");
    assert_eq!(out["body"]["error"]["type"], "rate_limit_error");
    // The limit is the route's: the same token still reaches the other route.
    let bearer = format!("Bearer {}", anth.token);
    let (status, _) = call(
        &sluice,
        "/openai/v1/chat/completions",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn token_allowances_count_streamed_and_unstreamed_usage() {
    let mock = Mock::start(&[]);
    let tokens: Vec<TestToken> = (0..4).map(|_| opaque_token(", owner: agents")).collect();
    let config = format!(
        "{}tokens:\n{}limits:\n  - {{ name: tpm, owner: agents, per: token, tokens_per_minute: 60 }}\n",
        providers(&mock),
        tokens
            .iter()
            .map(|t| format!("  - {}\n", t.record))
            .collect::<String>()
    );
    let sluice = Sluice::start_with_env(&config, &KEYS);
    let openai = sluice.url("/openai/v1");
    // Each answer reports ~20-40 tokens (the mock counts a prompt token per 4 body bytes, 8
    // completion tokens): the allowance lasts two or three calls, whichever way they come.
    let plain = sdk(&openai, &tokens[0].token, &["openai-until-429"]);
    let streamed = sdk(&openai, &tokens[1].token, &["openai-until-429", "--stream"]);
    for out in [&plain, &streamed] {
        let admitted = out["admitted"].as_u64().unwrap();
        assert!((2..=3).contains(&admitted), "{out}");
        assert_eq!(out["headers"]["x-sluice-error"], "token_rate_limited");
        assert_eq!(out["headers"]["x-ratelimit-limit-tokens"], "60");
        assert_eq!(out["body"]["error"]["type"], "tokens");
    }
    // A stream without usage keeps its reservation (1,000 tokens without `max_tokens`): the
    // next call waits.
    let blind = sdk(
        &openai,
        &tokens[2].token,
        &["openai-until-429", "--stream", "--no-usage"],
    );
    assert_eq!(blind["admitted"], 1, "{blind}");
    let retry: u64 = blind["headers"]["retry-after"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 60, "a minute's allowance and more is owed: {blind}");
    // Anthropic's usage (input in message_start, output in message_delta) counts the same way.
    let anthropic = sdk(
        &sluice.url("/anthropic"),
        &tokens[3].token,
        &["anthropic-until-429", "--stream"],
    );
    let admitted = anthropic["admitted"].as_u64().unwrap();
    assert!((2..=4).contains(&admitted), "{anthropic}");
    assert_eq!(
        anthropic["headers"]["anthropic-ratelimit-tokens-limit"],
        "60"
    );
}

#[tokio::test]
async fn concurrency_is_held_until_a_stream_ends() {
    // Ten events 100 ms apart: each stream lasts about a second.
    let mock = Mock::start(&["--chunks", "10", "--chunk-interval-ms", "100"]);
    let t = opaque_token(", owner: streamer");
    let config = format!(
        "{}tokens:\n  - {}\nlimits:\n  - {{ name: two-at-once, owner: streamer, concurrent: 2 }}\n",
        providers(&mock),
        t.record
    );
    let sluice = Sluice::start_with_env(&config, &KEYS);
    let url = sluice.url("/openai/v1/chat/completions");
    let body = r#"{"model":"gpt-mock","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let open = || async {
        let r = client()
            .post(&url)
            .bearer_auth(&t.token)
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r)
    };
    let (s1, r1) = open().await;
    let (s2, r2) = open().await;
    assert_eq!((s1, s2), (200, 200));
    let (s3, r3) = open().await;
    assert_eq!(s3, 429);
    assert_eq!(r3.headers()["x-sluice-error"], "concurrency_limited");
    assert_eq!(r3.headers()["retry-after"], "1");
    let text = r3.text().await.unwrap();
    assert!(text.contains("2 requests in flight"), "{text}");
    // Both streams are read to their end: their slots are free again.
    for r in [r1, r2] {
        assert!(r.text().await.unwrap().contains("[DONE]"));
    }
    let mut status = 0;
    for _ in 0..50 {
        let (s, r) = open().await;
        status = s;
        let _ = r.text().await;
        if s == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200);
}

#[tokio::test]
async fn limits_are_managed_through_the_api_and_the_cli_and_checked_by_field() {
    let mock = Mock::start(&[]);
    let t = opaque_token(", owner: ci");
    let config = format!("{}tokens:\n  - {}\n", providers(&mock), t.record);
    let sluice = Sluice::start_with_env(&config, &KEYS);
    let (admin, token) = (sluice.admin_url(), sluice.admin_token());
    let bearer = format!("Bearer {}", t.token);
    let chat = "/openai/v1/chat/completions";
    assert_eq!(
        call(&sluice, chat, &[("authorization", &bearer)]).await.0,
        200
    );

    // A wrong document is refused with the field named; nothing changes.
    let (status, err) = api(
        &admin,
        &token,
        "POST",
        "/v1/limits",
        Some(r#"{"name": "ci", "owner": "ci", "requests_per_minute": 0}"#),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    assert!(err.to_string().contains("requests_per_minute"), "{err}");
    let (status, err) = api(
        &admin,
        &token,
        "POST",
        "/v1/limits",
        Some(r#"{"name": "ci", "route": "/nope", "requests_per_minute": 5}"#),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    assert!(
        err.to_string().contains("no route has the prefix `/nope`"),
        "{err}"
    );

    // Created with the CLI, applied by the data plane without a restart.
    let out = cli(
        &admin,
        &token,
        &[
            "limit",
            "create",
            "ci",
            "--owner",
            "ci",
            "--requests-per-minute",
            "1",
        ],
        &[],
    );
    assert!(out.contains("ci"), "{out}");
    let mut refused = false;
    for _ in 0..100 {
        let (status, reason) = call(&sluice, chat, &[("authorization", &bearer)]).await;
        if status == 429 {
            assert_eq!(reason, "rate_limited");
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the stored limit never applied");
    let listed = cli(&admin, &token, &["limit", "list", "--output", "json"], &[]);
    assert!(listed.contains(r#""requests_per_minute": 1"#), "{listed}");
    cli(&admin, &token, &["limit", "delete", "ci"], &[]);
    let mut admitted = false;
    for _ in 0..100 {
        if call(&sluice, chat, &[("authorization", &bearer)]).await.0 == 200 {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "the deleted limit still applied");
}

#[test]
fn a_wrong_limit_in_the_file_names_its_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.yaml");
    std::fs::write(
        &file,
        "providers:\n  - { name: openai, kind: openai, base_url: \"http://127.0.0.1:9\", credentials: byok }\nroutes:\n  - { prefix: /openai, provider: openai }\nlimits:\n  - { name: a, provider: openia, concurrent: 3 }\n  - { name: a, requests_per_minute: 10 }\n  - { name: b }\n",
    )
    .unwrap();
    let out = std::process::Command::new(sluice_bin())
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        "sluice.yaml:6: limits[0].provider: no route serves a provider named `openia`",
        "sluice.yaml:7: limits[1].name: limit `a` is declared twice",
        "sluice.yaml:8: limits[2].name: a limit needs at least one of",
    ] {
        assert!(stderr.contains(want), "{want}\n{stderr}");
    }
}

/// Affinity keeps each caller on one key, so the provider's prompt cache (the mock's, per key)
/// serves the caller's repeated prompt; round-robin spreads the same calls over every key.
#[tokio::test]
async fn key_affinity_keeps_prompt_caches_warm() {
    let mock = Mock::start(&["--prompt-cache"]);
    let tokens: Vec<TestToken> = (0..20).map(|_| opaque_token("")).collect();
    let keys = |p: &str| {
        (1..=4)
            .map(|i| format!("{{ id: k{i}, secret_ref: \"env:{p}{i}\" }}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let config = format!(
        r#"providers:
  - {{ name: sticky, kind: openai, base_url: "{url}", affinity: principal, keys: [{sticky}] }}
  - {{ name: rotating, kind: openai, base_url: "{url}", keys: [{rotating}] }}
routes:
  - {{ prefix: /sticky, provider: sticky, auth: token }}
  - {{ prefix: /rotating, provider: rotating, auth: token }}
tokens:
{records}"#,
        url = mock.url(),
        sticky = keys("S"),
        rotating = keys("R"),
        records = tokens
            .iter()
            .map(|t| format!("  - {}\n", t.record))
            .collect::<String>()
    );
    let env: Vec<(String, String)> = (1..=4)
        .flat_map(|i| {
            [
                (format!("S{i}"), format!("sk-sticky-{i}-0000000")),
                (format!("R{i}"), format!("sk-rotating-{i}-000000")),
            ]
        })
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let sluice = Sluice::start_with_env(&config, &env);
    let (sluice, tokens, mock) = (&sluice, &tokens, &mock);
    let hits = |route: &'static str| async move {
        client()
            .post(mock.url() + "/_mock/reset")
            .send()
            .await
            .unwrap();
        for (i, t) in tokens.iter().enumerate() {
            let body = format!(
                r#"{{"model":"gpt-mock","messages":[{{"role":"user","content":"the long shared context of user {i}"}}]}}"#
            );
            for _ in 0..5 {
                let r = client()
                    .post(sluice.url(&format!("{route}/v1/chat/completions")))
                    .bearer_auth(&t.token)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }
        mock.stats().await["cache_hits"].as_u64().unwrap()
    };
    // 20 callers × 5 calls: with affinity every call after a caller's first is a cache hit.
    assert_eq!(hits("/sticky").await, 80);
    let rotating = hits("/rotating").await;
    assert!(rotating <= 40, "round-robin over 4 keys: {rotating} hits");
    // Sluice reads the cached tokens from the usage as it passes.
    let cached =
        r#"sluice_tokens_total{direction="cache_read",model="gpt-mock",provider="sticky"}"#;
    assert!(sluice.metric(cached).await > 0.0);
}

/// A Redis server of the test's own on a Unix socket (no port to race for; killed and restarted
/// mid-test; the machine's shared one is left alone).
struct Redis {
    child: std::process::Child,
    /// The socket's path (`redis+unix://{sock}`).
    sock: String,
    _dir: Option<tempfile::TempDir>,
}

impl Redis {
    fn start() -> Redis {
        let dir = tempfile::tempdir().expect("redis dir");
        let sock = dir.path().join("redis.sock").display().to_string();
        let mut redis = Redis::start_at(&sock);
        redis._dir = Some(dir);
        redis
    }

    /// A server on `sock` (again, after `stop`).
    fn start_at(sock: &str) -> Redis {
        let mut child = std::process::Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--unixsocket",
                sock,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(sock).is_err() {
            assert!(
                std::time::Instant::now() < deadline && child.try_wait().ok().flatten().is_none(),
                "redis-server did not start on {sock}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Redis {
            child,
            sock: sock.to_owned(),
            _dir: None,
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `n` requests from `workers` concurrent tasks spread over `planes`; counts 200s.
async fn admitted(planes: &[&Sluice], token: &str, n: usize, workers: usize) -> usize {
    let urls: Vec<String> = planes
        .iter()
        .map(|p| p.url("/openai/v1/chat/completions"))
        .collect();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (urls, token) = (urls.clone(), token.to_owned());
            tokio::spawn(async move {
                let c = client();
                let mut ok = 0;
                for i in 0..n / workers {
                    let url = &urls[(w + i) % urls.len()];
                    let r = c.post(url).bearer_auth(&token).body(CHAT).send().await;
                    if r.map(|r| r.status() == 200).unwrap_or(false) {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

#[tokio::test]
async fn two_data_planes_share_a_limit_over_redis_and_fall_back_to_their_shares() {
    let mut redis = Redis::start();
    let redis_sock = redis.sock.clone();
    let mock = Mock::start(&[]);
    let t = opaque_token(", owner: fleet");
    let config = format!(
        "  limits_backend: redis+unix://{redis_sock}\n{}tokens:\n  - {}\nlimits:\n  - {{ name: fleet, owner: fleet, requests_per_minute: 100 }}\n",
        providers(&mock),
        t.record
    );
    let a = Sluice::start_with_env(&config, &KEYS);
    let b = Sluice::start_with_env(&config, &KEYS);
    let up = "sluice_limits_backend_up";
    until_metric(&a, up, 1.0).await;
    until_metric(&b, up, 1.0).await;
    until_metric(&a, "sluice_limits_replicas", 2.0).await;

    // 300 requests over both planes, 8 at a time: the minute's 100 in all (plus one more every
    // 600 ms as the allowance refills), less at most the units still leased (2 replicas × 5).
    let started = std::time::Instant::now();
    let n = admitted(&[&a, &b], &t.token, 300, 8).await;
    let refilled = (started.elapsed().as_millis() / 600) as usize + 1;
    assert!(
        (90..=100 + refilled).contains(&n),
        "{n} admitted for a limit of 100"
    );
    assert_eq!(mock.stats().await["requests"].as_u64().unwrap() as usize, n);

    // Redis gone: requests keep flowing on each plane's share (100 ÷ 2 a minute), no waiting.
    redis.stop();
    until_metric(&a, up, 0.0).await;
    until_metric(&b, up, 0.0).await;
    let before = mock.stats().await["requests"].as_u64().unwrap() as usize;
    let started = std::time::Instant::now();
    let n = admitted(&[&a], &t.token, 100, 4).await;
    let refilled = (started.elapsed().as_millis() / 1200) as usize + 1;
    assert!(
        (50..=50 + refilled).contains(&n),
        "plane a's share of the limit: {n}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        mock.stats().await["requests"].as_u64().unwrap() as usize,
        before + n
    );

    // Redis back: both planes share counters again.
    let _redis = Redis::start_at(&redis_sock);
    until_metric(&a, up, 1.0).await;
    until_metric(&b, up, 1.0).await;
    let (status, reason) = call(
        &a,
        "/openai/v1/chat/completions",
        &[("authorization", &format!("Bearer {}", t.token))],
    )
    .await;
    // A fresh Redis holds no counters: the shared minute starts afresh.
    assert_eq!((status, reason.as_str()), (200, ""));
}

/// A concurrency cap counts the requests in flight on every replica.
#[tokio::test]
async fn a_concurrency_cap_is_shared_by_the_replicas() {
    let _redis = Redis::start();
    let redis_sock = _redis.sock.clone();
    // Ten events 200 ms apart: each stream lasts about two seconds.
    let mock = Mock::start(&["--chunks", "10", "--chunk-interval-ms", "200"]);
    let t = opaque_token(", owner: streamer");
    let config = format!(
        "  limits_backend: redis+unix://{redis_sock}\n{}tokens:\n  - {}\nlimits:\n  - {{ name: two-at-once, owner: streamer, concurrent: 2 }}\n",
        providers(&mock),
        t.record
    );
    let a = Sluice::start_with_env(&config, &KEYS);
    let b = Sluice::start_with_env(&config, &KEYS);
    until_metric(&a, "sluice_limits_replicas", 2.0).await;
    until_metric(&b, "sluice_limits_replicas", 2.0).await;
    let body = r#"{"model":"gpt-mock","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let open = |plane: &Sluice| {
        let url = plane.url("/openai/v1/chat/completions");
        let token = t.token.clone();
        async move {
            client()
                .post(&url)
                .bearer_auth(&token)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let (r1, r2) = (open(&a).await, open(&a).await);
    assert_eq!((r1.status().as_u16(), r2.status().as_u16()), (200, 200));
    // Plane b learns of a's two streams once a published them (within a sync interval).
    let in_flight = "local n = 0 for _, k in ipairs(redis.call('KEYS', '*')) do if redis.call('TYPE', k).ok == 'hash' then for _, v in ipairs(redis.call('HVALS', k)) do n = n + tonumber(v) end end end return n";
    let started = std::time::Instant::now();
    while redis(&redis_sock, &["EVAL", in_flight, "0"]).await != ":2" {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a never published its streams"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r3 = open(&b).await;
    assert_eq!(r3.status(), 429, "b admitted a third request in flight");
    assert_eq!(r3.headers()["x-sluice-error"], "concurrency_limited");
    // The streams end: b admits again.
    for r in [r1, r2] {
        assert!(r.text().await.unwrap().contains("[DONE]"));
    }
    let mut status = 0;
    for _ in 0..40 {
        let r = open(&b).await;
        status = r.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200);
}

/// A key benched on one replica is benched on the others within a second, until the same time.
#[tokio::test]
async fn a_key_benched_on_one_data_plane_is_benched_on_all() {
    let _redis = Redis::start();
    let redis_sock = _redis.sock.clone();
    let mock = Mock::start(&[]);
    let t = opaque_token("");
    let config = format!(
        r#"  limits_backend: redis+unix://{redis_sock}
  limits_backend_key_ref: env:SLUICE_REDIS_KEY
providers:
  - {{ name: openai, kind: openai, base_url: "{url}", quarantine_seconds: 120, keys: [{{ id: k1, secret_ref: "env:KEY_1" }}, {{ id: k2, secret_ref: "env:KEY_2" }}] }}
routes:
  - {{ prefix: /openai, provider: openai, auth: token }}
tokens:
  - {record}
"#,
        url = mock.url(),
        record = t.record
    );
    let env = [
        ("KEY_1", "sk-one-000000000000"),
        ("KEY_2", "sk-two-000000000000"),
        ("SLUICE_REDIS_KEY", REDIS_KEY),
    ];
    let a = Sluice::start_with_env(&config, &env);
    let b = Sluice::start_with_env(&config, &env);
    until_metric(&a, "sluice_limits_backend_up", 1.0).await;
    until_metric(&b, "sluice_limits_backend_up", 1.0).await;
    until_subscribed(&redis_sock, "sluice:key-health", 2).await;

    // The upstream calls one of a's keys invalid.
    let bearer = format!("Bearer {}", t.token);
    let (status, _) = call(
        &a,
        "/openai/v1/chat/completions",
        &[("authorization", &bearer), ("x-mock-status", "401")],
    )
    .await;
    assert_eq!(status, 401);
    let quarantined = |key: &str| {
        format!(r#"sluice_key_state{{key="{key}",provider="openai",state="quarantined"}}"#)
    };
    let bad = if a.metric(&quarantined("k1")).await == 1.0 {
        "k1"
    } else {
        "k2"
    };
    assert_eq!(a.metric(&quarantined(bad)).await, 1.0);
    let started = std::time::Instant::now();
    while b.metric(&quarantined(bad)).await != 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "b did not bench {bad} within a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let good = if bad == "k1" { "k2" } else { "k1" };
    assert_eq!(b.metric(&quarantined(good)).await, 0.0);
    // b sends nothing more with the benched key.
    let bad_value = if bad == "k1" {
        "sk-one-000000000000"
    } else {
        "sk-two-000000000000"
    };
    let header = format!("authorization: Bearer {bad_value}");
    let before = mock.seen(&header).await;
    for _ in 0..6 {
        let (status, _) = call(
            &b,
            "/openai/v1/chat/completions",
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(status, 200);
    }
    assert_eq!(mock.seen(&header).await, before);
}

const REDIS_KEY: &str = "0123456789abcdef0123456789abcdef-deployment";

/// One Redis command over RESP; the reply's first line.
async fn redis(sock: &str, args: &[&str]) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(sock).await.unwrap();
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out += &format!("${}\r\n{a}\r\n", a.len());
    }
    s.write_all(out.as_bytes()).await.unwrap();
    let mut lines = tokio::io::BufReader::new(s).lines();
    let mut reply = lines.next_line().await.unwrap().unwrap_or_default();
    // PUBSUB NUMSUB: *2, $len, channel, :count.
    if reply.starts_with('*') {
        for _ in 0..3 {
            reply = lines.next_line().await.unwrap().unwrap_or_default();
        }
    }
    reply
}

/// Waits until `n` replicas follow `channel` (no sleeping on a guess).
async fn until_subscribed(sock: &str, channel: &str, n: usize) {
    for _ in 0..400 {
        if redis(sock, &["PUBSUB", "NUMSUB", channel]).await == format!(":{n}") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{n} subscribers never followed {channel}");
}

/// A key-health message as a replica holding `key` sends it (the wire contract).
fn health_message(key: &str, ns: &str, secret: &str, state: &str, until_ms: u64) -> String {
    use hmac::Mac;
    use sha2::Digest;
    let mac = |data: &[u8]| {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    };
    let mut fp = b"sluice key fingerprint\0".to_vec();
    fp.extend_from_slice(&sha2::Sha256::digest(secret.as_bytes()));
    let body = serde_json::json!({
        "ns": ns, "provider": "openai", "key": "k1",
        "fp": hex::encode(&mac(&fp)[..16]), "state": state, "until_ms": until_ms,
    })
    .to_string();
    format!("{}.{body}", hex::encode(mac(body.as_bytes())))
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Issue 27, findings 1 and 5: whoever reaches Redis could bench every key of every replica
/// for ten years with one unauthenticated `PUBLISH`, and a staging deployment sharing the
/// Redis benched production's keys and spent its limits. Messages are now authenticated by
/// the deployment's key, bound to the key's secret and to the namespace, and bounded by the
/// provider's maxima; counters live under the namespace.
#[tokio::test]
async fn key_health_messages_are_authenticated_namespaced_and_bounded() {
    let _redis = Redis::start();
    let redis_sock = _redis.sock.clone();
    let mock = Mock::start(&[]);
    let t = opaque_token(", owner: fleet");
    let config = |ns: &str| {
        format!(
            r#"  limits_backend: redis+unix://{redis_sock}
  limits_backend_key_ref: env:SLUICE_REDIS_KEY
  namespace: {ns}
providers:
  - {{ name: openai, kind: openai, base_url: "{url}", quarantine_seconds: 120, keys: [{{ id: k1, secret_ref: "env:KEY_1" }}] }}
routes:
  - {{ prefix: /openai, provider: openai, auth: token }}
tokens:
  - {record}
limits:
  - {{ name: fleet, owner: fleet, requests_per_minute: 3 }}
"#,
            url = mock.url(),
            record = t.record
        )
    };
    let env = [
        ("KEY_1", "sk-one-000000000000"),
        ("SLUICE_REDIS_KEY", REDIS_KEY),
    ];
    let prod = Sluice::start_with_env(&config("prod"), &env);
    let staging = Sluice::start_with_env(&config("staging"), &env);
    until_metric(&prod, "sluice_limits_backend_up", 1.0).await;
    until_metric(&staging, "sluice_limits_backend_up", 1.0).await;
    until_subscribed(&redis_sock, "prod:key-health", 1).await;
    until_subscribed(&redis_sock, "staging:key-health", 1).await;
    let outcome = |o: &str| format!(r#"sluice_key_health_messages_total{{outcome="{o}"}}"#);
    let quarantined = r#"sluice_key_state{key="k1",provider="openai",state="quarantined"}"#;
    let ten_years = unix_ms() + 10 * 365 * 86_400_000;

    // Without the key: the old message shape, and a tag made with another key.
    let bare = format!(
        r#"{{"provider":"openai","key":"k1","state":"quarantined","until_ms":{ten_years}}}"#
    );
    let wrong = health_message(
        "not-the-deployment-key-00000000000000",
        "prod",
        "sk-one-000000000000",
        "quarantined",
        ten_years,
    );
    for m in [&bare, &wrong] {
        assert_eq!(
            redis(&redis_sock, &["PUBLISH", "prod:key-health", m]).await,
            ":1"
        );
    }
    until_metric(&prod, &outcome("forged"), 2.0).await;
    // With the key, but about a secret prod does not hold, or for longer than prod benches.
    let other = health_message(
        REDIS_KEY,
        "prod",
        "sk-old-rotated-0000",
        "quarantined",
        ten_years,
    );
    let long = health_message(
        REDIS_KEY,
        "prod",
        "sk-one-000000000000",
        "quarantined",
        ten_years,
    );
    let replayed_ns = health_message(
        REDIS_KEY,
        "staging",
        "sk-one-000000000000",
        "quarantined",
        unix_ms() + 60_000,
    );
    for m in [&other, &long, &replayed_ns] {
        redis(&redis_sock, &["PUBLISH", "prod:key-health", m]).await;
    }
    until_metric(&prod, &outcome("other_secret"), 1.0).await;
    until_metric(&prod, &outcome("too_long"), 1.0).await;
    until_metric(&prod, &outcome("forged"), 3.0).await;
    assert_eq!(prod.metric(quarantined).await, 0.0);
    let bearer = format!("Bearer {}", t.token);
    let auth = [("authorization", bearer.as_str())];
    let chat = |s| call(s, "/openai/v1/chat/completions", &auth);
    assert_eq!(chat(&prod).await.0, 200);

    // Staging's upstream refuses its key three times (the last key: confirmations) and
    // spends its limit: production's key and limit are untouched.
    for _ in 0..3 {
        let (status, _) = call(
            &staging,
            "/openai/v1/chat/completions",
            &[("authorization", &bearer), ("x-mock-status", "401")],
        )
        .await;
        assert_eq!(status, 401);
    }
    assert_eq!(staging.metric(quarantined).await, 1.0);
    assert_ne!(chat(&staging).await.0, 200);
    // Prod spent one of its 3 (staging all of its own): sharing counters, this would be 429.
    assert_eq!(chat(&prod).await.0, 200);
    assert_eq!(prod.metric(quarantined).await, 0.0);
    assert_eq!(prod.metric(&outcome("applied")).await, 0.0);

    // The deployment's own message within the provider's maxima is applied (the check can fail).
    let fair = health_message(
        REDIS_KEY,
        "prod",
        "sk-one-000000000000",
        "quarantined",
        unix_ms() + 60_000,
    );
    redis(&redis_sock, &["PUBLISH", "prod:key-health", &fair]).await;
    until_metric(&prod, &outcome("applied"), 1.0).await;
    assert_eq!(prod.metric(quarantined).await, 1.0);
}

/// A budget in dollars: priced from the answers' usage, refused once used up with a 429 the
/// SDK does not retry, a warning audited at its share, and the spend kept across a restart.
#[tokio::test]
async fn a_budget_used_up_refuses_without_retries_and_survives_a_restart() {
    let mock = Mock::start(&[]);
    let t = opaque_token(", owner: team-a");
    // The mock's answers use ~25 tokens: at $1,000 per million each costs ~$0.025.
    let config = format!(
        "{}tokens:\n  - {}\nbudgets:\n  - {{ name: team-a, owner: team-a, period: month, usd: 0.06, warn_at: 0.5 }}\nprices:\n  - {{ model: gpt-mock, input: 1000, output: 1000 }}\n",
        providers(&mock),
        t.record
    );
    let mut sluice = Sluice::start_with_env(&config, &KEYS);
    let openai = sluice.url("/openai/v1");
    let out = sdk(&openai, &t.token, &["openai-until-429"]);
    let admitted = out["admitted"].as_u64().unwrap();
    assert!((2..=3).contains(&admitted), "{out}");
    assert_eq!(out["error"], "RateLimitError");
    assert_eq!(out["headers"]["x-sluice-error"], "budget_exceeded");
    assert_eq!(out["headers"]["x-should-retry"], "false");
    assert_eq!(out["body"]["error"]["code"], "budget_exceeded");
    assert_eq!(out["body"]["error"]["type"], "insufficient_quota");
    // Until the first of next month.
    let retry: u64 = out["headers"]["retry-after"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 31 * 86_400, "{retry}");
    // With its default retries the SDK asks once: the refusal says retrying is pointless.
    let refused = r#"sluice_rejected_requests_total{reason="budget_exceeded"}"#;
    let before = sluice.metric(refused).await;
    let once = sdk(&openai, &t.token, &["openai-once"]);
    assert_eq!(once["error"], "RateLimitError", "{once}");
    assert_eq!(sluice.metric(refused).await, before + 1.0);
    // Spend and the warning.
    let spent = sluice
        .metric(r#"sluice_budget_spent_usd{budget="team-a"}"#)
        .await;
    assert!((0.06..0.1).contains(&spent), "{spent}");
    let warning = wait_audit(&sluice, |r| r["event"] == "budget_warning").await;
    let warning = warning.expect("a budget_warning audit event");
    assert_eq!(warning["budget"], "team-a");
    assert_eq!(
        sluice
            .metric(r#"sluice_budget_warnings_total{budget="team-a"}"#)
            .await,
        1.0
    );

    // `sluice usage` prices the same records with the config's table.
    let out = std::process::Command::new(sluice_bin())
        .args(["usage", "--by", "model", "--json", "--config"])
        .arg(&sluice.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let totals: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let usd = totals["gpt-mock"]["usd"].as_f64().unwrap();
    assert!((usd - spent).abs() < 1e-6, "{totals} vs {spent}");

    // A graceful restart keeps the month's spend: still refused.
    sluice.proc.signal("TERM");
    for _ in 0..100 {
        if sluice.proc.child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sluice.dir.path().join("data/budgets.json").exists());
    sluice.relaunch();
    let bearer = format!("Bearer {}", t.token);
    let (status, reason) = call(
        &sluice,
        "/openai/v1/chat/completions",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!((status, reason.as_str()), (429, "budget_exceeded"));
}

/// With the shared backend a budget is spent by all replicas together.
#[tokio::test]
async fn a_budget_is_shared_by_the_replicas() {
    let _redis = Redis::start();
    let redis_sock = _redis.sock.clone();
    let mock = Mock::start(&[]);
    let t = opaque_token(", owner: team-b");
    let config = format!(
        "  limits_backend: redis+unix://{redis_sock}\n{}tokens:\n  - {}\nbudgets:\n  - {{ name: team-b, owner: team-b, period: day, tokens: 60 }}\n",
        providers(&mock),
        t.record
    );
    let a = Sluice::start_with_env(&config, &KEYS);
    let b = Sluice::start_with_env(&config, &KEYS);
    until_metric(&a, "sluice_limits_backend_up", 1.0).await;
    until_metric(&b, "sluice_limits_backend_up", 1.0).await;
    let bearer = format!("Bearer {}", t.token);
    let chat = "/openai/v1/chat/completions";
    // Plane a spends the day's 60 tokens (~25 a call).
    let mut on_a = 0;
    while call(&a, chat, &[("authorization", &bearer)]).await.0 == 200 {
        on_a += 1;
        assert!(on_a < 10, "plane a never ran out");
    }
    assert!((2..=3).contains(&on_a), "{on_a}");
    // Plane b learns of it within a second (it may let one call through while it reads).
    let mut on_b = 0;
    let started = std::time::Instant::now();
    loop {
        let (status, reason) = call(&b, chat, &[("authorization", &bearer)]).await;
        if status == 429 {
            assert_eq!(reason, "budget_exceeded");
            break;
        }
        on_b += 1;
        assert!(
            on_b <= 1 && started.elapsed() < Duration::from_secs(3),
            "plane b admitted {on_b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
