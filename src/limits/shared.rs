//! Request rates and token allowances shared by every data-plane replica through Redis
//! (`server.limits_backend: redis://…`).
//!
//! Each replica leases units from one GCRA cell per counter in Redis (a Lua script, with Redis's
//! own clock, so replicas need not agree on time) and admits from its lease without a round trip;
//! a lease is refilled in the background when it runs low, and only a replica whose lease is
//! empty waits for Redis (one round trip per lease, at most [`TIMEOUT`]). Units leased are spent
//! in Redis at once, and a lease is good for one period of its limit at most, so in any period a
//! limit of N admits between N − R×L and N + R×L requests in total over R replicas with leases
//! of L units (L = N/20, between 1 and 50): the documented worst case.
//!
//! Token usage is debited in Redis as answers settle (in the background); each reply carries the
//! shared allowance's state, which the replica's own cell catches up to.
//!
//! Concurrency caps: each replica publishes its requests in flight per holder (a hash field per
//! replica) every [`FLIGHT_SYNC`] while the holder is active, and reads the others' sum,
//! counting replicas alive only (a reading older than two intervals is refreshed before
//! admitting); admission compares its own in flight plus the others' last seen with the cap.
//! Two replicas admitting at once can both see room: the documented overshoot is what the other
//! replicas admit within one sync interval.
//!
//! Every key and channel starts with the deployment's namespace (`server.namespace`, default
//! `sluice`), so deployments sharing one Redis share nothing. Key-health messages are
//! authenticated with a key every replica of the deployment holds (`server.limits_backend_key_ref`,
//! HMAC-SHA256), name the key's secret by a keyed fingerprint (a rotated secret is not benched
//! by news about the old one), and are bounded by the provider's configured maxima; without
//! a key, benched keys stay on the replica that benched them.
//!
//! When Redis does not answer, each replica falls back to its share of every limit (N ÷ the
//! replicas last seen alive, each heartbeating into a sorted set) and says so in
//! `sluice_limits_backend_up`; nothing waits on a dead Redis for longer than [`TIMEOUT`], and
//! the background task reconnects and goes back to shared counters.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::metrics::METRICS;

/// Longest a request waits for Redis before its replica falls back to its local share.
pub const TIMEOUT: Duration = Duration::from_millis(50);
/// How often a replica says it is alive (and checks Redis is).
const HEARTBEAT: Duration = Duration::from_millis(500);
/// A replica not heard from for this long no longer counts in the shares.
const REPLICA_TTL_MS: u64 = 3000;
/// A replica heartbeat further ahead than this is not believed.
const FUTURE_MS: u64 = 60_000;
/// How often a replica publishes its in-flight counts and reads the others'.
pub const FLIGHT_SYNC: Duration = Duration::from_millis(100);
/// The namespace when `server.namespace` is not set.
pub const DEFAULT_NAMESPACE: &str = "sluice";
/// Clock difference between replicas tolerated in a key-health message's end time (the bench
/// applied is clamped to the maximum anyway).
const HEALTH_SKEW_MS: u64 = 60_000;

/// Leases `ARGV[3]` units from a GCRA cell (`ARGV[1]` µs per unit, period `ARGV[2]` µs): as
/// many as fit. Returns the units granted and the µs until the next unit fits.
const LEASE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, period, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local room = math.floor((now + period - tat) / interval)
local grant = math.max(0, math.min(want, room))
if grant > 0 then
  tat = tat + grant * interval
  redis.call('SET', KEYS[1], tat, 'PX', math.ceil(period / 1000) * 2 + 1000)
end
return {grant, math.max(0, tat + interval - now - period)}
"#;

/// Debits `ARGV[2]` units (`ARGV[1]` µs each, period `ARGV[3]` µs) whether or not they fit;
/// returns the µs until the allowance is whole again.
const DEBIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
tat = tat + tonumber(ARGV[1]) * tonumber(ARGV[2])
if tat < now then tat = now end
redis.call('SET', KEYS[1], tat, 'PX', math.ceil((tat - now) / 1000) + math.ceil(tonumber(ARGV[3]) / 1000) + 1000)
return tat - now
"#;

