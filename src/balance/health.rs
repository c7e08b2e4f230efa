//! Per-key health that outlives snapshots: a reload keeps a key's cool-down or quarantine unless
//! its secret changed (a rotated secret deserves a fresh start).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Healthy,
    /// Upstream answered 429: out of rotation until `Retry-After`.
    CoolingDown,
    /// Upstream answered 401/403: the key itself is bad.
    Quarantined,
}

impl KeyState {
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyState::Healthy => "healthy",
            KeyState::CoolingDown => "cooling_down",
            KeyState::Quarantined => "quarantined",
        }
    }
}

#[derive(Debug, Default)]
pub struct KeyHealth {
    blocked_until_ms: AtomicU64,
    reason: AtomicU8,
}

impl KeyHealth {
    pub fn is_available(&self, now_ms: u64) -> bool {
        self.blocked_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    pub fn state(&self, now_ms: u64) -> KeyState {
        if self.is_available(now_ms) {
            return KeyState::Healthy;
        }
        match self.reason.load(Ordering::Relaxed) {
            2 => KeyState::Quarantined,
            _ => KeyState::CoolingDown,
        }
    }

    /// Takes the key out of rotation for `for_how_long` from `now_ms` (extends, never shortens).
    pub fn block(&self, state: KeyState, now_ms: u64, for_how_long: Duration) {
        let until = now_ms.saturating_add(for_how_long.as_millis() as u64);
        let reason = match state {
            KeyState::Healthy => return,
            KeyState::CoolingDown => 1,
            KeyState::Quarantined => 2,
        };
        self.reason.store(reason, Ordering::Relaxed);
        self.blocked_until_ms.fetch_max(until, Ordering::Relaxed);
    }
}

/// (provider name, key id).
type KeyName = (String, String);

/// A key's health and the fingerprint of the secret it was recorded for.
type Tracked = ([u8; 32], Arc<KeyHealth>);

/// Health of every key, by provider name, key id and a fingerprint of the secret.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    entries: Mutex<HashMap<KeyName, Tracked>>,
}

impl HealthRegistry {
    /// The health record for a key, kept from the previous snapshot if the secret is unchanged.
    pub fn get(&self, provider: &str, key: &str, fingerprint: [u8; 32]) -> Arc<KeyHealth> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let slot = entries
            .entry((provider.to_owned(), key.to_owned()))
            .or_insert_with(|| (fingerprint, Arc::default()));
        if slot.0 != fingerprint {
            *slot = (fingerprint, Arc::default());
        }
        slot.1.clone()
    }

    /// Forgets keys that are no longer configured.
    pub fn retain(&self, live: &[KeyName]) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|k, _| live.contains(k));
    }
}
