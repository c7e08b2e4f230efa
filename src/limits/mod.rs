//! Rate and concurrency limits (`limits:`), enforced at admission before anything goes upstream.
//!
//! Each rate is a GCRA cell (one atomic "theoretical arrival time" per counter, the algorithm of
//! `redis-cell` and Stripe's limiter): admitting a request moves it on by `period / limit`, and a
//! request is refused when that would put it more than one period ahead of now. Token rates
//! use the same cell with a cost per token: a request is admitted while the minute's allowance
//! is not used up, and what it used is debited afterwards (reserved from `max_tokens` as the
//! body streams upstream, replaced by the usage the answer reports). Concurrency is a counter
//! released when the request's `Grant` is dropped, whatever way the request ended.
//!
//! Counters live beside the snapshot (`Registry`): a reload that keeps a limit unchanged keeps
//! its counters, a changed limit starts afresh.

pub mod gcra;
pub mod shared;
pub mod spec;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::auth::Principal;
use gcra::Gcra;
use spec::{Limit, Per};

pub use crate::error::{Dimension, Limited};

/// The counters of one limit for one holder (everything, a principal or an owner).
#[derive(Debug)]
pub struct Counters {
    per_second: Option<Rate>,
    per_minute: Option<Rate>,
    tokens: Option<Rate>,
    /// This replica's requests in flight.
    in_flight: AtomicU32,
    /// With a shared backend: the concurrency counter's key in Redis, the other replicas'
    /// requests in flight as last seen, and the count this replica last published.
    flight: Option<SharedFlight>,
}

#[derive(Debug)]
struct SharedFlight {
    key: String,
    others: AtomicU32,
    published: AtomicU32,
    /// When `others` was last read (`now_ns`); 0: never.
    read_ns: AtomicU64,
    /// Until when the holder counts as active (synced even with nothing in flight here).
    active_until_ns: AtomicU64,
}

impl SharedFlight {
    fn new(key: String) -> SharedFlight {
        SharedFlight {
            key,
            others: AtomicU32::new(0),
            published: AtomicU32::new(0),
            read_ns: AtomicU64::new(0),
            active_until_ns: AtomicU64::new(0),
        }
    }

    /// Publishes `local` and reads the others' count; `false` when Redis did not answer.
    async fn sync(&self, s: &shared::Shared, local: u32) -> bool {
        match s.flight(&self.key, local).await {
            Ok(others) => {
                self.others.store(others, Ordering::Release);
                self.published.store(local, Ordering::Release);
                self.read_ns.store(now_ns(), Ordering::Release);
                true
            }
            Err(()) => false,
        }
    }

    /// The others' requests in flight, read afresh when the last reading is older than two
    /// sync intervals (a holder idle here until now); the holder stays synced for a while.
    async fn others(&self, s: &shared::Shared, local: u32, now: u64) -> u32 {
        let period = shared::FLIGHT_SYNC.as_nanos() as u64;
        self.active_until_ns
            .store(now + 20 * period, Ordering::Release);
        if now.saturating_sub(self.read_ns.load(Ordering::Acquire)) > 2 * period {
            self.sync(s, local).await;
        }
        self.others.load(Ordering::Acquire)
    }
}

/// Counters whose in-flight counts are published to the shared backend (`sync_flights`).
static FLIGHTS: Mutex<Vec<std::sync::Weak<Counters>>> = Mutex::new(Vec::new());

/// Counters as the request path holds them; those with a shared concurrency cap are followed
/// by `sync_flights`.
fn track(c: Counters) -> Arc<Counters> {
    let c = Arc::new(c);
    if c.flight.is_some() {
        if let Ok(mut all) = FLIGHTS.lock() {
            // Counters of holders forgotten are dropped now and then (without a shared
            // backend nothing else reads this list).
            if all.len() >= 64 && all.len().is_power_of_two() {
                all.retain(|w| w.strong_count() > 0);
            }
            all.push(Arc::downgrade(&c));
        }
    }
    c
}

