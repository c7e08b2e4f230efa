//! Budgets (`budgets:`): spend caps per period in tokens and US dollars, checked at admission
//! and debited with what each answer's usage cost (`prices`). A budget used up refuses with
//! 429 `budget_exceeded` until its period ends; crossing its warning share counts
//! `sluice_budget_warnings_total` and writes an audit event once per period.
//!
//! `period: hours` is a rolling window of `window_hours` (the sliding window counter of
//! Cloudflare's and Redis's rate limiters): spend is counted in windows of that length, and
//! what counts at any moment is the current window's spend plus the previous window's, weighted
//! by how much of it still lies within the last `window_hours`. A used-up rolling budget
//! reopens as its oldest spend slides out, not all at once.
//!
//! Spend is kept per process beside the snapshot (a reload that keeps a budget keeps its
//! spend) and written to `data_dir/budgets.json` every few seconds, so a restart resumes the
//! month where it was.

pub mod prices;
pub mod spec;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit::Usage;
use crate::auth::Principal;
use crate::limits::{holder, At, Selector};
use crate::metrics::METRICS;
use crate::upstream::ProviderKind;
pub use prices::Prices;
use spec::{Budget, Period};

/// Where spend is kept between processes, under `data_dir`.
pub const FILE: &str = "budgets.json";

/// Micro-dollars in a dollar: spend is counted in integers.
const MICRO: f64 = 1_000_000.0;

pub use crate::error::Exceeded;

/// What one holder of a budget spent in the current period (and the one before, which a
/// rolling window still partly counts).
#[derive(Debug, Default)]
pub struct Spend {
    period: AtomicU64,
    tokens: AtomicU64,
    micro_usd: AtomicU64,
    prev_tokens: AtomicU64,
    prev_micro_usd: AtomicU64,
    warned: AtomicBool,
    /// With the shared backend: when this replica last read the other replicas' spend (ns).
    synced_ns: AtomicU64,
}

impl Spend {
    /// Starts the period `index` afresh if the spend is of an earlier one (which becomes the
    /// previous period when it was the one just before).
    fn roll(&self, index: u64) {
        let seen = self.period.load(Ordering::Acquire);
        if seen < index
            && self
                .period
                .compare_exchange(seen, index, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let (t, m) = match seen + 1 == index {
                true => (
                    self.tokens.swap(0, Ordering::AcqRel),
                    self.micro_usd.swap(0, Ordering::AcqRel),
                ),
                false => {
                    self.tokens.store(0, Ordering::Release);
                    self.micro_usd.store(0, Ordering::Release);
                    (0, 0)
                }
            };
            self.prev_tokens.store(t, Ordering::Release);
            self.prev_micro_usd.store(m, Ordering::Release);
            self.warned.store(false, Ordering::Release);
        }
    }

    pub fn tokens(&self) -> u64 {
        self.tokens.load(Ordering::Acquire)
    }

    pub fn usd(&self) -> f64 {
        self.micro_usd.load(Ordering::Acquire) as f64 / MICRO
    }
}

/// One budget as the request path uses it.
#[derive(Debug)]
pub struct Compiled {
    pub spec: Budget,
    /// `limits::shared::key_prefix` of the spec.
    key: String,
    cap_micro: Option<u64>,
    /// A rolling window's length in seconds (`period: hours`).
    rolling: Option<u64>,
    shared: Arc<Spend>,
    keyed: moka::sync::Cache<Box<str>, Arc<Spend>>,
}

impl Compiled {
    fn new(spec: Budget) -> Compiled {
        Compiled {
            key: crate::limits::shared::key_prefix("budget", &spec.name, &spec),
            cap_micro: spec.usd.map(|d| (d * MICRO).round() as u64),
            rolling: (spec.period == Period::Hours)
                .then(|| u64::from(spec.window_hours.unwrap_or(24).max(1)) * 3600),
            shared: Arc::default(),
            // A month's holders; forgotten after 40 days without a request.
            keyed: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(Duration::from_secs(40 * 86_400))
                .build(),
            spec,
        }
    }

