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

struct Fixture {
    snap: Snapshot,
    token: String,
}

fn snapshot() -> Fixture {
    snapshot_with("")
}

/// The bench snapshot with `extra` top-level YAML (e.g. `limits:`) appended.
fn snapshot_with(extra: &str) -> Fixture {
    let (token, id, digest) = sluice::auth::opaque::generate().unwrap_or_else(|e| panic!("{e}"));
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
issuers:
  - { name: idp, issuer: "https://idp.bench", jwks_uri: "http://127.0.0.1:9/jwks", audiences: [bench] }
oauth_providers:
  - { name: corp, authorization_endpoint: "https://idp.bench/auth", token_endpoint: "https://idp.bench/token", client_id: c, token_endpoint_auth_method: none }
tokens:
"#;
    // 10,000 token records: the index lookup must not depend on how many there are.
    let mut src = src.to_owned();
    for i in 0..10_000 {
        src.push_str(&format!(
            "  - {{ id: {:012}, sha256: \"sha256:{}\" }}\n",
            i,
            hex::encode([0u8; 32])
        ));
    }
    src.push_str(&format!(
        "  - {{ id: {id}, name: bench, sha256: \"sha256:{}\" }}\n",
        hex::encode(digest)
    ));
    src.push_str(extra);
    let config = parse(&src).unwrap_or_else(|e| panic!("{e}"));
    let snap = Snapshot::build(
        &config,
        &Default::default(),
        Path::new("."),
        &BuildContext::default(),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    Fixture { snap, token }
}

fn request(token: &str) -> RequestHeader {
    let mut r = RequestHeader::build("POST", b"/openai/v1/chat/completions", None)
        .unwrap_or_else(|e| panic!("{e}"));
    for (k, v) in [
        ("host", "127.0.0.1:8080"),
        ("authorization", &format!("Bearer {token}")),
        ("content-type", "application/json"),
        ("user-agent", "OpenAI/Python 3.54.0"),
        ("accept", "application/json"),
        ("x-stainless-lang", "python"),
        ("content-length", "120"),
    ] {
        r.append_header(k, v.to_owned())
            .unwrap_or_else(|e| panic!("{e}"));
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
            id_hash: sluice::balance::hash_str(&w.to_string()),
        })
        .collect();
    let pool = KeyPool::build(members);
    let principal = sluice::balance::hash_str("user-1234");
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
    // `affinity: principal`: hashing the principal and ranking the keys.
    g.bench_function("affinity", |b| {
        b.iter(|| {
            let h = sluice::balance::hash_str(black_box("0123456789ab"));
            black_box(pool.pick_for(h ^ principal, black_box(1_000), None))
        })
    });
    g.finish();
}