/// Runs with the shared backend: every [`shared::FLIGHT_SYNC`], publishes this replica's
/// requests in flight for each holder of a concurrency cap that has any (or had at the last
/// publication, or sees others'), and reads the other replicas' sum.
pub async fn sync_flights() {
    loop {
        tokio::time::sleep(shared::FLIGHT_SYNC).await;
        let Some(s) = shared::get() else {
            continue;
        };
        let live: Vec<Arc<Counters>> = match FLIGHTS.lock() {
            Ok(mut all) => {
                all.retain(|w| w.strong_count() > 0);
                all.iter().filter_map(std::sync::Weak::upgrade).collect()
            }
            Err(_) => continue,
        };
        let now = now_ns();
        for c in live {
            let Some(f) = &c.flight else { continue };
            let local = c.in_flight.load(Ordering::Acquire);
            let idle = local == 0
                && f.published.load(Ordering::Acquire) == 0
                && f.others.load(Ordering::Acquire) == 0
                && f.active_until_ns.load(Ordering::Acquire) < now;
            if idle || !s.is_up() {
                continue;
            }
            f.sync(s, local).await;
        }
    }
}

/// One rate of one holder: the local cell (the whole limit on one replica; with a shared
/// backend, the replica's view of the shared allowance for tokens), and with a shared backend
/// the replica's lease, its key in Redis and its fallback share.
#[derive(Debug)]
struct Rate {
    cell: Gcra,
    period_ns: u64,
    key: String,
    lease: shared::Lease,
    /// The limit ÷ the replicas alive when Redis first failed to answer.
    fallback: OnceLock<Gcra>,
}

impl Rate {
    fn new(limit: u64, period_ns: u64, key: String) -> Rate {
        Rate {
            cell: Gcra::new(limit, period_ns),
            period_ns,
            key,
            lease: shared::Lease::default(),
            fallback: OnceLock::new(),
        }
    }

    fn fallback(&self, replicas: u64) -> &Gcra {
        self.fallback
            .get_or_init(|| Gcra::new(self.cell.limit().div_ceil(replicas.max(1)), self.period_ns))
    }

    /// Takes one unit: from the local cell, or with a shared backend from the replica's lease
    /// (refilled from Redis when empty), or from the fallback share while Redis is away.
    async fn take(&self, now: u64) -> Result<(), u64> {
        let Some(s) = shared::get() else {
            return self.cell.take(now);
        };
        if s.is_up() {
            if self.lease.take(now) {
                return Ok(());
            }
            let want = shared::lease_size(self.cell.limit());
            match s
                .lease(&self.key, self.cell.interval_ns(), self.period_ns, want)
                .await
            {
                Ok((0, wait)) => return Err(wait.max(1)),
                Ok((granted, _)) => {
                    let ttl = self.period_ns.min(1_000_000_000);
                    self.lease.add(granted - 1, now, ttl);
                    return Ok(());
                }
                Err(()) => {}
            }
        }
        self.fallback(s.replicas()).take(now)
    }

    /// Gives back a unit taken by `take` (another limit refused the request).
    fn give_back(&self, now: u64) {
        match shared::get() {
            None => self.cell.credit(1, now),
            Some(s) if s.is_up() => self.lease.add(1, now, self.period_ns.min(1_000_000_000)),
            Some(s) => self.fallback(s.replicas()).credit(1, now),
        }
    }

    /// Tokens used (`n > 0`) or reserved too many (`n < 0`): on this replica, and in Redis
    /// when shared (its answer brings the other replicas' use into the local cell).
    fn debit(self: &Rate, n: i64, now: u64, holder: &Arc<Counters>) {
        if n >= 0 {
            self.cell.debit(n as u64, now);
        } else {
            self.cell.credit(n.unsigned_abs(), now);
        }
        if let Some(s) = shared::get() {
            let counters = holder.clone();
            let (interval, period) = (self.cell.interval_ns(), self.period_ns);
            s.debit(self.key.clone(), interval, period, n, move |reset_ns| {
                if let Some(t) = &counters.tokens {
                    t.cell.catch_up(now_ns(), reset_ns);
                }
            });
        }
    }
}

/// One limit as the request path uses it.
#[derive(Debug)]
pub struct Compiled {
    pub name: Arc<str>,
    spec: Limit,
    /// `shared::key_prefix` of the spec.
    key: String,
    shared: Arc<Counters>,
    /// Counters per principal or owner, forgotten an hour after their last use.
    keyed: moka::sync::Cache<Box<str>, Arc<Counters>>,
}

