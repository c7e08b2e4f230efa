//! The built-in issuer's signing keys (ES256 or EdDSA): generated here, the private half sealed under
//! the master key in the store (resources of kind `signing_key`, never written in the clear),
//! the public half (a JWK) published to every data plane with the configuration. A new key is
//! published before it signs: tokens are signed by the newest key that has been published for
//! `PUBLISH_DELAY`, so data planes know it before its first token arrives; old keys stay
//! published until they are removed by a rotation that finds them past every token's lifetime.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;

use super::crypto::MasterKey;
use super::store::{Op, Store, StoreError};
use crate::config::stored::Resource;
use crate::config::wire::SigningAlgorithm;

pub use crate::config::stored::SIGNING_KEY;
/// How long a new key is published before it signs.
pub const PUBLISH_DELAY_SECONDS: u64 = 60;
/// The longest lifetime of a token the built-in issuer signs.
pub const MAX_TOKEN_SECONDS: u64 = 24 * 3600;

/// A signing key as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyDoc {
    pub kid: String,
    pub alg: String,
    pub created_at: u64,
    /// The public key (RFC 7517), what data planes and the JWKS publish.
    pub jwk: Value,
    /// The PKCS #8 private key (DER, base64), sealed under the master key with `signing_key/{kid}` bound.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sealed: String,
}

impl KeyDoc {
    /// A new key: P-256 for `ES256`, Ed25519 for `EdDSA`.
    pub fn generate(master: &MasterKey, now: u64, alg: SigningAlgorithm) -> anyhow::Result<KeyDoc> {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let rng = ring::rand::SystemRandom::new();
        // The public members, in the lexicographic order of the RFC 7638 thumbprint, and the
        // PKCS #8 private key.
        let (members, pkcs8) = match alg {
            SigningAlgorithm::ES256 => {
                let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &rng,
                )
                .map_err(|_| anyhow::anyhow!("P-256 key generation failed"))?;
                let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8.as_ref(),
                    &rng,
                )
                .map_err(|e| anyhow::anyhow!("P-256 key: {e}"))?;
                let raw = ring::signature::KeyPair::public_key(&pair).as_ref();
                anyhow::ensure!(
                    raw.len() == 65 && raw[0] == 4,
                    "unexpected P-256 public key"
                );
                let (x, y) = (b64(&raw[1..33]), b64(&raw[33..65]));
                (json!({"crv": "P-256", "kty": "EC", "x": x, "y": y}), pkcs8)
            }
            SigningAlgorithm::EdDSA => {
                let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| anyhow::anyhow!("Ed25519 key generation failed"))?;
                let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                    .map_err(|e| anyhow::anyhow!("Ed25519 key: {e}"))?;
                let x = b64(ring::signature::KeyPair::public_key(&pair).as_ref());
                (json!({"crv": "Ed25519", "kty": "OKP", "x": x}), pkcs8)
            }
        };
        // Written in the thumbprint's member order (and serde_json orders maps by key): the
        // canonical form, no spaces.
        let kid = b64(&sha2::Sha256::digest(members.to_string().as_bytes()));
        let mut jwk = members;
        jwk["kid"] = kid.clone().into();
        jwk["alg"] = alg.as_str().into();
        jwk["use"] = "sig".into();
        let der = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
        let sealed = master.seal(&seal_name(&kid), &der)?;
        Ok(KeyDoc {
            jwk,
            kid,
            alg: alg.as_str().into(),
            created_at: now,
            sealed,
        })
    }

    /// The private key, opened, ready to sign.
    pub fn signer(&self, master: &MasterKey) -> anyhow::Result<Signer> {
        let der = master.open(&seal_name(&self.kid), &self.sealed)?;
        let der = base64::engine::general_purpose::STANDARD.decode(der.expose())?;
        let bad = |e: ring::error::KeyRejected| anyhow::anyhow!("signing key `{}`: {e}", self.kid);
        let rng = ring::rand::SystemRandom::new();
        let pair = match self.alg.as_str() {
            "ES256" => SigningPair::Es256(
                ring::signature::EcdsaKeyPair::from_pkcs8(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &der,
                    &rng,
                )
                .map_err(bad)?,
            ),
            "EdDSA" => SigningPair::Ed25519(
                ring::signature::Ed25519KeyPair::from_pkcs8(&der).map_err(bad)?,
            ),
            other => anyhow::bail!("signing key `{}`: unknown algorithm `{other}`", self.kid),
        };
        Ok(Signer {
            kid: self.kid.clone(),
            pair,
            rng,
        })
    }

    /// The document without its sealed private half (what leaves the control plane).
    pub fn public(&self) -> KeyDoc {
        KeyDoc {
            sealed: String::new(),
            ..self.clone()
        }
    }
}