/// Sets this replica's in-flight count (`ARGV[2]`, field `ARGV[1]`) in the hash `KEYS[1]` and
/// returns the sum of the other replicas' counts, dropping replicas whose heartbeat in
/// `KEYS[2]` is older than `ARGV[3]` or newer than `ARGV[4]` (ms).
const FLIGHT: &str = r#"
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], 10000)
local all = redis.call('HGETALL', KEYS[1])
local others = 0
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] then
    local seen = redis.call('ZSCORE', KEYS[2], all[i])
    if seen and tonumber(seen) >= tonumber(ARGV[3]) and tonumber(seen) <= tonumber(ARGV[4]) then
      others = others + tonumber(all[i + 1])
    else
      redis.call('HDEL', KEYS[1], all[i])
    end
  end
end
return others
"#;

pub struct Shared {
    client: redis::Client,
    /// Keys benched here are benched on every replica (`publish_health`, `follow_health`).
    health: Arc<crate::balance::HealthRegistry>,
    conn: Mutex<Option<ConnectionManager>>,
    /// Prefix of every key and channel: `{namespace}:`.
    namespace: String,
    /// Authenticates key-health messages; `None`: benched keys are not shared.
    health_key: Option<crate::secrets::Secret>,
    up: AtomicBool,
    replicas: AtomicU64,
    node: String,
    lease: redis::Script,
    debit: redis::Script,
    flight: redis::Script,
}

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

/// The process's shared backend, once `install`ed.
pub fn get() -> Option<&'static Arc<Shared>> {
    SHARED.get()
}

/// Sets up the backend for `url` (checked, not yet connected: `run` connects and keeps the
/// connection); the request path uses it from now on.
pub fn install(
    url: &str,
    namespace: &str,
    health_key: Option<crate::secrets::Secret>,
    health: Arc<crate::balance::HealthRegistry>,
) -> anyhow::Result<Arc<Shared>> {
    let client =
        redis::Client::open(url).map_err(|e| anyhow::anyhow!("server.limits_backend: {e}"))?;
    if !valid_namespace(namespace) {
        anyhow::bail!(
            "server.namespace: `{namespace}` must be 1 to 64 lowercase letters, digits, `-` or `_`"
        );
    }
    if health_key.is_none() {
        log::warn!(
            "server.limits_backend_key_ref is not set: keys benched on this replica are not benched on the others"
        );
    }
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
    let shared = Arc::new(Shared {
        client,
        health,
        conn: Mutex::new(None),
        namespace: namespace.to_owned(),
        health_key,
        up: AtomicBool::new(false),
        replicas: AtomicU64::new(1),
        node: hex::encode(id),
        lease: redis::Script::new(LEASE),
        debit: redis::Script::new(DEBIT),
        flight: redis::Script::new(FLIGHT),
    });
    let _ = SHARED.set(shared.clone());
    METRICS.limits_backend_up.set(0);
    Ok(shared)
}

