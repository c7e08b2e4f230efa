//! Trusted JWT issuers through the admin API.

use super::docs::Doc;
use super::*;

impl Doc for wire::Issuer {
    const PATH: &'static str = "/v1/issuers";
    const ONE: &'static str = "an issuer";
    const MANY: &'static str = "issuers";
    const SCHEMA: &'static str = "Issuer";
}
