//! Budgets and prices: spend caps per period and what models cost. As written: `wire`; the
//! request path's spend: `crate::budgets`.

pub mod wire;

use std::collections::HashSet;

use crate::config::limit::{check_name, check_targets};
use crate::config::route::Route;
use crate::config::ConfigError;

/// Names unique and well formed, a cap each, shares and prices that make sense, selectors that
/// name a route or provider that exists.
pub(crate) fn check_all(
    budgets: &[wire::Budget],
    prices: &[wire::Price],
    routes: &[Route],
    errors: &mut Vec<ConfigError>,
) {
    let mut names = HashSet::new();
    for (i, b) in budgets.iter().enumerate() {
        let at = |field: &str| format!("budgets[{i}].{field}");
        check_name("budget", &b.name, &at("name"), &mut names, errors);
        if b.tokens.is_none() && b.usd.is_none() {
            errors.push(ConfigError::at(
                at("name"),
                "a budget needs `tokens`, `usd` or both",
            ));
        }
        if b.tokens == Some(0) {
            errors.push(ConfigError::at(at("tokens"), "must be at least 1"));
        }
        if b.usd.is_some_and(|d| !(d.is_finite() && d > 0.0)) {
            errors.push(ConfigError::at(at("usd"), "must be a positive amount"));
        }
        if !(b.warn_at > 0.0 && b.warn_at <= 1.0) {
            errors.push(ConfigError::at(at("warn_at"), "must be a share in (0, 1]"));
        }
        if b.per == crate::limits::spec::Per::Source {
            errors.push(ConfigError::at(
                at("per"),
                "spend is kept per principal, owner or token, not per client address",
            ));
        }
        match (b.period, b.window_hours) {
            (wire::Period::Hours, None | Some(0)) => errors.push(ConfigError::at(
                at("window_hours"),
                "`period: hours` needs window_hours (at least 1)",
            )),
            (wire::Period::Day | wire::Period::Month, Some(_)) => errors.push(ConfigError::at(
                at("window_hours"),
                "only for `period: hours`",
            )),
            _ => {}
        }
        check_targets(
            b.route.as_deref(),
            b.provider.as_deref(),
            routes,
            &at,
            errors,
        );
    }
    for (i, p) in prices.iter().enumerate() {
        let fields = [
            ("input", p.input),
            ("output", p.output),
            ("cache_read", p.cache_read),
            ("cache_write", p.cache_write),
        ];
        for (field, v) in fields {
            if !(v.is_finite() && v >= 0.0) {
                errors.push(ConfigError::at(
                    format!("prices[{i}].{field}"),
                    "must be a price in US dollars per million tokens (0 or more)",
                ));
            }
        }
        if p.model.is_empty() {
            errors.push(ConfigError::at(
                format!("prices[{i}].model"),
                "must name a model",
            ));
        }
    }
}
