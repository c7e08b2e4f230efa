//! Fuzz the JWT pre-parser (header `alg`/`kid`, claim `iss`, read before any trust): never
//! panics, bounded work, and `alg: none` is never passed on.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/auth/jwt_preparse.rs"]
mod jwt_preparse;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(pre) = jwt_preparse::preparse(s) {
        assert!(!pre.alg.eq_ignore_ascii_case("none"));
        assert!(jwt_preparse::looks_like_jwt(s));
    }
});