/// Admission with limits on (a per-principal request rate, a token allowance and a
/// concurrency cap, as a platform team would set them) against the same request without.
fn limits(c: &mut Criterion) {
    let plain = snapshot();
    let limited = snapshot_with(
        "limits:\n  - { name: per-user, route: /openai, per: principal, requests_per_minute: 1000000000, tokens_per_minute: 100000000000 }\n  - { name: all, concurrent: 100000 }\n",
    );
    // Timers on: a shared limit bounds its Redis round trips with a timeout.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let (req_plain, req_limited) = (request(&plain.token), request(&limited.token));
    let mut g = c.benchmark_group("limits");
    g.bench_function("baseline_admit_without_limits", |b| {
        b.iter(|| {
            let a = block_on(
                &rt,
                steps::admit(
                    &req_plain,
                    &plain.snap,
                    steps::Peer::default(),
                    1_000,
                    1_800_000_000,
                ),
            );
            black_box(a.is_ok())
        })
    });
    g.bench_function("admit_with_local_limits", |b| {
        b.iter(|| {
            let a = block_on(
                &rt,
                steps::admit(
                    &req_limited,
                    &limited.snap,
                    steps::Peer::default(),
                    1_000,
                    1_800_000_000,
                ),
            );
            black_box(a.is_ok())
        })
    });
    // The same limits shared over Redis (`BENCH_REDIS`, default the machine's 127.0.0.1:6379):
    // leases refilled on the request path when empty, concurrency counts read every 200 ms.
    // Last: once the backend is installed, every limit in this process is shared.
    let url = std::env::var("BENCH_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let background = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let health = Arc::new(sluice::balance::HealthRegistry::default());
    let shared = sluice::limits::shared::install(&url, "bench", None, health)
        .unwrap_or_else(|e| panic!("{e}"));
    background.spawn(shared.clone().run());
    background.spawn(sluice::limits::sync_flights());
    for _ in 0..100 {
        if shared.is_up() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let name = if shared.is_up() {
        "admit_with_redis_limits"
    } else {
        eprintln!("limits bench: no Redis at {url}: measuring the fallback shares instead");
        "admit_with_redis_limits_redis_down"
    };
    let shared_snap = snapshot_with(
        "limits:\n  - { name: per-user-redis, route: /openai, per: principal, requests_per_minute: 1000000000, tokens_per_minute: 100000000000 }\n  - { name: all-redis, concurrent: 100000 }\n",
    );
    let req_shared = request(&shared_snap.token);
    g.bench_function(name, |b| {
        b.iter(|| {
            let a = block_on(
                &rt,
                steps::admit(
                    &req_shared,
                    &shared_snap.snap,
                    steps::Peer::default(),
                    1_000,
                    1_800_000_000,
                ),
            );
            black_box(a.is_ok())
        })
    });
    g.finish();
}

fn block_on<F: std::future::Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    rt.block_on(f)
}

fn request_path(c: &mut Criterion) {
    let Fixture { snap, token } = snapshot();
    let req = request(&token);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("request");
    g.bench_function("baseline_header_clone", |b| {
        b.iter(|| black_box(req.clone()))
    });
    g.bench_function("admit", |b| {
        b.iter(|| {
            black_box(
                block_on(
                    &rt,
                    steps::admit(&req, &snap, steps::Peer::default(), 1_000, 1_800_000_000),
                )
                .is_ok(),
            )
        })
    });
    g.bench_function("admit_and_rewrite", |b| {
        b.iter(|| {
            let admitted = block_on(
                &rt,
                steps::admit(&req, &snap, steps::Peer::default(), 1_000, 1_800_000_000),
            )
            .unwrap_or_else(|e| panic!("{e:?}"));
            let route = &snap.routes[admitted.route];
            let key = admitted.key.map(|k| &route.provider.keys[k]);
            let mut upstream = req.clone();
            steps::rewrite(
                &mut upstream,
                route,
                &route.provider,
                steps::Inject::of(route.provider.credentials, key, None),
                Some(&admitted.principal),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            black_box(upstream)
        })
    });
    g.finish();
}

/// A user's token from the vault on the request path (`credentials: oauth`), once cached: the
/// principal's vault key, the cache key and the cache read.
fn vault(c: &mut Criterion) {
    use sluice::vault::{Answer, Request, Vault};
    let Fixture { snap, token } = snapshot();
    let req = request(&token);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let principal = block_on(
        &rt,
        steps::admit(&req, &snap, steps::Peer::default(), 1_000, 1_800_000_000),
    )
    .unwrap_or_else(|e| panic!("{e:?}"))
    .principal;
    let (vault, mut jobs) = Vault::new();
    rt.spawn(async move {
        while let Some(job) = jobs.recv().await {
            if let Request::Token { .. } = job.request {
                let _ = job.reply.send(Ok(Answer::Token {
                    access_token: "gho_user_token_0123456789".into(),
                    expires_at: Some(4_000_000_000),
                }));
            }
        }
    });
    let lookup = || {
        block_on(
            &rt,
            sluice::proxy::oauth::user_token(&vault, &snap, &principal, "corp", None),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    lookup();
    let mut g = c.benchmark_group("vault");
    g.bench_function("baseline_header_clone", |b| {
        b.iter(|| black_box(req.clone()))
    });
    g.bench_function("cached_user_token", |b| b.iter(|| black_box(lookup())));
    g.finish();
}

/// The JWKS document and signed tokens for the JWT benches.
struct JwtFixture {
    jwks: serde_json::Value,
    rs256: String,
    es256: String,
}

fn jwt_fixture() -> JwtFixture {
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let rsa_key =
        rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap_or_else(|e| panic!("{e}"));
    let rsa_der = rsa_key.to_pkcs1_der().unwrap_or_else(|e| panic!("{e}"));
    let ec = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let point = ec.public_key_raw();
    let jwks = serde_json::json!({"keys": [
        {"kty": "RSA", "kid": "r1", "alg": "RS256", "n": b64.encode(rsa_key.n().to_bytes_be()), "e": b64.encode(rsa_key.e().to_bytes_be())},
        {"kty": "EC", "kid": "e1", "alg": "ES256", "crv": "P-256", "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..65])},
    ]});
    let claims = serde_json::json!({"iss": "https://idp.bench", "aud": "bench", "sub": "agent-7", "exp": 4_000_000_000u64, "scope": "llm"});
    let sign = |alg, kid: &str, key: &EncodingKey| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&h, &claims, key).unwrap_or_else(|e| panic!("{e}"))
    };
    let rs256 = sign(
        Algorithm::RS256,
        "r1",
        &EncodingKey::from_rsa_der(rsa_der.as_bytes()),
    );
    let es256 = sign(
        Algorithm::ES256,
        "e1",
        &EncodingKey::from_ec_der(&ec.serialize_der()),
    );
    JwtFixture { jwks, rs256, es256 }
}

fn auth(c: &mut Criterion) {
    let Fixture { snap, token } = snapshot();
    let jwt = jwt_fixture();
    snap.jwt.issuers[0]
        .keys
        .load_document(&jwt.jwks)
        .unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    for t in [&jwt.rs256, &jwt.es256] {
        block_on(&rt, snap.jwt.verify(t, 1_800_000_000)).unwrap_or_else(|e| panic!("{e:?}"));
    }
    let mut g = c.benchmark_group("auth");
    g.bench_function("baseline_sha256_of_jwt", |b| {
        b.iter(|| {
            black_box(<sha2::Sha256 as sha2::Digest>::digest(black_box(
                jwt.rs256.as_bytes(),
            )))
        })
    });
    g.bench_function("opaque_check_10k_records", |b| {
        b.iter(|| {
            black_box(sluice::auth::opaque::verify(black_box(&token), &snap, 1_800_000_000).is_ok())
        })
    });
    g.bench_function("jwt_cached", |b| {
        b.iter(|| {
            black_box(
                snap.jwt
                    .verify_cached(black_box(&jwt.rs256), 1_800_000_000)
                    .is_ok(),
            )
        })
    });
    let validation =
        |alg| sluice::auth::jwt::validation(alg, "https://idp.bench", &["bench".to_owned()], 30);
    for (name, token, alg, kid) in [
        (
            "jwt_uncached_rs256",
            &jwt.rs256,
            jsonwebtoken::Algorithm::RS256,
            "r1",
        ),
        (
            "jwt_uncached_es256",
            &jwt.es256,
            jsonwebtoken::Algorithm::ES256,
            "e1",
        ),
    ] {
        let key = match snap.jwt.issuers[0].keys.find(Some(kid), alg) {
            sluice::auth::jwks::Lookup::Found(k) => k,
            _ => panic!("bench key {kid} missing"),
        };
        let v = validation(alg);
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &v).is_ok())
            })
        });
    }
    g.finish();
}