enum SigningPair {
    Es256(ring::signature::EcdsaKeyPair),
    Ed25519(ring::signature::Ed25519KeyPair),
}

/// An opened signing key: signs JWS compact tokens with ring (ES256 as the fixed-size `r‖s`
/// signature JWS wants, several times faster than the pure-Rust P-256; or Ed25519).
pub struct Signer {
    pub kid: String,
    pair: SigningPair,
    rng: ring::rand::SystemRandom,
}

impl Signer {
    /// `claims` as a JWT with this key's `kid` and the given `typ`.
    pub fn sign(&self, claims: &Value, typ: &str) -> anyhow::Result<String> {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let alg = match self.pair {
            SigningPair::Es256(_) => "ES256",
            SigningPair::Ed25519(_) => "EdDSA",
        };
        let header = json!({"alg": alg, "typ": typ, "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = match &self.pair {
            SigningPair::Es256(pair) => pair
                .sign(&self.rng, input.as_bytes())
                .map_err(|_| anyhow::anyhow!("signing failed"))?
                .as_ref()
                .to_vec(),
            SigningPair::Ed25519(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
        };
        Ok(format!("{input}.{}", b64(&signature)))
    }
}

fn seal_name(kid: &str) -> String {
    format!("{SIGNING_KEY}/{kid}")
}

/// The stored signing keys, oldest first.
pub fn keys_of(resources: &[Resource]) -> Vec<KeyDoc> {
    let mut keys: Vec<KeyDoc> = resources
        .iter()
        .filter(|r| r.kind == SIGNING_KEY)
        .filter_map(|r| serde_json::from_value(r.body.clone()).ok())
        .collect();
    keys.sort_by_key(|k| k.created_at);
    keys
}

/// The key that signs now: the newest one published for `PUBLISH_DELAY_SECONDS`, else (a new
/// deployment's first key) the oldest.
pub fn signing(keys: &[KeyDoc], now: u64) -> Option<&KeyDoc> {
    keys.iter()
        .rev()
        .find(|k| k.created_at + PUBLISH_DELAY_SECONDS <= now)
        .or_else(|| keys.first())
}

/// The key that signs now, opened (the store's keys read and the newest published one unsealed).
pub async fn current_signer(
    store: &dyn Store,
    master: &MasterKey,
    now: u64,
) -> anyhow::Result<Signer> {
    let keys = keys_of(&store.list(SIGNING_KEY).await?);
    signing(&keys, now)
        .ok_or_else(|| anyhow::anyhow!("the issuer has no signing key"))?
        .signer(master)
}

/// Whether the scheduled rotation is due: the newest key is `rotate_after` seconds old (0:
/// never).
pub fn rotation_due(keys: &[KeyDoc], now: u64, rotate_after: u64) -> bool {
    rotate_after > 0
        && keys
            .last()
            .is_some_and(|k| k.created_at.saturating_add(rotate_after) <= now)
}

/// An access token's claims: who it is for (`client_id`, also `sub` unless given), where it
/// may be used (`aud`: an agent environment's invoke URL) and for how long.
pub struct AccessToken<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub client_id: &'a str,
    pub audience: &'a str,
    pub scope: &'a str,
    pub agent: &'a str,
    pub env: &'a str,
    pub lifetime: u64,
}

impl AccessToken<'_> {
    /// The claims, with a fresh random `jti`.
    pub fn claims(&self, now: u64) -> anyhow::Result<Value> {
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
        Ok(json!({
            "iss": self.issuer,
            "sub": self.subject,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.lifetime,
            "jti": hex::encode(jti),
            "client_id": self.client_id,
            "scope": self.scope,
            "agent": self.agent,
            "env": self.env,
        }))
    }
}