    fn selector(&self) -> Selector<'_> {
        let s = &self.spec;
        Selector {
            route: s.route.as_deref(),
            provider: s.provider.as_deref(),
            owner: s.owner.as_deref(),
            token: s.token.as_deref(),
            app: s.app.as_deref(),
            mcp_server: None,
        }
    }

    fn spend_of(&self, principal: &Principal) -> Arc<Spend> {
        match holder(self.spec.per, principal) {
            None => self.shared.clone(),
            Some(key) => crate::limits::of_holder(&self.keyed, key, Arc::default),
        }
    }

    /// The period `now` (Unix seconds) falls in, and when it ends.
    pub fn period(&self, now: u64) -> (u64, u64) {
        period(self.spec.period, self.spec.window_hours, now)
    }

    /// What counts against the caps at `now`: (tokens, micro-USD). A rolling window adds the
    /// share of the previous window still inside it.
    fn counted(&self, spend: &Spend, now: u64) -> (u64, u64) {
        let (t, m) = (spend.tokens(), spend.micro_usd.load(Ordering::Acquire));
        let Some(w) = self.rolling else {
            return (t, m);
        };
        let inside = 1.0 - (now % w) as f64 / w as f64;
        let prev = |a: &AtomicU64| (a.load(Ordering::Acquire) as f64 * inside) as u64;
        (
            t + prev(&spend.prev_tokens),
            m + prev(&spend.prev_micro_usd),
        )
    }

    fn used_up(&self, spend: &Spend, now: u64) -> bool {
        let (t, m) = self.counted(spend, now);
        self.spec.tokens.is_some_and(|cap| t >= cap) || self.cap_micro.is_some_and(|cap| m >= cap)
    }

    /// When a used-up budget admits again: its period's end, or for a rolling window the
    /// moment enough spend has slid out of it.
    fn reopens_at(&self, spend: &Spend, now: u64, end: u64) -> u64 {
        let Some(w) = self.rolling else {
            return end;
        };
        let start = end - w;
        let mut at = now;
        let caps = [
            (self.spec.tokens, &spend.tokens, &spend.prev_tokens),
            (self.cap_micro, &spend.micro_usd, &spend.prev_micro_usd),
        ];
        for (cap, cur, prev) in caps {
            let Some(cap) = cap else { continue };
            let (cur, prev) = (cur.load(Ordering::Acquire), prev.load(Ordering::Acquire));
            // prev × (1 − t/w) + cur < cap within this window, or after it cur × (1 − t/w) < cap.
            let when = if cur < cap {
                let need = 1.0 - (cap - cur) as f64 / prev.max(1) as f64;
                start + (need.max(0.0) * w as f64).ceil() as u64 + 1
            } else {
                let need = 1.0 - cap as f64 / cur.max(1) as f64;
                end + (need.max(0.0) * w as f64).ceil() as u64 + 1
            };
            at = at.max(when);
        }
        at
    }

    /// Every holder's spend in the current period (for the file and the API).
    fn snapshot(&self) -> BTreeMap<String, SavedSpend> {
        let mut out = BTreeMap::new();
        let mut put = |holder: &str, s: &Spend| {
            out.insert(
                holder.to_owned(),
                SavedSpend {
                    period: s.period.load(Ordering::Acquire),
                    tokens: s.tokens(),
                    micro_usd: s.micro_usd.load(Ordering::Acquire),
                    prev_tokens: s.prev_tokens.load(Ordering::Acquire),
                    prev_micro_usd: s.prev_micro_usd.load(Ordering::Acquire),
                },
            );
        };
        put("*", &self.shared);
        for (k, s) in self.keyed.iter() {
            put(&k, &s);
        }
        out
    }
}

/// The period index and its end (Unix seconds): UTC days, UTC calendar months, or windows of
/// `window_hours` counted from the Unix epoch.
pub fn period(kind: Period, window_hours: Option<u32>, now: u64) -> (u64, u64) {
    match kind {
        Period::Day => (now / 86_400, (now / 86_400 + 1) * 86_400),
        Period::Hours => {
            let w = u64::from(window_hours.unwrap_or(24).max(1)) * 3600;
            (now / w, (now / w + 1) * w)
        }
        Period::Month => {
            let t = time::OffsetDateTime::from_unix_timestamp(now as i64)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let (year, month) = (t.year(), t.month());
            let (next_year, next_month) = match month {
                time::Month::December => (year + 1, time::Month::January),
                m => (year, m.next()),
            };
            let end = time::Date::from_calendar_date(next_year, next_month, 1)
                .map(|d| d.midnight().assume_utc().unix_timestamp() as u64)
                .unwrap_or(now + 31 * 86_400);
            (year as u64 * 12 + month as u64, end)
        }
    }
}

/// Every budget of a snapshot, and the price table.
#[derive(Debug, Default)]
pub struct Budgets {
    pub all: Vec<Arc<Compiled>>,
    pub prices: Prices,
}

