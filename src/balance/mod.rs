//! Weighted provider-key pools: the pick table is built once per snapshot (off the hot path) and
//! `pick()` is one atomic increment plus a table read, with per-key health checked lock-free.
//!
//! The table holds one full cycle of nginx's *smooth* weighted round-robin, so picks interleave
//! (weights 3:1 give A A B A, not A A A B) and every window of `sum(weights)` picks follows the
//! weights exactly. Keys with `weight: 0` (draining) or `enabled: false` are not in the table.

pub mod health;

pub use health::{BenchLimits, HealthRegistry, KeyHealth, KeyState};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Longest pick table kept; larger weight sums are scaled down proportionally.
const MAX_TABLE: u64 = 4096;

/// One member of a pool, as the pool needs it (the provider keeps the secret beside it).
#[derive(Debug, Clone)]
pub struct Member {
    pub weight: u32,
    pub enabled: bool,
    pub health: Arc<KeyHealth>,
    /// `hash_str` of the key's id: what rendezvous hashing ranks (stable across reloads and
    /// replicas, unlike an index).
    pub id_hash: u64,
}

impl Member {
    /// Serving (enabled, weight > 0) and healthy at `now_ms`.
    fn serves(&self, now_ms: u64) -> bool {
        self.enabled && self.weight > 0 && self.health.is_available(now_ms)
    }
}

#[derive(Debug)]
pub struct KeyPool {
    members: Vec<Member>,
    table: Box<[u32]>,
    cursor: AtomicUsize,
}

impl KeyPool {
    pub fn build(members: Vec<Member>) -> KeyPool {
        let table = smooth_table(&members);
        KeyPool {
            members,
            table: table.into_boxed_slice(),
            cursor: AtomicUsize::new(0),
        }
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// True when the pool has at least one key that can take new requests (weight > 0, enabled).
    pub fn is_serving(&self) -> bool {
        !self.table.is_empty()
    }

    /// The key a retry goes to: another healthy key when there is one, else `current` again.
    pub fn repick(&self, current: usize, now_ms: u64) -> usize {
        self.pick(now_ms, Some(current)).unwrap_or(current)
    }

    /// Whether a key other than `idx` could take new requests now (serving and healthy).
    pub fn others_available(&self, idx: usize, now_ms: u64) -> bool {
        self.members
            .iter()
            .enumerate()
            .any(|(i, m)| i != idx && m.serves(now_ms))
    }

    /// Whether any key could take new requests now; unlike `pick`, takes no turn.
    pub fn any_available(&self, now_ms: u64) -> bool {
        self.members.iter().any(|m| m.serves(now_ms))
    }

    /// Picks the next healthy key (index into `members`), skipping `exclude` (a key that just
    /// failed this request). `now_ms` is [`crate::clock::now_ms`] on the hot path, a fixed value in tests.
    pub fn pick(&self, now_ms: u64, exclude: Option<usize>) -> Option<usize> {
        let len = self.table.len();
        if len == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        // Walk at most one cycle: a healthy key is normally the first one looked at.
        for step in 0..len {
            let idx = self.table[(start.wrapping_add(step)) % len] as usize;
            if Some(idx) == exclude {
                continue;
            }
            if self.members[idx].health.is_available(now_ms) {
                return Some(idx);
            }
        }
        None
    }
}

impl KeyPool {
    /// The key of `principal` (its `hash_str`) by weighted rendezvous hashing: each serving,
    /// healthy key scores `weight / -ln(u)` with `u` uniform in (0, 1) from the principal and
    /// the key, and the highest wins. A principal keeps its key while that key serves; when it
    /// leaves, only its principals move, spread over the others by weight.
    pub fn pick_for(&self, principal: u64, now_ms: u64, exclude: Option<usize>) -> Option<usize> {
        let mut best: Option<(f64, usize)> = None;
        for (i, m) in self.members.iter().enumerate() {
            if Some(i) == exclude || !m.serves(now_ms) {
                continue;
            }
            let h = mix(principal ^ m.id_hash.rotate_left(17));
            // 53 random bits → (0, 1]; never 0, so the logarithm is finite.
            let u = ((h >> 11) + 1) as f64 / (1u64 << 53) as f64;
            let score = f64::from(m.weight) / -u.ln().min(-f64::MIN_POSITIVE);
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, i));
            }
        }
        best.map(|(_, i)| i)
    }
}

/// FNV-1a (64-bit) of a string: stable across processes and versions, for rendezvous hashing.
pub fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One cycle of smooth weighted round-robin over the members that take traffic.
fn smooth_table(members: &[Member]) -> Vec<u32> {
    let mut weights: Vec<u64> = members
        .iter()
        .map(|m| if m.enabled { u64::from(m.weight) } else { 0 })
        .collect();
    let divisor = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
    if divisor == 0 {
        return Vec::new();
    }
    for w in &mut weights {
        *w /= divisor;
    }
    let total: u64 = weights.iter().sum();
    if total > MAX_TABLE {
        // Keep every serving key in the table (at least weight 1) while bounding its size.
        for w in &mut weights {
            if *w > 0 {
                *w = (*w * MAX_TABLE / total).max(1);
            }
        }
    }
    let total: i64 = weights.iter().map(|w| *w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut table = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += *w as i64;
            if current[i] > current[best] || (weights[best] == 0 && *w > 0) {
                best = i;
            }
        }
        current[best] -= total;
        table.push(best as u32);
    }
    table
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests;
