//! Secret values at rest: AES-256-GCM under the master key, a fresh 96-bit nonce per value, the
//! secret's name as associated data (a ciphertext moved to another name does not open).
//!
//! The master key comes from `SLUICE_MASTER_KEY` (32 bytes, base64 or hex) or from
//! `data_dir/master.key`, created 0600 on first run. Data planes never hold it: the revision
//! feed re-seals the gateway's secrets for each caller under a key derived from the token the
//! data plane presents (`feed_key`), and leaves every other secret out.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::Context;
use base64::Engine;
use std::path::Path;

use crate::secrets::Secret;

pub const MASTER_KEY_ENV: &str = "SLUICE_MASTER_KEY";
const NONCE_LEN: usize = 12;

pub struct MasterKey {
    cipher: Aes256Gcm,
    /// Root of the keys derived for other purposes (`derive`), never the key itself.
    root: [u8; 32],
    /// A revision feed's key (`feed_key`): its secrets are bound to their revision too.
    feed: bool,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<MasterKey> {
        anyhow::ensure!(bytes.len() == 32, "the master key must be 32 bytes");
        let cipher = Aes256Gcm::new_from_slice(bytes).context("master key")?;
        Ok(MasterKey {
            cipher,
            root: derive_root(bytes),
            feed: false,
        })
    }

    /// `SLUICE_MASTER_KEY`, else `data_dir/master.key` (created 0600 when missing).
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<MasterKey> {
        if let Ok(text) = std::env::var(MASTER_KEY_ENV) {
            return MasterKey::from_bytes(
                &decode_key(&text).with_context(|| {
                    format!("{MASTER_KEY_ENV} must be 32 bytes in base64 or hex")
                })?,
            );
        }
        let file = data_dir.join("master.key");
        if !file.exists() {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let text = base64::engine::general_purpose::STANDARD.encode(key);
            crate::private::write(&file, format!("{text}\n").as_bytes())?;
            log::info!(
                "created the master key {} (back it up: secrets cannot be read without it)",
                file.display()
            );
        }
        crate::private::check_not_shared(&file)?;
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        MasterKey::from_bytes(
            &decode_key(&text)
                .with_context(|| format!("{} is not a master key", file.display()))?,
        )
    }

    /// The key a revision feed is sealed with for the holder of `token`: SHA-256 over a domain
    /// tag and the token (256 bits of randomness, so no stretching is needed). The control
    /// plane derives it from the token a data plane presents; the data plane from its own.
    pub fn feed_key(token: &str) -> MasterKey {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"sluice revision feed v1\0")
            .chain_update(token.trim().as_bytes())
            .finalize();
        MasterKey {
            root: derive_root(&digest),
            cipher: Aes256Gcm::new(&digest),
            feed: true,
        }
    }

    /// What a gateway secret named `name` is sealed under in a store at `revision`: its name;
    /// in a revision feed also the revision, so a sealed value cannot be replayed into another
    /// revision's feed.
    pub fn secret_aad(&self, name: &str, revision: u64) -> String {
        if self.feed {
            format!("{name}\0revision {revision}")
        } else {
            name.to_owned()
        }
    }

    /// The revision feed's signing key: Ed25519 from the master key, so every control-plane
    /// replica sharing the master key signs alike (data planes pin its public half).
    pub fn feed_signer(&self) -> anyhow::Result<ring::signature::Ed25519KeyPair> {
        ring::signature::Ed25519KeyPair::from_seed_unchecked(
            &self.derive("revision feed signing v1"),
        )
        .map_err(|_| anyhow::anyhow!("feed signing key"))
    }

    /// A 256-bit key for `purpose` (MCP session tags, …): the same on every control-plane
    /// replica sharing the master key, useless for opening secrets.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::new()
            .chain_update(self.root)
            .chain_update(purpose.as_bytes())
            .finalize()
            .into()
    }

    /// `base64(nonce ‖ ciphertext ‖ tag)`.
    pub fn seal(&self, name: &str, value: &str) -> anyhow::Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    pub fn open(&self, name: &str, sealed: &str) -> anyhow::Result<Secret> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .context("not base64")?;
        anyhow::ensure!(bytes.len() > NONCE_LEN, "too short");
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("cannot decrypt secret `{name}` (wrong master key?)"))?;
        let text = String::from_utf8(plain).context("secret is not UTF-8")?;
        Ok(Secret::new(text))
    }
}

/// The signature header of a revision feed answer: Ed25519 over the body, base64.
pub const FEED_SIGNATURE: &str = "x-sluice-feed-signature";

