//! Signing keys of trusted issuers, outside the snapshot so a reload keeps them. A background
//! service refreshes each issuer's JWKS by its `Cache-Control: max-age` (bounded to 1 min–24 h),
//! keeping the old keys when a fetch fails. A token with an unknown `kid` may trigger one refetch
//! per issuer — single-flight, and at most once per [`REFETCH_DEBOUNCE`] — so a burst of made-up
//! kids costs one fetch, and the request path never sleeps.

use arc_swap::ArcSwap;
use async_trait::async_trait;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use crate::clock::now_ms;
use crate::metrics::METRICS;

/// Minimum time between two refetches caused by unknown `kid`s.
pub const REFETCH_DEBOUNCE: Duration = Duration::from_secs(10);
const MIN_MAX_AGE: Duration = Duration::from_secs(60);
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Refresh interval when the JWKS response has no `max-age`.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Retry interval after a failed fetch (the old keys keep serving meanwhile).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_BODY: usize = 1024 * 1024;

static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .unwrap_or_default()
});

/// One usable verification key.
pub struct KeyEntry {
    pub kid: Option<String>,
    /// The JWK's own `alg`, when it states one: the key is then used for nothing else.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

pub enum Lookup {
    Found(Arc<KeyEntry>),
    /// The `kid` exists but its key cannot verify this algorithm (algorithm confusion).
    Incompatible,
    Missing,
}

/// The keys of one issuer and the state of their fetching.
pub struct IssuerKeys {
    name: String,
    issuer: String,
    configured_uri: Option<String>,
    keys: ArcSwap<Vec<Arc<KeyEntry>>>,
    /// Bumped each time the key set is replaced: a verified token cached under an older
    /// generation is checked against the current keys before it is trusted again.
    generation: AtomicU64,
    /// Held while fetching (single flight); holds the discovered `jwks_uri`.
    fetching: tokio::sync::Mutex<Option<String>>,
    /// When an unknown `kid` last caused a fetch: the debounce clock. Scheduled refreshes do
    /// not count, so a rotation right after one is still picked up by the first new token.
    last_unknown_kid_fetch_ms: AtomicU64,
    next_refresh_ms: AtomicU64,
    /// Keys given with the configuration (the built-in issuer's): never fetched.
    fixed: bool,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("issuer", &self.issuer)
            .field("keys", &self.keys.load().len())
            .finish()
    }
}

impl IssuerKeys {
    fn new(name: &str, issuer: &str, jwks_uri: Option<&str>) -> IssuerKeys {
        IssuerKeys {
            name: name.to_owned(),
            issuer: issuer.trim_end_matches('/').to_owned(),
            configured_uri: jwks_uri.map(str::to_owned),
            keys: ArcSwap::from_pointee(Vec::new()),
            generation: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(None),
            last_unknown_kid_fetch_ms: AtomicU64::new(0),
            next_refresh_ms: AtomicU64::new(0),
            fixed: false,
        }
    }

    /// Keys that come with the configuration (the built-in issuer's JWKS) and are never
    /// fetched: an unknown `kid` is simply unknown.
    pub fn fixed(name: &str, issuer: &str, doc: &serde_json::Value) -> Result<IssuerKeys, String> {
        let keys = IssuerKeys {
            fixed: true,
            ..IssuerKeys::new(name, issuer, None)
        };
        keys.load_document(doc)?;
        Ok(keys)
    }