/// `server.namespace`: 1 to 64 of `a-z`, `0-9`, `-`, `_`.
pub fn valid_namespace(namespace: &str) -> bool {
    (1..=64).contains(&namespace.len())
        && namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Shared {
    /// `key` under this deployment's namespace.
    fn named(&self, key: &str) -> String {
        format!("{}:{key}", self.namespace)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Replicas alive at the last heartbeat (at least this one).
    pub fn replicas(&self) -> u64 {
        self.replicas.load(Ordering::Acquire).max(1)
    }

    fn connection(&self) -> Option<ConnectionManager> {
        self.conn.lock().ok().and_then(|c| c.clone())
    }

    fn set_up(&self, up: bool) {
        if self.up.swap(up, Ordering::AcqRel) != up {
            if up {
                log::info!("limits backend reachable: counters shared across replicas");
            } else {
                log::warn!(
                    "limits backend unreachable: each replica enforces its share of every limit"
                );
            }
        }
        METRICS.limits_backend_up.set(i64::from(up));
    }

    /// Runs until the process stops: connects, heartbeats, counts replicas, notices outages,
    /// and follows the key-health channel.
    pub async fn run(self: Arc<Self>) {
        if self.health_key.is_some() {
            tokio::spawn(self.clone().follow_health());
        }
        loop {
            if self.connection().is_none() {
                let fresh = tokio::time::timeout(
                    Duration::from_secs(1),
                    ConnectionManager::new(self.client.clone()),
                )
                .await;
                if let Ok(Ok(c)) = fresh {
                    if let Ok(mut slot) = self.conn.lock() {
                        *slot = Some(c);
                    }
                }
            }
            let beat = match self.connection() {
                Some(c) => tokio::time::timeout(TIMEOUT * 4, self.heartbeat(c)).await,
                None => Ok(Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "not connected",
                )))),
            };
            match beat {
                Ok(Ok(n)) => {
                    self.replicas.store(n.max(1), Ordering::Release);
                    METRICS.limits_replicas.set(n.max(1) as i64);
                    self.set_up(true);
                }
                _ => self.set_up(false),
            }
            tokio::time::sleep(HEARTBEAT).await;
        }
    }

    async fn heartbeat(&self, mut c: ConnectionManager) -> redis::RedisResult<u64> {
        let now = crate::clock::unix_now_ms();
        let replicas = self.named("limits:replicas");
        // Entries from the future (a clock far ahead, or written by someone else) are dropped
        // too: they would count as alive forever.
        let (_, _, _, n): (i64, i64, i64, u64) = redis::pipe()
            .zadd(&replicas, &self.node, now)
            .zrembyscore(&replicas, 0, now.saturating_sub(REPLICA_TTL_MS))
            .zrembyscore(&replicas, now + FUTURE_MS, "+inf")
            .zcard(&replicas)
            .query_async(&mut c)
            .await?;
        Ok(n)
    }

    /// Tells every replica that `provider`'s key `key` (whose secret has `fingerprint`) is out
    /// of rotation for `ms` from now (cooling down or quarantined): they bench it until the same
    /// wall-clock time. Nothing is sent without a key to authenticate the message.
    pub fn publish_health(
        self: &Arc<Self>,
        (provider, key, fingerprint): (&str, &str, [u8; 32]),
        state: crate::balance::KeyState,
        ms: u64,
    ) {
        let Some(secret) = &self.health_key else {
            return;
        };
        let Some(mut c) = self.connection().filter(|_| self.is_up()) else {
            return;
        };
        let message = HealthMessage {
            ns: self.namespace.clone(),
            provider: provider.to_owned(),
            key: key.to_owned(),
            fp: key_fingerprint(secret, &fingerprint),
            state: state.as_str().to_owned(),
            until_ms: crate::clock::unix_now_ms() + ms,
        }
        .seal(secret);
        let channel = self.named("key-health");
        tokio::spawn(async move {
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(channel).arg(message);
            let publish = cmd.query_async::<i64>(&mut c);
            let _ = tokio::time::timeout(TIMEOUT * 4, publish).await;
        });
    }

    /// Applies the other replicas' benched keys as they are announced; resubscribes after an
    /// outage.
    async fn follow_health(self: Arc<Self>) {
        use futures_util::StreamExt;
        let channel = self.named("key-health");
        loop {
            if let Ok(Ok(mut pubsub)) =
                tokio::time::timeout(Duration::from_secs(1), self.client.get_async_pubsub()).await
            {
                if pubsub.subscribe(&channel).await.is_ok() {
                    let mut messages = pubsub.on_message();
                    while let Some(m) = messages.next().await {
                        if let Ok(text) = m.get_payload::<String>() {
                            let outcome = self.apply_health(&text);
                            METRICS
                                .key_health_messages
                                .with_label_values(&[outcome])
                                .inc();
                        }
                    }
                }
            }
            tokio::time::sleep(HEARTBEAT).await;
        }
    }

    /// Benches a key another replica benched, if the message is authentic, for this
    /// deployment, about the secret this replica holds and within the provider's maxima.
    /// Returns the outcome (the `sluice_key_health_messages_total` label).
    fn apply_health(&self, text: &str) -> &'static str {
        let Some(secret) = &self.health_key else {
            return "forged";
        };
        let Some(m) = HealthMessage::open(secret, text) else {
            return "forged";
        };
        if m.ns != self.namespace {
            return "forged";
        }
        let state = match m.state.as_str() {
            "quarantined" => crate::balance::KeyState::Quarantined,
            "cooling_down" => crate::balance::KeyState::CoolingDown,
            _ => return "forged",
        };
        let Some((fingerprint, health, limits)) = self.health.find(&m.provider, &m.key) else {
            return "unknown_key";
        };
        let ours = key_fingerprint(secret, &fingerprint);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            ours.as_bytes(),
            m.fp.as_bytes(),
        )) {
            return "other_secret";
        }
        let left = m.until_ms.saturating_sub(crate::clock::unix_now_ms());
        let most = limits.most(state).as_millis() as u64;
        if left > most + HEALTH_SKEW_MS {
            log::warn!(
                "provider {} key {}: refused a {} of {}s from another replica (at most {}s)",
                m.provider,
                m.key,
                state.as_str(),
                left / 1000,
                most / 1000
            );
            return "too_long";
        }
        let left = left.min(most);
        if left == 0 {
            return "expired";
        }
        if health.blocked_for_ms(crate::clock::now_ms()) + 50 < left {
            log::warn!(
                "provider {} key {}: {} by another replica for {}s",
                m.provider,
                m.key,
                state.as_str(),
                left / 1000
            );
        }
        health.block(state, crate::clock::now_ms(), Duration::from_millis(left));
        "applied"
    }

    /// Adds `tokens` and `micro_usd` to a budget's shared spend (keys `{key}:t` and `{key}:m`,
    /// kept `ttl_s`), or only reads it when both are 0; `then` gets the totals, in the
    /// background, and the totals under `prev` when given (a rolling window's previous one).
    pub fn budget_spend(
        self: &Arc<Self>,
        (key, prev): (String, Option<String>),
        (tokens, micro_usd): (u64, u64),
        ttl_s: u64,
        then: impl FnOnce((u64, u64), (u64, u64)) + Send + 'static,
    ) {
        let Some(mut c) = self.connection().filter(|_| self.is_up()) else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            let key = me.named(&key);
            let prev = prev.map(|p| me.named(&p));
            let (t, m) = (format!("{key}:t"), format!("{key}:m"));
            let mut pipe = redis::pipe();
            pipe.incr(&t, tokens)
                .incr(&m, micro_usd)
                .expire(&t, ttl_s as i64)
                .ignore()
                .expire(&m, ttl_s as i64)
                .ignore();
            if let Some(prev) = &prev {
                pipe.get(format!("{prev}:t")).get(format!("{prev}:m"));
            }
            // The two totals, then the previous window's two (absent keys: nothing spent).
            let call = pipe.query_async::<Vec<Option<u64>>>(&mut c);
            match tokio::time::timeout(TIMEOUT * 4, call).await {
                Ok(Ok(v)) => {
                    let n = |i: usize| v.get(i).copied().flatten().unwrap_or(0);
                    then((n(0), n(1)), (n(2), n(3)))
                }
                _ => me.set_up(false),
            }
        });
    }

    /// Leases up to `want` units; `Ok((granted, wait_ns))`, `Err` when Redis did not answer
    /// in time (the caller falls back to its local share).
    pub async fn lease(
        &self,
        key: &str,
        interval_ns: u64,
        period_ns: u64,
        want: u64,
    ) -> Result<(u64, u64), ()> {
        let Some(mut c) = self.connection().filter(|_| self.is_up()) else {
            return Err(());
        };
        let mut invocation = self.lease.key(self.named(key));
        invocation
            .arg((interval_ns / 1000).max(1))
            .arg(period_ns / 1000)
            .arg(want);
        let call = invocation.invoke_async::<(u64, u64)>(&mut c);
        match tokio::time::timeout(TIMEOUT, call).await {
            Ok(Ok((granted, wait_us))) => Ok((granted, wait_us * 1000)),
            _ => {
                self.set_up(false);
                Err(())
            }
        }
    }

    /// Publishes this replica's `local` requests in flight under `key`; the other replicas'
    /// sum, or `Err` when Redis did not answer in time.
    pub async fn flight(&self, key: &str, local: u32) -> Result<u32, ()> {
        let Some(mut c) = self.connection().filter(|_| self.is_up()) else {
            return Err(());
        };
        let alive_since = crate::clock::unix_now_ms().saturating_sub(REPLICA_TTL_MS);
        let mut invocation = self.flight.key(self.named(key));
        invocation
            .key(self.named("limits:replicas"))
            .arg(&self.node)
            .arg(local)
            .arg(alive_since)
            .arg(crate::clock::unix_now_ms() + FUTURE_MS);
        let call = invocation.invoke_async::<u32>(&mut c);
        match tokio::time::timeout(TIMEOUT * 4, call).await {
            Ok(Ok(others)) => Ok(others),
            _ => {
                self.set_up(false);
                Err(())
            }
        }
    }

    /// Debits `n` units in the background; `then` gets the ns until the shared allowance is
    /// whole again.
    pub fn debit(
        self: &Arc<Self>,
        key: String,
        interval_ns: u64,
        period_ns: u64,
        n: i64,
        then: impl FnOnce(u64) + Send + 'static,
    ) {
        let Some(mut c) = self.connection().filter(|_| self.is_up()) else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            let mut invocation = me.debit.key(me.named(&key));
            invocation
                .arg((interval_ns / 1000).max(1))
                .arg(n)
                .arg(period_ns / 1000);
            let call = invocation.invoke_async::<u64>(&mut c);
            match tokio::time::timeout(TIMEOUT * 4, call).await {
                Ok(Ok(us)) => then(us * 1000),
                _ => me.set_up(false),
            }
        });
    }
}