/// Creates the first signing key when the store has none (another replica may win the race).
pub async fn ensure(
    store: &dyn Store,
    master: &MasterKey,
    now: u64,
    alg: SigningAlgorithm,
) -> anyhow::Result<()> {
    if !store.list(SIGNING_KEY).await?.is_empty() {
        return Ok(());
    }
    let doc = KeyDoc::generate(master, now, alg)?;
    let op = Op::Create {
        kind: SIGNING_KEY.into(),
        name: doc.kid.clone(),
        body: serde_json::to_value(&doc)?,
    };
    match store.apply(&[op]).await {
        Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A rotation: a new key, and the removal of keys that neither sign nor can have signed a
/// token still alive (older than the key that signed before the previous rotation, by more than
/// the longest token lifetime).
pub fn rotation(
    keys: &[KeyDoc],
    master: &MasterKey,
    now: u64,
    alg: SigningAlgorithm,
) -> anyhow::Result<Vec<Op>> {
    // Strictly newer than every key, even within the same second (the order decides which
    // key signs).
    let newest = keys.last().map_or(0, |k| k.created_at + 1);
    let new = KeyDoc::generate(master, now.max(newest), alg)?;
    let mut ops = vec![Op::Create {
        kind: SIGNING_KEY.into(),
        name: new.kid.clone(),
        body: serde_json::to_value(&new)?,
    }];
    let current = signing(keys, now).map(|k| k.kid.clone());
    // A key retired by a later key more than the longest token lifetime ago signs nothing alive.
    for (i, k) in keys.iter().enumerate() {
        let retired_at = keys
            .get(i + 1)
            .map(|next| next.created_at + PUBLISH_DELAY_SECONDS);
        let expired = retired_at.is_some_and(|t| t + MAX_TOKEN_SECONDS < now);
        if expired && current.as_deref() != Some(k.kid.as_str()) {
            ops.push(Op::Delete {
                kind: SIGNING_KEY.into(),
                name: k.kid.clone(),
            });
        }
    }
    Ok(ops)
}

/// An OAuth app (client credentials) subscribed to one agent environment, as stored: the
/// secret only sealed under the master key (`oauth_app/{client_id}` bound).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppDoc {
    pub client_id: String,
    pub name: String,
    pub agent: String,
    pub env: String,
    pub created_by: String,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sealed: String,
    /// Bumped by each regeneration.
    pub secret_version: u32,
}

impl AppDoc {
    /// A new app of `agent` × `env` (client id `{agent}-{env}-{random}`) with its secret (the
    /// plaintext, shown once).
    pub fn create(
        agent: &str,
        env: &str,
        name: String,
        created_by: String,
        master: &MasterKey,
        now: u64,
    ) -> anyhow::Result<(AppDoc, String)> {
        AppDoc {
            client_id: new_client_id(agent, env)?,
            name,
            agent: agent.to_owned(),
            env: env.to_owned(),
            created_by,
            created_at: now,
            sealed: String::new(),
            secret_version: 0,
        }
        .with_new_secret(master)
    }

    /// The operation that stores it.
    pub fn store_op(&self, create: bool) -> anyhow::Result<Op> {
        let (kind, name, body) = (
            APP.to_owned(),
            self.client_id.clone(),
            serde_json::to_value(self)?,
        );
        Ok(if create {
            Op::Create { kind, name, body }
        } else {
            Op::Update { kind, name, body }
        })
    }

    /// A new secret for the app: the plaintext (shown once) and the document holding it sealed.
    pub fn with_new_secret(mut self, master: &MasterKey) -> anyhow::Result<(AppDoc, String)> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        self.sealed = master.seal(&app_seal_name(&self.client_id), &secret)?;
        self.secret_version += 1;
        Ok((self, secret))
    }

    /// Whether `presented` is the app's secret (constant time).
    pub fn secret_matches(&self, master: &MasterKey, presented: &str) -> bool {
        let Ok(secret) = master.open(&app_seal_name(&self.client_id), &self.sealed) else {
            return false;
        };
        let a = sha2::Sha256::digest(secret.expose().as_bytes());
        let b = sha2::Sha256::digest(presented.as_bytes());
        subtle::ConstantTimeEq::ct_eq(a.as_slice(), b.as_slice()).into()
    }

    /// What the API shows (never the secret).
    pub fn shown(&self) -> Value {
        json!({
            "client_id": self.client_id,
            "name": self.name,
            "agent": self.agent,
            "env": self.env,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "secret_version": self.secret_version,
        })
    }
}

