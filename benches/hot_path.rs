//! Criterion benches for the per-request pieces: key pick, authentication, and the whole
//! admit + rewrite step of `request_filter`/`upstream_request_filter`. Each group carries a
//! baseline measured in the same run, so figures read as ratios on a noisy shared machine.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use pingora::http::RequestHeader;
use sluice::balance::{KeyPool, Member};
use sluice::config::{parse, BuildContext, Snapshot};
use sluice::proxy::steps;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The classic nginx smooth weighted round-robin, under a mutex: the baseline `pick` replaces.
struct LockedSwrr {
    state: Mutex<Vec<(i64, i64)>>, // (weight, current)
}

impl LockedSwrr {
    fn pick(&self) -> usize {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let total: i64 = s.iter().map(|(w, _)| *w).sum();
        let mut best = 0;
        for i in 0..s.len() {
            s[i].1 += s[i].0;
            if s[i].1 > s[best].1 {
                best = i;
            }
        }
        s[best].1 -= total;
        best
    }
}

fn snapshot() -> Snapshot {
    std::env::set_var("BENCH_KEY_A", "sk-bench-a-0123456789abcdef");
    std::env::set_var("BENCH_KEY_B", "sk-bench-b-0123456789abcdef");
    let src = r#"
providers:
  - name: openai
    kind: openai
    base_url: https://api.openai.com
    keys:
      - { id: a, secret_ref: "env:BENCH_KEY_A", weight: 3 }
      - { id: b, secret_ref: "env:BENCH_KEY_B", weight: 1 }
routes:
  - { prefix: /anthropic, provider: openai }
  - { prefix: /openai, provider: openai }
tokens:
  - { id: t1, sha256: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }
  - { id: t2, sha256: "sha256:0000000000000000000000000000000000000000000000000000000000000000" }
"#;
    let config = parse(src).unwrap_or_else(|e| panic!("{e}"));
    Snapshot::build(&config, Path::new("."), &BuildContext::default())
        .unwrap_or_else(|e| panic!("{e:?}"))
}

fn request() -> RequestHeader {
    let mut r = RequestHeader::build("POST", b"/openai/v1/chat/completions", None)
        .unwrap_or_else(|e| panic!("{e}"));
    for (k, v) in [
        ("host", "127.0.0.1:8080"),
        ("authorization", "Bearer test"),
        ("content-type", "application/json"),
        ("user-agent", "OpenAI/Python 3.54.0"),
        ("accept", "application/json"),
        ("x-stainless-lang", "python"),
        ("content-length", "120"),
    ] {
        r.append_header(k, v).unwrap_or_else(|e| panic!("{e}"));
    }
    r
}

fn pick(c: &mut Criterion) {
    let members = [3u32, 2, 1]
        .iter()
        .map(|w| Member {
            weight: *w,
            enabled: true,
            health: Arc::default(),
        })
        .collect();
    let pool = KeyPool::build(members);
    let locked = LockedSwrr {
        state: Mutex::new(vec![(3, 0), (2, 0), (1, 0)]),
    };
    let mut g = c.benchmark_group("pick");
    g.bench_function("baseline_locked_swrr", |b| {
        b.iter(|| black_box(locked.pick()))
    });
    g.bench_function("sluice_pool", |b| {
        b.iter(|| black_box(pool.pick(black_box(1_000), None)))
    });
    g.finish();
}

fn request_path(c: &mut Criterion) {
    let snap = snapshot();
    let req = request();
    let mut g = c.benchmark_group("request");
    g.bench_function("baseline_header_clone", |b| {
        b.iter(|| black_box(req.clone()))
    });
    g.bench_function("static_token_check", |b| {
        b.iter(|| black_box(sluice::auth::check_static(black_box("test"), &snap)))
    });
    g.bench_function("admit", |b| {
        b.iter(|| black_box(steps::admit(&req, &snap, 1_000).is_ok()))
    });
    g.bench_function("admit_and_rewrite", |b| {
        b.iter(|| {
            let admitted = steps::admit(&req, &snap, 1_000).unwrap_or_else(|e| panic!("{e:?}"));
            let route = &snap.routes[admitted.route];
            let key = admitted.key.map(|k| &route.provider.keys[k]);
            let mut upstream = req.clone();
            steps::rewrite(&mut upstream, &route.prefix, &route.provider, key)
                .unwrap_or_else(|e| panic!("{e}"));
            black_box(upstream)
        })
    });
    g.finish();
}

criterion_group!(benches, pick, request_path);
criterion_main!(benches);
