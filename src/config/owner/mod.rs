//! Owners: who tokens belong to, and which admin-API role each holds. The owner as written is
//! `wire`.

pub mod wire;

use std::collections::HashMap;

use crate::config::wire as config_wire;
use crate::config::ConfigError;

/// Whether each owner is enabled; names must be unique.
pub(crate) fn enabled<'a>(
    owners: &'a [config_wire::Owner],
    errors: &mut Vec<ConfigError>,
) -> HashMap<&'a str, bool> {
    let mut enabled = HashMap::new();
    for (i, o) in owners.iter().enumerate() {
        let config_wire::Owner {
            name,
            enabled: on,
            role: _,
            permissions,
        } = o;
        for (j, p) in permissions.iter().enumerate() {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                errors.push(ConfigError::at(
                    format!("owners[{i}].permissions[{j}]"),
                    format!("`{p}` is not a permission name (e.g. oauth_provider_attach)"),
                ));
            }
        }
        if name.is_empty() || enabled.insert(name.as_str(), *on).is_some() {
            errors.push(ConfigError::at(
                format!("owners[{i}].name"),
                format!("owner `{name}` is empty or repeated"),
            ));
        }
    }
    enabled
}