fn app_seal_name(client_id: &str) -> String {
    format!("{APP}/{client_id}")
}

pub use crate::config::stored::{APP, REVOKED};

/// `created_by` of the app provisioned when an environment turns `auth: oauth` on.
pub const PROVISIONED: &str = "provisioned";

/// A client id: `{agent}-{env}-{8 random hex}`.
fn new_client_id(agent: &str, env: &str) -> anyhow::Result<String> {
    let mut raw = [0u8; 4];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
    Ok(format!("{agent}-{env}-{}", hex::encode(raw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sign_and_verify_and_stay_sealed() {
        let master = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        for (alg, jwt_alg) in [
            (SigningAlgorithm::ES256, jsonwebtoken::Algorithm::ES256),
            (SigningAlgorithm::EdDSA, jsonwebtoken::Algorithm::EdDSA),
        ] {
            let key = KeyDoc::generate(&master, 1000, alg).unwrap();
            assert!(!key.sealed.contains("PRIVATE"), "sealed");
            assert!(key.public().sealed.is_empty());
            assert_eq!(key.jwk["alg"], alg.as_str());
            let claims = json!({"sub": "a", "exp": 4_000_000_000u64});
            let token = key
                .signer(&master)
                .unwrap()
                .sign(&claims, "at+jwt")
                .unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
            assert_eq!(header.alg, jwt_alg);
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk.clone()).unwrap();
            let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
            let mut v = jsonwebtoken::Validation::new(jwt_alg);
            v.validate_aud = false;
            assert!(jsonwebtoken::decode::<Value>(&token, &decoding, &v).is_ok());
            let other = MasterKey::from_bytes(&[8u8; 32]).unwrap();
            assert!(
                key.signer(&other).is_err(),
                "opened with another master key"
            );
        }
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of its Ed25519 key.
        let members = json!({"crv": "Ed25519", "kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let kid = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(members.to_string().as_bytes()));
        assert_eq!(kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn scheduled_rotation_is_due_after_the_newest_key_ages() {
        let master = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let keys = vec![KeyDoc::generate(&master, 1000, SigningAlgorithm::ES256).unwrap()];
        assert!(!rotation_due(&keys, 1000 + 99, 100));
        assert!(rotation_due(&keys, 1000 + 100, 100));
        assert!(!rotation_due(&keys, u64::MAX, 0), "0: only by command");
        assert!(
            !rotation_due(&[], 1000, 100),
            "no key yet: `ensure` makes one"
        );
    }

    #[test]
    fn new_keys_are_published_before_they_sign() {
        let master = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let a = KeyDoc::generate(&master, 1000, SigningAlgorithm::ES256).unwrap();
        let b = KeyDoc::generate(&master, 5000, SigningAlgorithm::EdDSA).unwrap();
        let keys = vec![a.clone(), b.clone()];
        assert_eq!(
            signing(&keys[..1], 1000).unwrap().kid,
            a.kid,
            "the first key at once"
        );
        assert_eq!(signing(&keys, 5000 + 10).unwrap().kid, a.kid);
        assert_eq!(
            signing(&keys, 5000 + PUBLISH_DELAY_SECONDS).unwrap().kid,
            b.kid
        );
        // a is kept while tokens it signed may live, dropped after.
        let soon = rotation(&keys, &master, 5000 + 100, SigningAlgorithm::ES256).unwrap();
        assert_eq!(soon.len(), 1, "only the new key");
        let late = rotation(
            &keys,
            &master,
            5000 + PUBLISH_DELAY_SECONDS + MAX_TOKEN_SECONDS + 1,
            SigningAlgorithm::ES256,
        )
        .unwrap();
        assert!(
            late.iter()
                .any(|op| matches!(op, Op::Delete { name, .. } if *name == a.kid)),
            "{late:?}"
        );
    }
}
