//! Budgets through the admin API.

use super::docs::Doc;
use super::*;

impl Doc for wire::Budget {
    const PATH: &'static str = "/v1/budgets";
    const ONE: &'static str = "a budget";
    const MANY: &'static str = "budgets";
    const SCHEMA: &'static str = "Budget";
}
