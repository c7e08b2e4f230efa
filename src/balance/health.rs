//! Per-key health that outlives snapshots: a reload keeps a key's cool-down or quarantine unless
//! its secret changed (a rotated secret deserves a fresh start).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::upstream::ProviderKind;

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
    /// Rejections in a row that did not (yet) bench the key; reset by a success.
    strikes: AtomicU32,
}

impl KeyHealth {
    pub fn is_available(&self, now_ms: u64) -> bool {
        self.blocked_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    /// Milliseconds the key stays out of rotation from `now_ms` (0: available).
    pub fn blocked_for_ms(&self, now_ms: u64) -> u64 {
        self.blocked_until_ms
            .load(Ordering::Relaxed)
            .saturating_sub(now_ms)
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
        self.strikes.store(0, Ordering::Relaxed);
    }

    /// The upstream accepted the key.
    fn succeeded(&self) {
        if self.strikes.load(Ordering::Relaxed) != 0 {
            self.strikes.store(0, Ordering::Relaxed);
        }
    }

    /// Counts one rejection; returns how many there have been in a row.
    fn strike(&self) -> u32 {
        self.strikes
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }

    /// Applies what one upstream answer said about the key. `others_available` says whether
    /// another key of the pool could take its traffic; it and the clock are asked only when
    /// the answer may bench the key (a success reads neither). Returns the key's new state.
    ///
    /// A key is quarantined only when the answer says the *key* is bad; with no other key
    /// left, or when the answer is unclear, only after [`CONFIRMATIONS`] such answers in a
    /// row — so no single response, whatever a client made the upstream say, benches the
    /// last healthy key.
    pub fn apply(
        &self,
        verdict: Verdict,
        others_available: impl FnOnce(u64) -> bool,
        now_ms: impl FnOnce() -> u64,
        quarantine: Duration,
        cooldown: Duration,
    ) -> KeyState {
        match verdict {
            Verdict::Accepted => {
                self.succeeded();
                KeyState::Healthy
            }
            Verdict::NotTheKey => KeyState::Healthy,
            Verdict::RateLimited(wait) => {
                self.block(KeyState::CoolingDown, now_ms(), wait.unwrap_or(cooldown));
                KeyState::CoolingDown
            }
            Verdict::KeyRejected | Verdict::Unclear => {
                let strikes = self.strike();
                let now = now_ms();
                let sure = verdict == Verdict::KeyRejected && others_available(now);
                if sure || strikes >= CONFIRMATIONS {
                    self.block(KeyState::Quarantined, now, quarantine);
                    KeyState::Quarantined
                } else {
                    KeyState::Healthy
                }
            }
        }
    }
}

/// Rejections in a row that bench a key without a clear "invalid key" answer, or the last key.
pub const CONFIRMATIONS: u32 = 3;

/// Longest `Retry-After` honoured for a 429 (a key is not benched for longer than this).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What an upstream answer says about the key that was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the key works.
    Accepted,
    /// The provider's own "this API key is invalid" error.
    KeyRejected,
    /// 401/403 for something else (an organization or project the key is not in, a model the
    /// account may not use, a region): the key is fine for other requests.
    NotTheKey,
    /// 401/403 whose body says neither (unreadable, compressed in an unknown way, unfamiliar).
    Unclear,
    /// 429, with the `Retry-After` wait when there is one.
    RateLimited(Option<Duration>),
}

impl Verdict {
    /// Whether the answer's body is needed to decide (then [`Verdict::of_body`] decides).
    /// Google answers an invalid API key with 400.
    pub fn needs_body(kind: ProviderKind, status: u16) -> bool {
        matches!(status, 401 | 403) || (kind == ProviderKind::Gemini && status == 400)
    }

    /// The verdict for answers decided by their head alone; `None` means "no news" (other
    /// statuses say nothing about the key).
    pub fn of_head(status: u16, retry_after: Option<&str>) -> Option<Verdict> {
        match status {
            200..=299 => Some(Verdict::Accepted),
            429 => Some(Verdict::RateLimited(retry_after.and_then(|v| {
                let secs = v.trim().parse::<u64>().ok()?;
                Some(Duration::from_secs(secs.max(1)).min(MAX_RETRY_AFTER))
            }))),
            _ => None,
        }
    }