/// What admission found: the spends a request's usage goes to.
#[derive(Debug, Default)]
pub struct Charge {
    held: Vec<(Arc<Compiled>, Arc<Spend>)>,
}

/// Charges compare by the spends they hold (admission results in tests).
impl PartialEq for Charge {
    fn eq(&self, other: &Charge) -> bool {
        self.held.len() == other.held.len()
            && self
                .held
                .iter()
                .zip(&other.held)
                .all(|(a, b)| Arc::ptr_eq(&a.1, &b.1))
    }
}

impl Charge {
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// A budget crossed its warning share: what the audit event says.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub budget: String,
    pub holder: Option<String>,
    pub share: f64,
}

impl Budgets {
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Refuses a request whose budget is used up; else the spends it will be charged to.
    pub fn check(
        &self,
        at: At<'_>,
        principal: &Principal,
        now: u64,
    ) -> Result<Charge, (String, Exceeded)> {
        let mut charge = Charge::default();
        for b in &self.all {
            if !b.selector().matches(at, principal) {
                continue;
            }
            let spend = b.spend_of(principal);
            let (index, end) = b.period(now);
            spend.roll(index);
            share(b, &spend, principal, (index, end), (0, 0), now);
            if b.used_up(&spend, now) {
                METRICS
                    .limited
                    .with_label_values(&[&b.spec.name, "budget_exceeded"])
                    .inc();
                return Err((
                    b.spec.name.clone(),
                    Exceeded {
                        resets_at: b.reopens_at(&spend, now, end),
                        now,
                    },
                ));
            }
            charge.held.push((b.clone(), spend));
        }
        Ok(charge)
    }

    /// Charges a finished request's usage; returns the budgets whose warning share it crossed.
    pub fn charge(
        &self,
        charge: &Charge,
        provider: (&str, ProviderKind),
        model: Option<&str>,
        usage: &Usage,
        principal: &Principal,
        now: u64,
    ) -> Vec<Warning> {
        let tokens = usage.input + usage.output + usage.cache_write;
        let micro = self
            .prices
            .cost_micro_usd(provider.0, provider.1, model, usage);
        let mut warnings = Vec::new();
        for (b, spend) in &charge.held {
            let (index, end) = b.period(now);
            spend.roll(index);
            spend.tokens.fetch_add(tokens, Ordering::AcqRel);
            spend.micro_usd.fetch_add(micro, Ordering::AcqRel);
            share(b, spend, principal, (index, end), (tokens, micro), now);
            let (t, m) = b.counted(spend, now);
            let share = f64::max(
                b.spec
                    .tokens
                    .map_or(0.0, |cap| t as f64 / cap.max(1) as f64),
                b.cap_micro.map_or(0.0, |cap| m as f64 / cap.max(1) as f64),
            );
            if share >= b.spec.warn_at && !spend.warned.swap(true, Ordering::AcqRel) {
                METRICS
                    .budget_warnings
                    .with_label_values(&[&b.spec.name])
                    .inc();
                warnings.push(Warning {
                    budget: b.spec.name.clone(),
                    holder: holder(b.spec.per, principal).map(str::to_owned),
                    share,
                });
            }
        }
        warnings
    }
}