/// What a feed answer's signature covers: the data plane's nonce for this request (so no
/// answer can be replayed to another request or data plane), the status, and the body (a
/// snapshot) or, for a 304, the revision asked after.
pub fn feed_message(nonce: &str, status: u16, body: &[u8]) -> Vec<u8> {
    let mut m = format!("sluice feed v2\n{nonce}\n{status}\n").into_bytes();
    m.extend_from_slice(body);
    m
}

/// A revision feed signing key's public half as data planes pin it: `ed25519:BASE64`.
pub fn feed_public_key(signer: &ring::signature::Ed25519KeyPair) -> String {
    use ring::signature::KeyPair;
    format!(
        "ed25519:{}",
        base64::engine::general_purpose::STANDARD.encode(signer.public_key().as_ref())
    )
}

/// Whether `key` is a feed key as `feed_public_key` writes it.
pub fn valid_feed_key(key: &str) -> bool {
    key.trim()
        .strip_prefix("ed25519:")
        .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k).ok())
        .is_some_and(|k| k.len() == 32)
}

/// Whether `signature` (base64) is `public_key`'s (`ed25519:BASE64`) over `body`.
pub fn feed_signed_by(public_key: &str, body: &[u8], signature: &str) -> bool {
    let engine = &base64::engine::general_purpose::STANDARD;
    let (Some(key), Ok(sig)) = (
        public_key
            .trim()
            .strip_prefix("ed25519:")
            .and_then(|k| engine.decode(k).ok()),
        engine.decode(signature.trim()),
    ) else {
        return false;
    };
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
        .verify(body, &sig)
        .is_ok()
}

fn derive_root(key: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::new()
        .chain_update(b"sluice derived keys v1\0")
        .chain_update(key)
        .finalize()
        .into()
}

fn decode_key(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() == 64 {
        if let Ok(bytes) = hex::decode(text) {
            return Some(bytes);
        }
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .filter(|b| b.len() == 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let key = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let sealed = key.seal("OPENAI_KEY", "sk-live-123").unwrap();
        assert!(!sealed.contains("sk-live"));
        assert_eq!(
            key.open("OPENAI_KEY", &sealed).unwrap().expose(),
            "sk-live-123"
        );
        assert_ne!(
            sealed,
            key.seal("OPENAI_KEY", "sk-live-123").unwrap(),
            "fresh nonce"
        );
        assert!(
            key.open("OTHER_NAME", &sealed).is_err(),
            "bound to its name"
        );
        let other = MasterKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(other.open("OPENAI_KEY", &sealed).is_err());
    }

    #[test]
    fn feeds_are_signed_and_their_secrets_bound_to_the_revision() {
        let master = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let signer = master.feed_signer().unwrap();
        let public = feed_public_key(&signer);
        let sig = base64::engine::general_purpose::STANDARD.encode(signer.sign(b"body"));
        assert!(feed_signed_by(&public, b"body", &sig));
        assert!(!feed_signed_by(&public, b"bodY", &sig));
        let rogue = MasterKey::from_bytes(&[8u8; 32])
            .unwrap()
            .feed_signer()
            .unwrap();
        assert!(!feed_signed_by(&feed_public_key(&rogue), b"body", &sig));
        // Replicas sharing the master key sign alike.
        let again = MasterKey::from_bytes(&[7u8; 32])
            .unwrap()
            .feed_signer()
            .unwrap();
        assert_eq!(feed_public_key(&again), public);

        let feed = MasterKey::feed_key("sluice_aaaa");
        let sealed = feed.seal(&feed.secret_aad("K", 4), "v").unwrap();
        assert!(feed.open(&feed.secret_aad("K", 4), &sealed).is_ok());
        assert!(feed.open(&feed.secret_aad("K", 5), &sealed).is_err());
        assert_eq!(master.secret_aad("K", 4), "K");
    }

    #[test]
    fn feed_keys_differ_per_token() {
        let a = MasterKey::feed_key("sluice_aaaa");
        let sealed = a.seal("K", "v").unwrap();
        assert_eq!(
            MasterKey::feed_key("sluice_aaaa\n")
                .open("K", &sealed)
                .unwrap()
                .expose(),
            "v"
        );
        assert!(MasterKey::feed_key("sluice_aaab")
            .open("K", &sealed)
            .is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        std::env::remove_var(MASTER_KEY_ENV);
        let a = MasterKey::load_or_create(dir.path()).unwrap();
        let sealed = a.seal("N", "v").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = MasterKey::load_or_create(dir.path()).unwrap();
        assert_eq!(b.open("N", &sealed).unwrap().expose(), "v");
        assert_eq!(decode_key(&"ab".repeat(32)).map(|k| k.len()), Some(32));
    }
}