    /// The verdict for a 401/403 from its (decoded) body, in the provider's error shape.
    pub fn of_body(kind: ProviderKind, status: u16, body: &[u8]) -> Verdict {
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Verdict::Unclear;
        };
        let error = &json["error"];
        let field = |name: &str| error[name].as_str().unwrap_or("").to_ascii_lowercase();
        let (code, kind_field, message) = (field("code"), field("type"), field("message"));
        // Headers a client can set that make a good key fail (OpenAI's organization and
        // project headers are stripped in centralized mode; this covers other spellings).
        let scoped = ["organization", "project", "workspace", "region", "country"]
            .iter()
            .any(|w| code.contains(w) || message.contains(w));
        match kind {
            ProviderKind::Anthropic => match kind_field.as_str() {
                "authentication_error" => Verdict::KeyRejected,
                "permission_error" | "invalid_request_error" | "not_found_error" => {
                    Verdict::NotTheKey
                }
                _ => Verdict::Unclear,
            },
            // Google's structured reason (`details[].reason`, an ErrorInfo), never the message.
            ProviderKind::Gemini => {
                let reasons: Vec<&str> = error["details"]
                    .as_array()
                    .map(|d| d.iter().filter_map(|i| i["reason"].as_str()).collect())
                    .unwrap_or_default();
                let key_refused = [
                    "API_KEY_INVALID",
                    "API_KEY_EXPIRED",
                    "API_KEY_SERVICE_BLOCKED",
                ];
                // Google refuses a bad API key with one of those reasons; its 401s are about
                // OAuth credentials (a client's `access_token`), never the key.
                if reasons.iter().any(|r| key_refused.contains(r)) {
                    Verdict::KeyRejected
                } else {
                    Verdict::NotTheKey
                }
            }
            // Azure answers a wrong key with 401 and the code "401" ("Access denied due to
            // invalid subscription key…"); a 403 is a role or network rule, not the key.
            ProviderKind::AzureOpenAi => match (status, code.as_str()) {
                (401, "401") => Verdict::KeyRejected,
                (403, _) => Verdict::NotTheKey,
                _ => Verdict::Unclear,
            },
            ProviderKind::OpenAi => match code.as_str() {
                "invalid_api_key" => Verdict::KeyRejected,
                _ if scoped || status == 403 => Verdict::NotTheKey,
                _ => Verdict::Unclear,
            },
            // An HTTP API's refusals may be about anything: a 401 counts against the key only
            // as an unclear strike, a 403 never.
            ProviderKind::Http if status == 403 => Verdict::NotTheKey,
            ProviderKind::Http => Verdict::Unclear,
            // Only a structured code decides: a message that merely mentions "api key" may be
            // the upstream echoing what a client sent (issue 27, finding 9).
            ProviderKind::OpenAiCompatible => match code.as_str() {
                "invalid_api_key" if !scoped => Verdict::KeyRejected,
                _ if scoped || status == 403 => Verdict::NotTheKey,
                _ => Verdict::Unclear,
            },
        }
    }
}

/// (provider name, key id).
type KeyName = (String, String);

/// A key's health, the fingerprint of the secret it was recorded for, and its provider's
/// longest benches.
type Tracked = ([u8; 32], Arc<KeyHealth>, BenchLimits);

/// The longest a provider's key may be benched: what another replica may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchLimits {
    pub quarantine: Duration,
    pub cooldown: Duration,
}

impl BenchLimits {
    /// The longest bench in `state` (a 429's `Retry-After` may ask for up to
    /// [`MAX_RETRY_AFTER`]).
    pub fn most(&self, state: KeyState) -> Duration {
        match state {
            KeyState::Healthy => Duration::ZERO,
            KeyState::Quarantined => self.quarantine,
            KeyState::CoolingDown => self.cooldown.max(MAX_RETRY_AFTER),
        }
    }
}

