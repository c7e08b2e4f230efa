//! The opaque token format: `sluice_<id>_<secret><check>`. The id (12) and secret (32) are base62 from
//! the OS CSPRNG; `check` is the CRC32 of everything before it in 6 base62 characters, so a
//! mistyped or truncated token is refused without a lookup and secret scanners can recognise one.
//! Only the id and SHA-256 of the secret are ever stored.

//! This file has no dependency on the rest of Sluice so the fuzz targets can build it alone.

use sha2::{Digest, Sha256};

pub const PREFIX: &str = "sluice_";
pub const ID_LEN: usize = 12;
pub const SECRET_LEN: usize = 32;
pub const CHECK_LEN: usize = 6;
/// `sluice_` + id + `_` + secret + check.
pub const TOKEN_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN + CHECK_LEN;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The parts of a well-formed token.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

/// Checks shape and checksum; `None` means malformed (no lookup is worth doing).
pub fn parse(token: &str) -> Option<Parsed<'_>> {
    // ASCII first: the byte offsets below must fall on character boundaries.
    if token.len() != TOKEN_LEN || !token.is_ascii() || !token.starts_with(PREFIX) {
        return None;
    }
    let body = &token[PREFIX.len()..];
    let (id, rest) = body.split_at(ID_LEN);
    let rest = rest.strip_prefix('_')?;
    let (secret, check) = rest.split_at(SECRET_LEN);
    let base62 = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !base62(id) || !base62(secret) || !base62(check) {
        return None;
    }
    let expected = checksum(&token[..TOKEN_LEN - CHECK_LEN]);
    if check.as_bytes() != expected {
        return None;
    }
    Some(Parsed { id, secret })
}

/// Whether a well-formed Sluice token (checksum and all) appears anywhere in `value`: joined
/// with other values, quoted, or inside a query string.
pub fn holds_token(value: &str) -> bool {
    value.match_indices(PREFIX).any(|(at, _)| {
        value
            .get(at..at + TOKEN_LEN)
            .is_some_and(|candidate| parse(candidate).is_some())
    })
}

/// SHA-256 of the secret part: what a token record stores.
pub fn secret_digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A new token and its id. The caller prints it once; only [`secret_digest`] is kept.
pub fn generate() -> Result<(String, String, [u8; 32]), getrandom::Error> {
    let id = random_base62(ID_LEN)?;
    let secret = random_base62(SECRET_LEN)?;
    let mut token = format!("{PREFIX}{id}_{secret}");
    let check = checksum(&token);
    token.push_str(std::str::from_utf8(&check).unwrap_or_default());
    let digest = secret_digest(&secret);
    Ok((token, id, digest))
}

#[cfg(test)]
pub fn checksum_for_tests(data: &str) -> String {
    String::from_utf8_lossy(&checksum(data)).into_owned()
}

fn checksum(data: &str) -> [u8; CHECK_LEN] {
    let mut n = u64::from(crc32fast::hash(data.as_bytes()));
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// Uniform base62 characters by rejection sampling (no modulo bias).
pub fn random_base62(len: usize) -> Result<String, getrandom::Error> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf)?;
        for b in buf {
            // 248 = 4 * 62: bytes at or above it would favour the first characters.
            if b < 248 && out.len() < len {
                out.push(BASE62[(b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_tokens_parse_and_any_typo_is_caught() {
        let (token, id, digest) = generate().unwrap();
        assert_eq!(token.len(), TOKEN_LEN);
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.id, id);
        assert_eq!(secret_digest(parsed.secret), digest);
        for i in PREFIX.len()..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(bytes).unwrap();
            if typo != token {
                assert!(parse(&typo).is_none(), "typo at {i} accepted");
            }
        }
        assert!(parse(&token[..token.len() - 1]).is_none());
        assert!(parse("sluice_").is_none());
    }

    #[test]
    fn tokens_are_distinct() {
        let a = generate().unwrap().0;
        let b = generate().unwrap().0;
        assert_ne!(a, b);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "sluice_\\PC{40,60}") {
            let _ = parse(&s);
        }

        #[test]
        fn parse_never_panics_on_near_tokens(s in "sluice_[0-9A-Za-z_]{40,50}") {
            let _ = parse(&s);
        }
    }
}