/// With the shared backend (`server.limits_backend`), a budget's spend is the sum over replicas
/// in Redis: each charge adds to it, and admission re-reads it at most once a second per holder;
/// every answer raises this replica's view to the shared total. Without it, nothing happens.
fn share(
    b: &Arc<Compiled>,
    spend: &Arc<Spend>,
    principal: &Principal,
    (index, end): (u64, u64),
    add: (u64, u64),
    now: u64,
) {
    let Some(shared) = crate::limits::shared::get() else {
        return;
    };
    let mono = crate::limits::now_ns();
    if add == (0, 0) {
        let last = spend.synced_ns.load(Ordering::Acquire);
        if mono.saturating_sub(last) < 1_000_000_000
            || spend
                .synced_ns
                .compare_exchange(last, mono, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
    }
    let holder = holder(b.spec.per, principal).unwrap_or("*");
    let key = format!("{}:{holder}:{index}", b.key);
    // A rolling window also counts part of the window before.
    let prev = b
        .rolling
        .map(|_| format!("{}:{holder}:{}", b.key, index.saturating_sub(1)));
    let spend = spend.clone();
    let ttl = end.saturating_sub(now) + 86_400 + b.rolling.unwrap_or(0);
    shared.budget_spend((key, prev), add, ttl, move |(t, m), (pt, pm)| {
        if spend.period.load(Ordering::Acquire) == index {
            spend.tokens.fetch_max(t, Ordering::AcqRel);
            spend.micro_usd.fetch_max(m, Ordering::AcqRel);
            spend.prev_tokens.fetch_max(pt, Ordering::AcqRel);
            spend.prev_micro_usd.fetch_max(pm, Ordering::AcqRel);
        }
    });
}

/// The budgets' spend, carried from one snapshot to the next and to the next process.
#[derive(Debug, Default)]
pub struct Registry {
    live: Mutex<HashMap<String, Arc<Compiled>>>,
    /// Spend read from `budgets.json` at start, handed to the budgets as they are built.
    saved: Mutex<Saved>,
}

/// `budgets.json`: budget name → holder (`*` for `per: all`) → spend.
type Saved = BTreeMap<String, BTreeMap<String, SavedSpend>>;

/// One holder's spend in the file (files of earlier versions hold `[period, tokens, micro]`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SavedSpend {
    period: u64,
    tokens: u64,
    micro_usd: u64,
    #[serde(default)]
    prev_tokens: u64,
    #[serde(default)]
    prev_micro_usd: u64,
}

impl Registry {
    /// The snapshot's budgets: an unchanged budget keeps its spend.
    pub fn build(&self, specs: &[Budget], prices: Prices) -> Budgets {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        let all: Vec<Arc<Compiled>> = specs
            .iter()
            .map(|s| match live.get(&s.name) {
                Some(c) if c.spec == *s => c.clone(),
                _ => {
                    let c = Compiled::new(s.clone());
                    if let Some(holders) = saved.remove(&s.name) {
                        restore(&c, holders);
                    }
                    Arc::new(c)
                }
            })
            .collect();
        live.clear();
        for c in &all {
            live.insert(c.spec.name.clone(), c.clone());
        }
        Budgets { all, prices }
    }

    /// Reads `budgets.json` (missing or unreadable: nothing spent yet).
    pub fn load(&self, file: &Path) {
        let Ok(text) = std::fs::read_to_string(file) else {
            return;
        };
        match serde_json::from_str::<Saved>(&text) {
            Ok(saved) => *self.saved.lock().unwrap_or_else(|p| p.into_inner()) = saved,
            Err(e) => log::warn!("{}: not read ({e}); budgets start empty", file.display()),
        }
    }

    /// Writes every budget's spend to `file` (0600, replaced atomically).
    pub fn save(&self, file: &Path) -> anyhow::Result<()> {
        let all: Saved = {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            if live.is_empty() {
                return Ok(());
            }
            live.iter()
                .map(|(n, c)| (n.clone(), c.snapshot()))
                .collect()
        };
        crate::private::replace(file, &serde_json::to_vec(&all)?)
    }

    /// Each budget's spend counted now (its current period, for a rolling window with the
    /// previous one's share), for `per: all` budgets, or the total over holders (the API and
    /// `sluice budget list`).
    pub fn spent(&self, name: &str, now: u64) -> Option<(u64, f64)> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let c = live.get(name)?;
        let index = c.period(now).0;
        let (mut tokens, mut micro) = (0, 0);
        for (_, saved) in c.snapshot() {
            let spend = Spend::default();
            restore_spend(&spend, saved);
            spend.roll(index);
            if spend.period.load(Ordering::Acquire) == index {
                let (t, m) = c.counted(&spend, now);
                tokens += t;
                micro += m;
            }
        }
        Some((tokens, micro as f64 / MICRO))
    }
}

fn restore(c: &Compiled, holders: BTreeMap<String, SavedSpend>) {
    for (holder, saved) in holders {
        let spend = if holder == "*" {
            c.shared.clone()
        } else {
            crate::limits::of_holder(&c.keyed, &holder, Arc::default)
        };
        restore_spend(&spend, saved);
    }
}

fn restore_spend(spend: &Spend, s: SavedSpend) {
    spend.period.store(s.period, Ordering::Release);
    spend.tokens.store(s.tokens, Ordering::Release);
    spend.micro_usd.store(s.micro_usd, Ordering::Release);
    spend.prev_tokens.store(s.prev_tokens, Ordering::Release);
    spend
        .prev_micro_usd
        .store(s.prev_micro_usd, Ordering::Release);
}

#[cfg(test)]
mod tests;