const MINUTE_NS: u64 = 60_000_000_000;
const SECOND_NS: u64 = 1_000_000_000;

impl Compiled {
    fn new(spec: Limit) -> Compiled {
        let key = shared::key_prefix("limit", &spec.name, &spec);
        let shared = track(Self::counters(&spec, &key, "*"));
        Compiled {
            name: Arc::from(spec.name.as_str()),
            key,
            shared,
            keyed: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            spec,
        }
    }

    /// Counters of `holder` (`*` for everything), keyed in Redis under `prefix`.
    fn counters(spec: &Limit, prefix: &str, holder: &str) -> Counters {
        let key = |what: &str| format!("{prefix}:{holder}:{what}");
        Counters {
            per_second: spec
                .requests_per_second
                .map(|n| Rate::new(n as u64, SECOND_NS, key("s"))),
            per_minute: spec
                .requests_per_minute
                .map(|n| Rate::new(n as u64, MINUTE_NS, key("m"))),
            tokens: spec
                .tokens_per_minute
                .map(|n| Rate::new(n, MINUTE_NS, key("t"))),
            in_flight: AtomicU32::new(0),
            flight: spec
                .concurrent
                .is_some()
                .then(|| SharedFlight::new(key("c"))),
        }
    }

    /// Whether this limit applies to a request on `route` (a route prefix) by `principal`.
    fn matches(&self, at: At<'_>, principal: &Principal) -> bool {
        let s = &self.spec;
        Selector {
            route: s.route.as_deref(),
            provider: s.provider.as_deref(),
            owner: s.owner.as_deref(),
            token: s.token.as_deref(),
            app: s.app.as_deref(),
            mcp_server: s.mcp_server.as_deref(),
        }
        .matches(at, principal)
            && s.endpoint == at.endpoint
    }

    fn counters_for(&self, at: At<'_>, principal: &Principal) -> Arc<Counters> {
        let source;
        let key = match self.spec.per {
            Per::Source => {
                source = source_holder(at.source);
                Some(source.as_str())
            }
            per => holder(per, principal),
        };
        let Some(key) = key else {
            return self.shared.clone();
        };
        of_holder(&self.keyed, key, || {
            track(Self::counters(&self.spec, &self.key, key))
        })
    }

    pub fn spec(&self) -> &Limit {
        &self.spec
    }

    fn uses_tokens(&self) -> bool {
        self.spec.tokens_per_minute.is_some()
    }
}

/// Every limit of a snapshot, in the order written.
#[derive(Debug, Default)]
pub struct Limits {
    pub all: Vec<Arc<Compiled>>,
}

/// What a limit or a budget applies to: every selector given must match.
#[derive(Debug, Clone, Copy)]
pub struct Selector<'a> {
    pub route: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub owner: Option<&'a str>,
    /// An opaque token's id.
    pub token: Option<&'a str>,
    /// A client id of Sluice's own issuer.
    pub app: Option<&'a str>,
    /// An MCP server's name: such a selector matches that server's requests only, and MCP
    /// requests match only such selectors.
    pub mcp_server: Option<&'a str>,
}

impl Selector<'_> {
    /// Each selector reads the one part of the principal's identity it names: an owner is an
    /// owner of opaque tokens (never a JWT claim), a token its id (never its name), an app a
    /// client of Sluice's own issuer.
    pub fn matches(&self, at: At<'_>, principal: &Principal) -> bool {
        self.mcp_server == at.mcp_server
            && self.route.is_none_or(|r| r == at.route)
            && self.provider.is_none_or(|p| p == at.provider)
            && self.owner.is_none_or(|o| principal.owner_name() == Some(o))
            && self
                .token
                .is_none_or(|t| principal.token_id.as_deref() == Some(t))
            && self.app.is_none_or(|a| principal.app() == Some(a))
    }
}

/// The entry of `holder` in a per-holder cache (limits' counters, budgets' spend): looked up
/// by `&str`, so the key is allocated only when the holder is new.
pub fn of_holder<V: Clone + Send + Sync + 'static>(
    cache: &moka::sync::Cache<Box<str>, V>,
    holder: &str,
    make: impl FnOnce() -> V,
) -> V {
    if let Some(v) = cache.get(holder) {
        return v;
    }
    cache.get_with(Box::from(holder), make)
}

