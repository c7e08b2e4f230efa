//! Limits through the admin API.

use super::docs::Doc;
use super::*;

impl Doc for wire::Limit {
    const PATH: &'static str = "/v1/limits";
    const ONE: &'static str = "a limit";
    const MANY: &'static str = "limits";
    const SCHEMA: &'static str = "Limit";
}
