//! Secret values and where they come from. A [`Secret`] never prints itself; `secret_ref`
//! resolution happens when a snapshot is built, never on the request path.

use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use subtle::ConstantTimeEq;

/// A secret value whose `Debug`/`Display` are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    pub fn new(value: impl Into<Box<str>>) -> Secret {
        Secret(value.into())
    }

    /// The plaintext, for the one place that must send it (the upstream header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the value: identifies a secret without revealing it.
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// `sk-…abcd`: enough for an operator to tell keys apart, never enough to use one.
    pub fn hint(&self) -> String {
        let value = &*self.0;
        let tail: String = value
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if value.chars().count() < 12 {
            return "…".to_owned();
        }
        format!("…{tail}")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a `secret_ref` could not be resolved; names the variable or file, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretRefError {
    #[error("expected `env:VAR` or `file:/path`, got `{0}`")]
    BadScheme(String),
    #[error("environment variable {0} is not set or empty")]
    EnvMissing(String),
    #[error("cannot read {0}: {1}")]
    FileUnreadable(String, String),
    #[error("{0} is empty")]
    FileEmpty(String),
}

/// Resolves `env:VAR` or `file:/path` (trailing newline trimmed, as Kubernetes mounts have one).
/// A relative `file:` path is taken from `base` (the config file's directory).
pub fn resolve(secret_ref: &str, base: &Path) -> Result<Secret, SecretRefError> {
    if let Some(var) = secret_ref.strip_prefix("env:") {
        return match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
            _ => Err(SecretRefError::EnvMissing(var.to_owned())),
        };
    }
    if let Some(path) = secret_ref.strip_prefix("file:") {
        let text = std::fs::read_to_string(base.join(path))
            .map_err(|e| SecretRefError::FileUnreadable(path.to_owned(), e.kind().to_string()))?;
        let value = text.trim();
        if value.is_empty() {
            return Err(SecretRefError::FileEmpty(path.to_owned()));
        }
        return Ok(Secret::new(value));
    }
    // Never echo the value: a literal key pasted here must not reach a log.
    let shown = match secret_ref.split_once(':') {
        Some((scheme, _)) if scheme.len() <= 16 => format!("{scheme}:…"),
        _ => "a value without a scheme (keys are never written in the config itself)".to_owned(),
    };
    Err(SecretRefError::BadScheme(shown))
}

/// Whether `name` is a secret's name: `UPPER_SNAKE_CASE`, at most 128 characters.
pub fn valid_name(name: &str) -> bool {
    name.len() <= 128
        && name.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Constant-time equality of two digests.
pub fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("sk-live-0123456789abcdef");
        assert!(!format!("{s:?}").contains("0123"));
        assert_eq!(s.hint(), "…cdef");
        assert_eq!(Secret::new("short").hint(), "…");
    }

    #[test]
    fn resolves_files_and_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "sk-abc\n").unwrap();
        let s = resolve(
            &format!("file:{}", path.display()),
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(s.expose(), "sk-abc");
        assert_eq!(
            resolve("env:SLUICE_TEST_SURELY_UNSET_VAR", Path::new(".")),
            Err(SecretRefError::EnvMissing(
                "SLUICE_TEST_SURELY_UNSET_VAR".into()
            ))
        );
        let bad = resolve("sk-literal-key-should-not-leak", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(!bad.contains("literal"), "{bad}");
    }
}