/// A replica's lease on one shared rate: units it may admit without asking Redis, until
/// `expires_ns` (one period after they were leased, at most a second).
#[derive(Debug, Default)]
pub struct Lease {
    units: AtomicI64,
    expires_ns: AtomicU64,
    refilling: AtomicBool,
}

impl Lease {
    /// Takes one leased unit if there is one.
    pub fn take(&self, now_ns: u64) -> bool {
        if self.expires_ns.load(Ordering::Acquire) <= now_ns {
            return false;
        }
        if self.units.fetch_sub(1, Ordering::AcqRel) > 0 {
            return true;
        }
        self.units.fetch_add(1, Ordering::AcqRel);
        false
    }

    pub fn left(&self) -> i64 {
        self.units.load(Ordering::Acquire)
    }

    /// Adds `units` granted now, good for `ttl_ns`.
    pub fn add(&self, units: u64, now_ns: u64, ttl_ns: u64) {
        if self.expires_ns.load(Ordering::Acquire) <= now_ns {
            self.units.store(0, Ordering::Release);
        }
        self.units.fetch_add(units as i64, Ordering::AcqRel);
        self.expires_ns.store(now_ns + ttl_ns, Ordering::Release);
    }

    /// Whether this caller should start a background refill (only one at a time).
    pub fn start_refill(&self) -> bool {
        !self.refilling.swap(true, Ordering::AcqRel)
    }