/// The holder of a client address's counters: `source:` and the address (an IPv6 client's
/// /64, as one host may hold a whole /64), or `source:unknown` for a non-IP peer.
fn source_holder(source: Option<std::net::IpAddr>) -> String {
    match source.map(crate::client_address::source_key) {
        Some(ip) => format!("source:{ip}"),
        None => "source:unknown".to_owned(),
    }
}

/// Whose counters a request uses under `per`: `None` for the shared ones (and for `source`,
/// which is no part of the principal: limits take it from `At`).
pub fn holder(per: Per, principal: &Principal) -> Option<&str> {
    match per {
        Per::All | Per::Source => None,
        // The principal's one rendering: a token with an owner is its owner's, so `principal`
        // and `owner` count the same; a principal without an owner is its own owner.
        Per::Principal | Per::Owner => Some(&principal.key),
        Per::Token => Some(&principal.credential),
    }
}

/// Where a request goes: its route's prefix and its provider's name.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    pub route: &'a str,
    pub provider: &'a str,
    /// An MCP server's request (route and provider are then empty).
    pub mcp_server: Option<&'a str>,
    /// A request to one of Sluice's own endpoints (route and provider are then empty).
    pub endpoint: Option<spec::Endpoint>,
    /// The client's address.
    pub source: Option<std::net::IpAddr>,
}

/// What admission took: released (concurrency) and settled (tokens) when dropped or finished.
#[derive(Debug, Default)]
pub struct Grant {
    held: Vec<Held>,
}

#[derive(Debug)]
struct Held {
    counters: Arc<Counters>,
    concurrent: bool,
    /// Tokens debited so far (the reservation), replaced by the real usage at the end.
    tokens: Option<u64>,
}

