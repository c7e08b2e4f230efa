//! Budgets and prices: spend caps per period and what models cost. As written: `wire`; the
//! request path's spend: `crate::budgets`.

pub mod wire;

use std::collections::HashSet;

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
        let well_formed = !b.name.is_empty()
            && b.name.len() <= 64
            && b.name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
        if !well_formed {
            errors.push(ConfigError::at(
                at("name"),
                format!(
                    "`{}` is not a budget name (lowercase letters, digits, hyphens)",
                    b.name
                ),
            ));
        } else if !names.insert(b.name.as_str()) {
            errors.push(ConfigError::at(
                at("name"),
                format!("budget `{}` is declared twice", b.name),
            ));
        }
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
        if let Some(route) = &b.route {
            if !routes.iter().any(|r| !r.intercept && r.prefix == *route) {
                errors.push(ConfigError::at(
                    at("route"),
                    format!("no route has the prefix `{route}`"),
                ));
            }
        }
        if let Some(p) = &b.provider {
            if !routes.iter().any(|r| r.provider.name == *p) {
                errors.push(ConfigError::at(
                    at("provider"),
                    format!("no route serves a provider named `{p}`"),
                ));
            }
        }
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