/// Health of every key, by provider name, key id and a fingerprint of the secret.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    entries: Mutex<HashMap<KeyName, Tracked>>,
}

impl HealthRegistry {
    /// The health record for a key, kept from the previous snapshot if the secret is unchanged.
    pub fn get(
        &self,
        provider: &str,
        key: &str,
        fingerprint: [u8; 32],
        limits: BenchLimits,
    ) -> Arc<KeyHealth> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let slot = entries
            .entry((provider.to_owned(), key.to_owned()))
            .or_insert_with(|| (fingerprint, Arc::default(), limits));
        if slot.0 != fingerprint {
            *slot = (fingerprint, Arc::default(), limits);
        }
        slot.2 = limits;
        slot.1.clone()
    }

    /// A configured key's secret fingerprint, health record and longest benches.
    pub fn find(&self, provider: &str, key: &str) -> Option<Tracked> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(&(provider.to_owned(), key.to_owned())).cloned()
    }

    /// Forgets keys that are no longer configured.
    pub fn retain(&self, live: &[KeyName]) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|k, _| live.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Duration = Duration::from_secs(300);
    const C: Duration = Duration::from_secs(30);

    #[test]
    fn bodies_name_the_key_or_not() {
        use ProviderKind::*;
        let openai = |code: &str| {
            format!(
                r#"{{"error":{{"message":"m","type":"invalid_request_error","code":"{code}"}}}}"#
            )
        };
        let cases: &[(ProviderKind, u16, String, Verdict)] = &[
            (OpenAi, 401, openai("invalid_api_key"), Verdict::KeyRejected),
            (OpenAi, 401, openai("mismatched_organization"), Verdict::NotTheKey),
            (OpenAi, 401, openai("mismatched_project"), Verdict::NotTheKey),
            (OpenAi, 403, openai("unsupported_country_region_territory"), Verdict::NotTheKey),
            (OpenAi, 401, "<html>nope</html>".into(), Verdict::Unclear),
            (OpenAi, 401, openai("something_new"), Verdict::Unclear),
            (
                Anthropic,
                401,
                r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#.into(),
                Verdict::KeyRejected,
            ),
            (
                Anthropic,
                403,
                r#"{"type":"error","error":{"type":"permission_error","message":"no"}}"#.into(),
                Verdict::NotTheKey,
            ),
            (
                OpenAiCompatible,
                401,
                r#"{"error":{"message":"Invalid API key","code":"invalid_api_key"}}"#.into(),
                Verdict::KeyRejected,
            ),
            // A message alone never names the key: one strike of three at most.
            (
                OpenAiCompatible,
                401,
                r#"{"error":{"message":"Invalid API key: sk-what-the-client-sent"}}"#.into(),
                Verdict::Unclear,
            ),
            (OpenAiCompatible, 403, r#"{"error":{"message":"nope"}}"#.into(), Verdict::NotTheKey),
        ];
        for (kind, status, body, want) in cases {
            assert_eq!(
                Verdict::of_body(*kind, *status, body.as_bytes()),
                *want,
                "{kind:?} {status} {body}"
            );
        }
    }

    /// Azure's and Google's answers: only their own invalid-key codes and reasons bench a key.
    #[test]
    fn azure_and_google_bodies_name_the_key_or_not() {
        use ProviderKind::*;
        let gemini = |status: &str, reason: &str| {
            format!(
                r#"{{"error":{{"code":400,"message":"m","status":"{status}","details":[{{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"{reason}"}}]}}}}"#
            )
        };
        let cases: &[(ProviderKind, u16, String, Verdict)] = &[
            (AzureOpenAi, 401, r#"{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint."}}"#.into(), Verdict::KeyRejected),
            (AzureOpenAi, 403, r#"{"error":{"code":"PermissionDenied","message":"m"}}"#.into(), Verdict::NotTheKey),
            (AzureOpenAi, 401, r#"{"error":{"code":"InvalidAuthenticationToken","message":"m"}}"#.into(), Verdict::Unclear),
            (Gemini, 400, gemini("INVALID_ARGUMENT", "API_KEY_INVALID"), Verdict::KeyRejected),
            (Gemini, 403, gemini("PERMISSION_DENIED", "API_KEY_SERVICE_BLOCKED"), Verdict::KeyRejected),
            (Gemini, 400, gemini("INVALID_ARGUMENT", "BAD_REQUEST"), Verdict::NotTheKey),
            (Gemini, 403, gemini("PERMISSION_DENIED", "ACCESS_DENIED"), Verdict::NotTheKey),
            (Gemini, 401, gemini("UNAUTHENTICATED", "ACCESS_TOKEN_TYPE_UNSUPPORTED"), Verdict::NotTheKey),
            (Gemini, 401, "<html>nope</html>".into(), Verdict::Unclear),
            // The message mentions the key; only the structured reason decides.
            (
                Gemini,
                400,
                r#"{"error":{"code":400,"message":"API key not valid API_KEY_INVALID","status":"INVALID_ARGUMENT"}}"#.into(),
                Verdict::NotTheKey,
            ),
        ];
        for (kind, status, body, want) in cases {
            assert_eq!(
                Verdict::of_body(*kind, *status, body.as_bytes()),
                *want,
                "{kind:?} {status} {body}"
            );
        }
    }

    #[test]
    fn heads_decide_alone_or_ask_for_the_body() {
        use ProviderKind::*;
        assert_eq!(
            Verdict::of_head(429, Some("7")),
            Some(Verdict::RateLimited(Some(Duration::from_secs(7))))
        );
        assert_eq!(
            Verdict::of_head(429, Some("999999")),
            Some(Verdict::RateLimited(Some(MAX_RETRY_AFTER)))
        );
        assert_eq!(
            Verdict::of_head(429, Some("soon")),
            Some(Verdict::RateLimited(None))
        );
        assert_eq!(Verdict::of_head(204, None), Some(Verdict::Accepted));
        assert_eq!(Verdict::of_head(500, None), None);
        assert!(Verdict::needs_body(OpenAi, 401) && Verdict::needs_body(OpenAi, 403));
        assert!(!Verdict::needs_body(OpenAi, 404) && !Verdict::needs_body(OpenAi, 400));
        assert!(Verdict::needs_body(Gemini, 400));
    }

    #[test]
    fn the_last_key_needs_confirmations() {
        let h = KeyHealth::default();
        // A clear rejection benches a key at once when another can take over.
        assert_eq!(
            h.apply(Verdict::KeyRejected, |_| true, || 0, Q, C),
            KeyState::Quarantined
        );
        assert_eq!(h.state(1), KeyState::Quarantined);

        let last = KeyHealth::default();
        for _ in 1..CONFIRMATIONS {
            assert_eq!(
                last.apply(Verdict::KeyRejected, |_| false, || 0, Q, C),
                KeyState::Healthy
            );
        }
        // A success in between starts the count again.
        last.apply(Verdict::Accepted, |_| false, || 0, Q, C);
        for _ in 1..CONFIRMATIONS {
            assert_eq!(
                last.apply(Verdict::Unclear, |_| true, || 0, Q, C),
                KeyState::Healthy
            );
        }
        assert_eq!(
            last.apply(Verdict::Unclear, |_| true, || 0, Q, C),
            KeyState::Quarantined
        );
        assert!(!last.is_available(Q.as_millis() as u64 - 1));
        assert!(last.is_available(Q.as_millis() as u64));

        let fine = KeyHealth::default();
        for _ in 0..10 {
            assert_eq!(
                fine.apply(Verdict::NotTheKey, |_| false, || 0, Q, C),
                KeyState::Healthy
            );
        }
        assert_eq!(
            fine.apply(Verdict::RateLimited(None), |_| false, || 0, Q, C),
            KeyState::CoolingDown
        );
        assert!(fine.is_available(C.as_millis() as u64));
    }
}