impl Drop for Grant {
    fn drop(&mut self) {
        for h in &self.held {
            if h.concurrent {
                h.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// Grants compare by what they hold (admission results in tests).
impl PartialEq for Grant {
    fn eq(&self, other: &Grant) -> bool {
        self.held.len() == other.held.len()
            && self
                .held
                .iter()
                .zip(&other.held)
                .all(|(a, b)| Arc::ptr_eq(&a.counters, &b.counters))
    }
}

impl Grant {
    /// Whether any limit counts this request's tokens (the answer's usage must be read).
    pub fn counts_tokens(&self) -> bool {
        self.held.iter().any(|h| h.tokens.is_some())
    }

    /// Reserves `tokens` (the request's `max_tokens` and prompt estimate) against every token
    /// allowance, until the answer's usage replaces them.
    pub fn reserve(&mut self, tokens: u64, now_ns: u64) {
        for h in &mut self.held {
            if let (Some(rate), Some(debited)) = (h.counters.tokens.as_ref(), h.tokens.as_mut()) {
                rate.debit(tokens as i64, now_ns, &h.counters);
                *debited += tokens;
            }
        }
    }

    /// The request's real token count: the difference to what was reserved is debited or
    /// given back.
    pub fn settle(&mut self, used: u64, now_ns: u64) {
        for h in &mut self.held {
            if let (Some(rate), Some(debited)) = (h.counters.tokens.as_ref(), h.tokens.as_mut()) {
                let difference = used as i64 - *debited as i64;
                if difference != 0 {
                    rate.debit(difference, now_ns, &h.counters);
                }
                *debited = used;
            }
        }
    }
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Admits a request or says which allowance refuses it (with the limit's name). Every
    /// matching limit is checked; what earlier limits took is given back when a later one
    /// refuses.
    pub async fn admit(
        &self,
        at: At<'_>,
        principal: &Principal,
        now_ns: u64,
    ) -> Result<Grant, (Arc<str>, Limited)> {
        let mut grant = Grant::default();
        for limit in &self.all {
            if !limit.matches(at, principal) {
                continue;
            }
            let counters = limit.counters_for(at, principal);
            if let Err(limited) = take(&limit.spec, &counters, now_ns).await {
                give_back(&grant, now_ns);
                return Err((limit.name.clone(), limited));
            }
            grant.held.push(Held {
                concurrent: limit.spec.concurrent.is_some(),
                tokens: limit.uses_tokens().then_some(0),
                counters,
            });
        }
        Ok(grant)
    }
}

/// Takes one request from each of a holder's allowances, all or nothing.
async fn take(spec: &Limit, c: &Counters, now_ns: u64) -> Result<(), Limited> {
    if let Some(cap) = spec.concurrent {
        // Shared: the others' requests in flight count too; Redis away: this replica's share.
        let (max, others) = match (shared::get(), &c.flight) {
            (Some(s), Some(f)) if s.is_up() => {
                let local = c.in_flight.load(Ordering::Acquire);
                (cap, f.others(s, local, now_ns).await)
            }
            (Some(s), _) => ((cap as u64).div_ceil(s.replicas()) as u32, 0),
            _ => (cap, 0),
        };
        let prev = c.in_flight.fetch_add(1, Ordering::AcqRel);
        if prev.saturating_add(others) >= max {
            c.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(Limited {
                dimension: Dimension::Concurrent,
                limit: cap as u64,
                period_s: 0,
                retry_after_ms: 1000,
                reset_ms: 1000,
            });
        }
    }
    let release_flight = || {
        if spec.concurrent.is_some() {
            c.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    };
    if let Some(tokens) = &c.tokens {
        if let Err(wait) = tokens.cell.check(now_ns) {
            release_flight();
            return Err(Limited {
                dimension: Dimension::Tokens,
                limit: tokens.cell.limit(),
                period_s: 60,
                retry_after_ms: wait.div_ceil(1_000_000),
                reset_ms: tokens.cell.reset_ns(now_ns).div_ceil(1_000_000),
            });
        }
    }
    let mut took_second = false;
    for (rate, period_s) in [(&c.per_second, 1), (&c.per_minute, 60)] {
        let Some(rate) = rate else { continue };
        if let Err(wait) = rate.take(now_ns).await {
            if took_second {
                if let Some(s) = &c.per_second {
                    s.give_back(now_ns);
                }
            }
            release_flight();
            return Err(Limited {
                dimension: Dimension::Requests,
                limit: rate.cell.limit(),
                period_s,
                retry_after_ms: wait.div_ceil(1_000_000),
                reset_ms: wait.max(rate.cell.reset_ns(now_ns)).div_ceil(1_000_000),
            });
        }
        took_second = period_s == 1;
    }
    Ok(())
}

/// Gives back the requests (and flight slots) a grant took, when a later limit refuses.
fn give_back(grant: &Grant, now_ns: u64) {
    for h in &grant.held {
        for rate in [&h.counters.per_second, &h.counters.per_minute]
            .into_iter()
            .flatten()
        {
            rate.give_back(now_ns);
        }
    }
    // Flight slots are released by the grant's `Drop`.
}

/// The counters of every limit, carried from one snapshot to the next.
#[derive(Debug, Default)]
pub struct Registry {
    live: Mutex<HashMap<String, Arc<Compiled>>>,
}

impl Registry {
    /// The snapshot's limits: an unchanged limit keeps its counters.
    pub fn build(&self, specs: &[Limit]) -> Limits {
        let Ok(mut live) = self.live.lock() else {
            return Limits {
                all: specs
                    .iter()
                    .map(|s| Arc::new(Compiled::new(s.clone())))
                    .collect(),
            };
        };
        let all: Vec<Arc<Compiled>> = specs
            .iter()
            .map(|s| match live.get(&s.name) {
                Some(c) if c.spec == *s => c.clone(),
                _ => Arc::new(Compiled::new(s.clone())),
            })
            .collect();
        live.clear();
        for c in &all {
            live.insert(c.spec.name.clone(), c.clone());
        }
        Limits { all }
    }
}

/// What a request is expected to use before its answer says: the output cap it asked for
/// (`max_tokens`; 1,000 when absent) and a prompt of one token per 4 bytes of body.
pub fn estimate(max_tokens: Option<u64>, body_bytes: u64) -> u64 {
    max_tokens.unwrap_or(1000).saturating_add(body_bytes / 4)
}

/// Monotonic nanoseconds since the process started (the limits' clock).
pub fn now_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

#[cfg(test)]
mod tests;
