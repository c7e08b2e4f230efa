//! A budget and a model price as written (YAML `budgets:` / `prices:` or the admin API);
//! `config::budget` registers the budget as a kind.

use serde::{Deserialize, Serialize};

use crate::limits::spec::Per;

/// A spend cap over a period, in tokens and/or US dollars, on the requests its selectors match
/// (all of them; none: every request on a provider route). Used up, it refuses with 429
/// `budget_exceeded` until the period ends.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Lowercase letters, digits and hyphens.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// One budget for everything matched (`all`), or one per principal or per owner.
    #[serde(default)]
    pub per: Per,
    /// `day` or `month` (calendar, UTC), or `hours` for a rolling window of `window_hours`.
    #[serde(default)]
    pub period: Period,
    /// The rolling window's length (`period: hours`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_hours: Option<u32>,
    /// Input + output + cache-write tokens per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// US dollars per period, priced by `prices:` (and the shipped table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<f64>,
    /// Share of the budget at which a warning is counted and audited (default 0.8).
    #[serde(default = "default_warn_at")]
    pub warn_at: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    #[default]
    Day,
    Month,
    Hours,
}

fn default_warn_at() -> f64 {
    0.8
}

/// What a model costs, in US dollars per million tokens. `model` matches the model a request
/// names, or any model it is the longest prefix of (`gpt-4o` prices `gpt-4o-2024-08-06`);
/// `model: "*"` is the default price of models no entry names (and of requests whose model
/// could not be read), which otherwise cost nothing against a USD budget.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub model: String,
    /// Only for this provider's requests (default: any provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_read: f64,
    #[serde(default)]
    pub cache_write: f64,
}
