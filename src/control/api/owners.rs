//! Owners through the admin API.

use super::docs::Doc;
use super::*;

impl Doc for wire::Owner {
    const PATH: &'static str = "/v1/owners";
    const ONE: &'static str = "an owner";
    const MANY: &'static str = "owners";
    const SCHEMA: &'static str = "Owner";
}
