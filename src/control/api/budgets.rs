//! Budgets through the admin API.

use super::docs::Doc;
use super::*;

impl Doc for wire::Budget {
    const PATH: &'static str = "/v1/budgets";
    const ONE: &'static str = "a budget";
    const MANY: &'static str = "budgets";
    const SCHEMA: &'static str = "Budget";
    /// `spent`: tokens and US dollars counted against the budget now, as this process counts
    /// them (with `server.limits_backend`, the replicas' shared totals).
    fn annotate(item: &mut Value, cp: &ControlPlane) {
        let Some(name) = item["name"].as_str() else {
            return;
        };
        if let Some((tokens, usd)) = cp.config.budgets.spent(name, crate::clock::unix_now()) {
            item["spent"] = json!({"tokens": tokens, "usd": usd});
        }
    }
}