    pub fn end_refill(&self) {
        self.refilling.store(false, Ordering::Release);
    }
}

/// Where a limit's or budget's counters live in Redis, under the namespace: `{kind}:{name}:{hash
/// of the whole spec}` (a changed spec starts afresh, as it does locally), made once per
/// snapshot build.
pub fn key_prefix(kind: &str, name: &str, spec: &impl serde::Serialize) -> String {
    let fingerprint = serde_json::to_string(spec).unwrap_or_default();
    format!(
        "{kind}:{name}:{:016x}",
        crate::balance::hash_str(&fingerprint)
    )
}

/// Units leased at a time for a limit of `limit` per period: a twentieth, 1 to 50.
pub fn lease_size(limit: u64) -> u64 {
    (limit / 20).clamp(1, 50)
}

/// A key benched by one replica, as announced to the others: `{HMAC-SHA256 hex}.{JSON}`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct HealthMessage {
    ns: String,
    provider: String,
    key: String,
    /// [`key_fingerprint`] of the key's secret.
    fp: String,
    state: String,
    until_ms: u64,
}

impl HealthMessage {
    fn seal(&self, secret: &crate::secrets::Secret) -> String {
        let body = serde_json::to_string(self).unwrap_or_default();
        format!("{}.{body}", hex::encode(mac(secret, body.as_bytes())))
    }