    fn replace_keys(&self, keys: Vec<Arc<KeyEntry>>) {
        self.keys.store(Arc::new(keys));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Which key set is current (see `generation`).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        let keys = self.keys.load();
        let fits = |k: &KeyEntry| k.key.family() == alg.family() && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => match keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                Some(k) if fits(k) => Lookup::Found(k.clone()),
                Some(_) => Lookup::Incompatible,
                None => Lookup::Missing,
            },
            None => {
                let mut fitting = keys.iter().filter(|k| fits(k));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Lookup::Found(k.clone()),
                    _ => Lookup::Missing,
                }
            }
        }
    }

    /// Called for a token whose key is unknown. Waits for a fetch already in flight, starts one
    /// if no unknown key caused one in the last [`REFETCH_DEBOUNCE`], else returns `false` at once.
    /// Returns whether the keys may have changed (the caller looks again).
    pub async fn refetch_for_unknown_key(&self) -> bool {
        if self.fixed {
            return false;
        }
        match self.fetching.try_lock() {
            Ok(mut discovered) => {
                let now = now_ms().max(1);
                let last = self.last_unknown_kid_fetch_ms.load(Ordering::Relaxed);
                if last != 0 && now.saturating_sub(last) < REFETCH_DEBOUNCE.as_millis() as u64 {
                    return false;
                }
                self.last_unknown_kid_fetch_ms.store(now, Ordering::Relaxed);
                self.fetch_locked(&mut discovered).await
            }
            Err(_) => {
                // Another request's fetch is in flight: its result is what we need.
                let _done = self.fetching.lock().await;
                true
            }
        }
    }

    /// Background refresh when due.
    async fn refresh_if_due(&self) {
        if self.next_refresh_ms.load(Ordering::Relaxed) > now_ms() {
            return;
        }
        let mut discovered = self.fetching.lock().await;
        if self.next_refresh_ms.load(Ordering::Relaxed) > now_ms() {
            return;
        }
        self.fetch_locked(&mut discovered).await;
    }

    async fn fetch_locked(&self, discovered: &mut Option<String>) -> bool {
        match self.fetch(discovered).await {
            Ok((keys, max_age)) => {
                log::info!("issuer {}: {} signing keys loaded", self.name, keys.len());
                self.replace_keys(keys);
                let wait = max_age
                    .unwrap_or(DEFAULT_MAX_AGE)
                    .clamp(MIN_MAX_AGE, MAX_MAX_AGE);
                self.next_refresh_ms
                    .store(now_ms() + wait.as_millis() as u64, Ordering::Relaxed);
                METRICS
                    .jwks_fetches
                    .with_label_values(&[&self.name, "ok"])
                    .inc();
                true
            }
            Err(e) => {
                log::warn!(
                    "issuer {}: JWKS fetch failed, keeping {} old keys: {e}",
                    self.name,
                    self.keys.load().len()
                );
                self.next_refresh_ms.store(
                    now_ms() + RETRY_AFTER_FAILURE.as_millis() as u64,
                    Ordering::Relaxed,
                );
                METRICS
                    .jwks_fetches
                    .with_label_values(&[&self.name, "error"])
                    .inc();
                false
            }
        }
    }

    async fn fetch(
        &self,
        discovered: &mut Option<String>,
    ) -> Result<(Vec<Arc<KeyEntry>>, Option<Duration>), String> {
        let uri = match (&self.configured_uri, discovered.as_ref()) {
            (Some(uri), _) | (None, Some(uri)) => uri.clone(),
            (None, None) => {
                let url = format!("{}/.well-known/openid-configuration", self.issuer);
                let (body, _) = get(&url).await?;
                let doc: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
                let uri = doc["jwks_uri"]
                    .as_str()
                    .ok_or_else(|| format!("{url} has no jwks_uri"))?
                    .to_owned();
                *discovered = Some(uri.clone());
                uri
            }
        };
        let (body, max_age) = get(&uri).await?;
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("{uri}: {e}"))?;
        let keys = parse_jwks(&doc).map_err(|e| format!("{uri}: {e}"))?;
        Ok((keys, max_age))
    }

    /// Replaces the keys with those of a JWKS document (what a fetch does; also for benches
    /// and tests that have no IdP).
    pub fn load_document(&self, doc: &serde_json::Value) -> Result<usize, String> {
        let keys = parse_jwks(doc)?;
        let n = keys.len();
        self.replace_keys(keys);
        Ok(n)
    }
}

fn parse_jwks(doc: &serde_json::Value) -> Result<Vec<Arc<KeyEntry>>, String> {
    let keys: Vec<Arc<KeyEntry>> = doc["keys"]
        .as_array()
        .ok_or("no `keys` array")?
        .iter()
        .filter_map(key_entry)
        .map(Arc::new)
        .collect();
    if keys.is_empty() {
        return Err("no usable signing keys".to_owned());
    }
    Ok(keys)
}

/// A public signing key from one JWK, or `None` for keys that must never verify tokens
/// (symmetric `oct` keys, encryption keys, unknown shapes).
fn key_entry(value: &serde_json::Value) -> Option<KeyEntry> {
    if value["kty"] == "oct" || value["use"] == "enc" {
        return None;
    }
    let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    if key.family() == jsonwebtoken::AlgorithmFamily::Hmac {
        return None;
    }
    let alg = value["alg"].as_str().and_then(super::jwt::parse_algorithm);
    if value["alg"].is_string() && alg.is_none() {
        return None;
    }
    Some(KeyEntry {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

async fn get(url: &str) -> Result<(Vec<u8>, Option<Duration>), String> {
    let mut resp = CLIENT
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: HTTP {}", resp.status()));
    }
    let max_age = resp
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',').find_map(|d| {
                d.trim()
                    .strip_prefix("max-age=")
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
        })
        .map(Duration::from_secs);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("{url}: response larger than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, max_age))
}

/// (name, issuer, jwks_uri): a changed issuer or key URL is a new set of keys.
type IssuerId = (String, String, Option<String>);

/// Every issuer's keys, by (name, issuer, jwks_uri); shared by all snapshots.
#[derive(Default)]
pub struct JwksRegistry {
    entries: Mutex<HashMap<IssuerId, Arc<IssuerKeys>>>,
}

impl JwksRegistry {
    pub fn get(&self, name: &str, issuer: &str, jwks_uri: Option<&str>) -> Arc<IssuerKeys> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .entry((
                name.to_owned(),
                issuer.to_owned(),
                jwks_uri.map(str::to_owned),
            ))
            .or_insert_with(|| Arc::new(IssuerKeys::new(name, issuer, jwks_uri)))
            .clone()
    }

    /// Forgets issuers no longer configured.
    pub fn retain(&self, live: &[Arc<IssuerKeys>]) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, v| live.iter().any(|l| Arc::ptr_eq(l, v)));
    }

    fn all(&self) -> Vec<Arc<IssuerKeys>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.values().cloned().collect()
    }
}

impl std::fmt::Debug for JwksRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwksRegistry")
    }
}

/// Background service: loads each issuer's keys at start and refreshes them when due.
pub struct JwksRefresher {
    pub registry: Arc<JwksRegistry>,
}

#[async_trait]
impl BackgroundService for JwksRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            for issuer in self.registry.all() {
                issuer.refresh_if_due().await;
            }
        }
    }
}
