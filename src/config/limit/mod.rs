//! Limits: rate and concurrency allowances per token, owner, route or app. The limit as
//! written is `wire`; the request path's counters are `crate::limits`.

pub mod wire;

use std::collections::HashSet;

use crate::config::route::Route;
use crate::config::ConfigError;

/// Names unique and well formed, at least one allowance each and none zero, the route a route.
pub(crate) fn check_all(limits: &[wire::Limit], routes: &[Route], errors: &mut Vec<ConfigError>) {
    let mut names = HashSet::new();
    for (i, l) in limits.iter().enumerate() {
        let at = |field: &str| format!("limits[{i}].{field}");
        let well_formed = !l.name.is_empty()
            && l.name.len() <= 64
            && l.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !well_formed {
            errors.push(ConfigError::at(
                at("name"),
                format!(
                    "`{}` is not a limit name (lowercase letters, digits, hyphens)",
                    l.name
                ),
            ));
        } else if !names.insert(l.name.as_str()) {
            errors.push(ConfigError::at(
                at("name"),
                format!("limit `{}` is declared twice", l.name),
            ));
        }
        let allowances = [
            ("requests_per_second", l.requests_per_second.map(u64::from)),
            ("requests_per_minute", l.requests_per_minute.map(u64::from)),
            ("tokens_per_minute", l.tokens_per_minute),
            ("concurrent", l.concurrent.map(u64::from)),
        ];
        if allowances.iter().all(|(_, v)| v.is_none()) {
            errors.push(ConfigError::at(
                at("name"),
                "a limit needs at least one of requests_per_second, requests_per_minute, \
                 tokens_per_minute, concurrent",
            ));
        }
        for (field, v) in allowances {
            if v == Some(0) {
                errors.push(ConfigError::at(
                    at(field),
                    "must be at least 1 (to refuse everything, remove the route or revoke the token)",
                ));
            }
        }
        if let Some(p) = &l.provider {
            if !routes.iter().any(|r| r.provider.name == *p) {
                errors.push(ConfigError::at(
                    at("provider"),
                    format!("no route serves a provider named `{p}`"),
                ));
            }
        }
        if let Some(route) = &l.route {
            if !routes.iter().any(|r| !r.intercept && r.prefix == *route) {
                errors.push(ConfigError::at(
                    at("route"),
                    format!("no route has the prefix `{route}`"),
                ));
            }
        }
    }
}