    /// The message, if its MAC is `secret`'s (checked in constant time) and it parses.
    fn open(secret: &crate::secrets::Secret, text: &str) -> Option<HealthMessage> {
        let (tag, body) = text.split_once('.')?;
        let tag = hex::decode(tag).ok()?;
        let want = mac(secret, body.as_bytes());
        bool::from(subtle::ConstantTimeEq::ct_eq(&want[..], &tag[..]))
            .then(|| serde_json::from_str(body).ok())
            .flatten()
    }
}

fn mac(secret: &crate::secrets::Secret, data: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    match <hmac::Hmac<sha2::Sha256>>::new_from_slice(secret.expose().as_bytes()) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

/// A provider key's secret as named in key-health messages: keyed, so Redis never sees a plain
/// hash of an API key.
fn key_fingerprint(secret: &crate::secrets::Secret, fingerprint: &[u8; 32]) -> String {
    let mut data = b"sluice key fingerprint\0".to_vec();
    data.extend_from_slice(fingerprint);
    hex::encode(&mac(secret, &data)[..16])
}

#[cfg(test)]
mod health_message_tests {
    use super::*;
    use crate::secrets::Secret;

    #[test]
    fn only_the_deployments_key_opens_a_message() {
        let key = Secret::new("a-key-every-replica-holds");
        let m = HealthMessage {
            ns: "prod".into(),
            provider: "openai".into(),
            key: "k1".into(),
            fp: key_fingerprint(&key, &[7; 32]),
            state: "quarantined".into(),
            until_ms: 1,
        };
        let sealed = m.seal(&key);
        assert_eq!(
            HealthMessage::open(&key, &sealed).map(|m| m.key),
            Some("k1".into())
        );
        assert!(HealthMessage::open(&Secret::new("another"), &sealed).is_none());
        // A changed body under the old tag.
        let tampered = sealed.replace("\"until_ms\":1", "\"until_ms\":9999999999999");
        assert!(HealthMessage::open(&key, &tampered).is_none());
        // No tag at all: what an attacker without the key can publish.
        let bare = sealed.split_once('.').map(|(_, b)| b.to_owned()).unwrap();
        assert!(HealthMessage::open(&key, &bare).is_none());
        assert_ne!(
            key_fingerprint(&key, &[7; 32]),
            key_fingerprint(&key, &[8; 32])
        );
        assert!(valid_namespace("prod-eu_1") && !valid_namespace("Prod") && !valid_namespace(""));
        assert!(!valid_namespace("a:b") && !valid_namespace(&"a".repeat(65)));
    }
}