/// Forward proxy: the policy decision per CONNECT, and the per-host TLS acceptor (leaf
/// certificate) on a warm cache beside issuing a new one.
fn forward(c: &mut Criterion) {
    let src = r#"
providers:
  - { name: openai, kind: openai, base_url: "https://api.openai.com", intercept_hosts: [api.openai.com], credentials: byok }
  - { name: anthropic, kind: anthropic, base_url: "https://api.anthropic.com", intercept_hosts: [api.anthropic.com], credentials: byok }
forward:
  allow_hosts: [github.com, "*.githubusercontent.com", pypi.org, files.pythonhosted.org, registry.npmjs.org]
"#;
    let config = parse(src).unwrap_or_else(|e| panic!("{e}"));
    let snap = Snapshot::build(
        &config,
        &Default::default(),
        Path::new("."),
        &BuildContext::default(),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let hosts: std::collections::HashMap<String, usize> =
        [("api.openai.com".to_owned(), 1)].into_iter().collect();
    let mut g = c.benchmark_group("forward");
    g.bench_function("baseline_host_map_lookup", |b| {
        b.iter(|| black_box(hosts.get(black_box("api.openai.com"))))
    });
    g.bench_function("decide_intercept", |b| {
        b.iter(|| black_box(snap.forward.decide(black_box("api.openai.com"), 443)))
    });
    g.bench_function("decide_allow_list", |b| {
        b.iter(|| {
            black_box(
                snap.forward
                    .decide(black_box("objects.githubusercontent.com"), 443),
            )
        })
    });
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ca = sluice::forward::ca::CertAuthority::load_or_create(dir.path(), None, None)
        .unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("leaf_acceptor_cached", |b| {
        b.iter(|| black_box(ca.acceptor(black_box("api.openai.com")).is_ok()))
    });
    let mut n = 0u64;
    g.bench_function("leaf_acceptor_issued", |b| {
        b.iter(|| {
            n += 1;
            black_box(ca.acceptor(&format!("h{n}.example.com")).is_ok())
        })
    });
    g.finish();
}

/// A large configuration: 100 providers × 10 keys (secrets from the store), 100 routes, 10,000
/// opaque tokens. The issue's budget for a full build is 50 ms; serving never waits for it (the
/// build happens off the request path and is published with one pointer swap).
fn large_config() -> (sluice::config::wire::Config, BuildContext) {
    use sluice::config::wire;
    let mut yaml = String::from("providers:\n");
    let mut secrets = std::collections::HashMap::new();
    for p in 0..100 {
        yaml.push_str(&format!(
            "  - {{ name: p{p}, kind: openai, base_url: \"https://p{p}.example\", keys: ["
        ));
        for k in 0..10 {
            let name = format!("P{p}_K{k}");
            secrets.insert(
                name.clone(),
                sluice::secrets::Secret::new(format!("sk-bench-{p}-{k}-0123456789")),
            );
            yaml.push_str(&format!(
                "{{ id: k{k}, secret_ref: \"secret:{name}\", weight: {} }}, ",
                k + 1
            ));
        }
        yaml.push_str("] }\n");
    }
    yaml.push_str("routes:\n");
    for p in 0..100 {
        yaml.push_str(&format!(
            "  - {{ prefix: /p{p}, provider: p{p}, auth: token }}\n"
        ));
    }
    yaml.push_str("tokens:\n");
    for i in 0..10_000u32 {
        let id = format!("{i:0>12}");
        yaml.push_str(&format!(
            "  - {{ id: \"{id}\", sha256: \"sha256:{}\", owner: o{} }}\n",
            hex_digest(i),
            i % 50
        ));
    }
    let config: wire::Config = parse(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let ctx = BuildContext {
        secrets,
        ..BuildContext::default()
    };
    (config, ctx)
}

fn hex_digest(i: u32) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(i.to_le_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn snapshot_build(c: &mut Criterion) {
    let (config, ctx) = large_config();
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10);
    g.bench_function("baseline_clone_wire_config", |b| {
        b.iter(|| black_box(config.clone()))
    });
    g.bench_function("build_100_providers_1000_keys_10k_tokens", |b| {
        b.iter(|| {
            let snap = Snapshot::build(&config, &Default::default(), Path::new("."), &ctx)
                .unwrap_or_else(|e| panic!("{e:?}"));
            black_box(snap.tokens.len())
        })
    });
    g.finish();
}

/// A token of Sluice's own issuer on an `auth: oauth` agent route: the whole admission (verify,
/// the app and `jti` revocation checks, scopes, audience claim), cached and uncached, beside
/// the same baseline as the `auth` group.
fn builtin_issuer(c: &mut Criterion) {
    use sluice::control::crypto::MasterKey;
    use sluice::control::issuer::KeyDoc;
    let master = MasterKey::from_bytes(&[3u8; 32]).unwrap_or_else(|e| panic!("{e}"));
    let key = KeyDoc::generate(&master, 0, sluice::config::wire::SigningAlgorithm::ES256)
        .unwrap_or_else(|e| panic!("{e}"));
    let src = r#"
public_base_url: "https://gw.bench"
agents:
  - name: research
    environments:
      - { name: prod, url: "http://127.0.0.1:9", auth: oauth, scopes: [invoke] }
"#;
    let config = parse(src).unwrap_or_else(|e| panic!("{e}"));
    let issuer = sluice::config::stored::IssuerState {
        signing_keys: vec![key.jwk.clone()],
        live_apps: vec!["research-prod-00000000".into()],
        revoked_tokens: Vec::new(),
        signed_out: Vec::new(),
        revoked_clients: Vec::new(),
    };
    let snap = Snapshot::build(&config, &issuer, Path::new("."), &BuildContext::default())
        .unwrap_or_else(|e| panic!("{e:?}"));
    let claims = serde_json::json!({"iss": "https://gw.bench", "aud": "https://gw.bench/agents/research/prod",
        "sub": "research-prod-00000000", "client_id": "research-prod-00000000", "exp": 4_000_000_000u64,
        "iat": 1_700_000_000u64, "jti": "0123456789abcdef0123456789abcdef", "scope": "invoke",
        "agent": "research", "env": "prod"});
    let token = key
        .signer(&master)
        .and_then(|s| s.sign(&claims, "at+jwt"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut req = RequestHeader::build("POST", b"/agents/research/prod/invoke", None)
        .unwrap_or_else(|e| panic!("{e}"));
    req.append_header("authorization", format!("Bearer {token}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    block_on(
        &rt,
        steps::admit(&req, &snap, steps::Peer::default(), 0, 1_800_000_000),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let mut g = c.benchmark_group("builtin_issuer");
    g.bench_function("baseline_sha256_of_jwt", |b| {
        b.iter(|| {
            black_box(<sha2::Sha256 as sha2::Digest>::digest(black_box(
                token.as_bytes(),
            )))
        })
    });
    g.bench_function("admit_cached", |b| {
        b.iter(|| {
            black_box(
                block_on(
                    &rt,
                    steps::admit(
                        black_box(&req),
                        &snap,
                        steps::Peer::default(),
                        0,
                        1_800_000_000,
                    ),
                )
                .is_ok(),
            )
        })
    });
    let keys = &snap.jwt.issuers[snap.builtin_issuer.unwrap_or_default()].keys;
    let entry = match keys.find(Some(&key.kid), jsonwebtoken::Algorithm::ES256) {
        sluice::auth::jwks::Lookup::Found(k) => k,
        _ => panic!("the built-in key is missing"),
    };
    let v = sluice::auth::jwt::validation(
        jsonwebtoken::Algorithm::ES256,
        "https://gw.bench",
        &["https://gw.bench/agents/research/prod".to_owned()],
        30,
    );
    g.bench_function("verify_uncached_es256", |b| {
        b.iter(|| {
            black_box(jsonwebtoken::decode::<serde_json::Value>(&token, &entry.key, &v).is_ok())
        })
    });
    // The same token signed by an Ed25519 key (`builtin_issuer.algorithm: EdDSA`).
    let ed = KeyDoc::generate(&master, 0, sluice::config::wire::SigningAlgorithm::EdDSA)
        .unwrap_or_else(|e| panic!("{e}"));
    let ed_token = ed
        .signer(&master)
        .and_then(|s| s.sign(&claims, "at+jwt"))
        .unwrap_or_else(|e| panic!("{e}"));
    let ed_jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(ed.jwk.clone()).unwrap_or_else(|e| panic!("{e}"));
    let ed_key = jsonwebtoken::DecodingKey::from_jwk(&ed_jwk).unwrap_or_else(|e| panic!("{e}"));
    let mut ed_v = v.clone();
    ed_v.algorithms = vec![jsonwebtoken::Algorithm::EdDSA];
    assert!(jsonwebtoken::decode::<serde_json::Value>(&ed_token, &ed_key, &ed_v).is_ok());
    g.bench_function("verify_uncached_eddsa", |b| {
        b.iter(|| {
            black_box(jsonwebtoken::decode::<serde_json::Value>(&ed_token, &ed_key, &ed_v).is_ok())
        })
    });
    g.finish();
}

/// Sluice's own per-chunk work on a streamed answer: the usage parser over an OpenAI SSE stream
/// of 20 content events and the final usage event, as one chunk (one upstream read) and as one
/// chunk per event, beside copying the same bytes.
fn usage_scan(c: &mut Criterion) {
    use sluice::audit::UsageParser;
    let mut stream = String::new();
    for i in 0..20 {
        stream.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token {i} \"}}}}]}}\n\n"
        ));
    }
    stream.push_str("data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":20}}\n\ndata: [DONE]\n\n");
    let events: Vec<&str> = stream.split_inclusive("\n\n").collect();
    let mut check = UsageParser::new("text/event-stream");
    check.feed(stream.as_bytes());
    assert_eq!(check.finish().map(|u| u.output), Some(20));
    let mut g = c.benchmark_group("usage_scan");
    g.bench_function("baseline_copy_stream", |b| {
        b.iter(|| black_box(black_box(stream.as_bytes()).to_vec()))
    });
    g.bench_function("sse_one_chunk", |b| {
        b.iter(|| {
            let mut p = UsageParser::new("text/event-stream");
            p.feed(black_box(stream.as_bytes()));
            black_box(p.finish())
        })
    });
    g.bench_function("sse_chunk_per_event", |b| {
        b.iter(|| {
            let mut p = UsageParser::new("text/event-stream");
            for e in &events {
                p.feed(black_box(e.as_bytes()));
            }
            black_box(p.finish())
        })
    });
    g.finish();
}

/// Fallback translation: a chat request with a system prompt, history and a tool (~2 KB) into
/// Anthropic's shape, against parsing and re-serialising the same body (the floor of any JSON
/// rewrite); an Anthropic stream of 20 text events into chat chunks, against the usage scan of
/// the same bytes.
fn translate(c: &mut Criterion) {
    use sluice::translate::{self, Format};
    let turns: Vec<String> = (0..10)
        .map(|i| format!(r#"{{"role":"{}","content":"message number {i} of a conversation about the weather in Oslo"}}"#, if i % 2 == 0 { "user" } else { "assistant" }))
        .collect();
    let body = format!(
        r#"{{"model":"gpt-4o","stream":true,"max_tokens":512,"messages":[{{"role":"system","content":"You are terse."}},{}],"tools":[{{"type":"function","function":{{"name":"weather","description":"Forecast","parameters":{{"type":"object","properties":{{"city":{{"type":"string"}}}}}}}}}}]}}"#,
        turns.join(",")
    );
    let mut events = String::from("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude\",\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n");
    for i in 0..20 {
        events.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"token {i} \"}}}}\n\n"));
    }
    events.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    let chunks: Vec<&str> = events.split_inclusive("\n\n").collect();
    let mut g = c.benchmark_group("translate");
    g.bench_function("baseline_json_roundtrip", |b| {
        b.iter(|| {
            let v: serde_json::Value =
                serde_json::from_str(black_box(&body)).unwrap_or_else(|e| panic!("{e}"));
            black_box(serde_json::to_vec(&v).unwrap_or_default())
        })
    });
    g.bench_function("request_openai_to_anthropic", |b| {
        b.iter(|| {
            black_box(translate::request(
                Format::OpenAi,
                Format::Anthropic,
                black_box(body.as_bytes()),
                Some("claude-sonnet-4-0"),
                "max_tokens",
            ))
        })
    });
    g.bench_function("baseline_usage_scan_stream", |b| {
        b.iter(|| {
            let mut p = sluice::audit::UsageParser::new("text/event-stream");
            for e in &chunks {
                p.feed(black_box(e.as_bytes()));
            }
            black_box(p.finish())
        })
    });
    g.bench_function("stream_anthropic_to_openai", |b| {
        b.iter(|| {
            let mut s = translate::Stream::new(Format::Anthropic);
            let mut n = 0;
            for e in &chunks {
                n += s.feed(black_box(e.as_bytes())).len();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    pick,
    translate,
    request_path,
    vault,
    auth,
    builtin_issuer,
    usage_scan,
    forward,
    snapshot_build,
    // Last: it installs the shared limits backend for the rest of the process.
    limits
);
criterion_main!(benches);
