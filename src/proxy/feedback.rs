//! What an upstream answer says about the pool key it was sent with. 2xx and 429 are decided
//! by the head; a 401/403 by its body (the provider's own "invalid key" error, or something
//! else), which is collected here as it streams to the client — nothing is held back.

use std::io::Read;

use crate::balance::health::Verdict;
use crate::clock::now_ms;
use crate::config::Provider;

/// At most this much of a 401/403 body is looked at (providers' errors are a few hundred bytes).
const MAX_BODY: usize = 8 * 1024;

/// A 401/403 waiting for its body.
#[derive(Debug)]
pub struct KeyAnswer {
    status: u16,
    encoding: Option<String>,
    body: Vec<u8>,
}

impl KeyAnswer {
    pub fn new(status: u16, content_encoding: Option<&str>) -> KeyAnswer {
        KeyAnswer {
            status,
            encoding: content_encoding
                .map(|e| e.trim().to_ascii_lowercase())
                .filter(|e| !e.is_empty() && e != "identity"),
            body: Vec::new(),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let room = MAX_BODY.saturating_sub(self.body.len());
        self.body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    /// The verdict, once the body is in (or cut short).
    pub fn verdict(&self, provider: &Provider) -> Verdict {
        match decode(self.encoding.as_deref(), &self.body) {
            Some(body) => Verdict::of_body(provider.kind, self.status, &body),
            None => Verdict::Unclear,
        }
    }
}

fn decode(encoding: Option<&str>, body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let limit = (MAX_BODY * 8) as u64;
    let read = match encoding {
        None => return Some(body.to_vec()),
        Some("gzip" | "x-gzip") => flate2::read::GzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out),
        Some("deflate") => flate2::read::ZlibDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out),
        Some(_) => return None,
    };
    // A body cut at MAX_BODY ends early; what was decoded may still be enough.
    match read {
        Ok(_) => Some(out),
        Err(_) if !out.is_empty() => Some(out),
        Err(_) => None,
    }
}

/// Applies a verdict to the key `key_idx` of `provider`, logging a key benched by it.
pub fn apply(provider: &Provider, key_idx: usize, verdict: Verdict) {
    let (Some(member), Some(key)) = (
        provider.pool.members().get(key_idx),
        provider.keys.get(key_idx),
    ) else {
        return;
    };
    let state = member.health.apply(
        verdict,
        |now| provider.pool.others_available(key_idx, now),
        now_ms,
        provider.quarantine,
        provider.cooldown,
    );
    if state != crate::balance::KeyState::Healthy {
        if let Some(shared) = crate::limits::shared::get() {
            let ms = member.health.blocked_for_ms(now_ms());
            let fingerprint = key.secret.fingerprint();
            shared.publish_health((&provider.name, &key.id, fingerprint), state, ms);
        }
    }
    if state == crate::balance::KeyState::Quarantined {
        log::warn!(
            "provider {} key {} ({}) was refused by the upstream ({verdict:?}): quarantined for {}s",
            provider.name,
            key.id,
            key.hint,
            provider.quarantine.as_secs()
        );
    }
}
