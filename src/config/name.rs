//! The one rule for a resource's name (providers, OAuth providers, MCP servers, agents and
//! their environments, limits, budgets): it appears in URLs, metric labels, Redis keys and
//! logs, so 1 to 63 lowercase letters, digits and hyphens, not starting with a hyphen — and
//! unique in its list. (Issuer and owner names are part of principals: `auth` has their rule.)

use std::collections::HashSet;

use super::ConfigError;

/// Whether `name` follows the rule.
pub fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What is wrong with `name` as the name of a `kind`, with an example of a good one.
pub fn problem(kind: &str, name: &str, example: &str) -> String {
    format!(
        "`{name}` is not a {kind} name: 1 to 63 lowercase letters, digits and hyphens, not starting with a hyphen (e.g. `{example}`)"
    )
}

/// Checks one name of a list at `at` (the rule, then that `names` has not seen it); whether
/// it passed.
pub fn check_unique<'a>(
    (kind, example): (&str, &str),
    name: &'a str,
    at: &str,
    names: &mut HashSet<&'a str>,
    errors: &mut Vec<ConfigError>,
) -> bool {
    if !valid(name) {
        errors.push(ConfigError::at(at, problem(kind, name, example)));
        false
    } else if !names.insert(name) {
        errors.push(ConfigError::at(
            at,
            format!("{kind} `{name}` is declared twice"),
        ));
        false
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_rule() {
        for good in ["a", "openai-eu", "x9", &"a".repeat(63)] {
            assert!(super::valid(good), "{good}");
        }
        for bad in ["", "-a", "A", "a_b", "a.b", "a:b", &"a".repeat(64)] {
            assert!(!super::valid(bad), "{bad}");
        }
    }
}
