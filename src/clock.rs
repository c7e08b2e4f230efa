//! The two clocks of the request path: a monotonic millisecond counter for key health and DNS
//! cache expiry, and Unix seconds for token expiry and `exp` claims.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the process started: cheap, monotonic and fits an atomic.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + advanced_ms()
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
        + advanced_ms()
}

/// How far the tests moved both clocks forward (`advance`): always 0 in release builds.
#[inline]
fn advanced_ms() -> u64 {
    #[cfg(debug_assertions)]
    {
        ADVANCED_MS.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(debug_assertions))]
    {
        0
    }
}

#[cfg(debug_assertions)]
static ADVANCED_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Debug builds started with `SLUICE_TEST_CLOCK=1` only (the admin listener's
/// `POST /_test/clock/advance?ms=N`): moves both clocks forward, so tests wait for a token to
/// near its expiry or a key's cool-down to end without sleeping. Whether it is on.
pub fn test_clock_enabled() -> bool {
    cfg!(debug_assertions) && std::env::var_os("SLUICE_TEST_CLOCK").is_some_and(|v| v == "1")
}

/// Moves both clocks `ms` forward (see `test_clock_enabled`); a no-op in release builds.
pub fn advance(ms: u64) {
    #[cfg(debug_assertions)]
    ADVANCED_MS.fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(debug_assertions))]
    let _ = ms;
}

/// Unix seconds as an RFC 3339 UTC timestamp (`2026-12-02T18:00:00Z`).
pub fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
        .to_string()
}
