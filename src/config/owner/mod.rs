//! Owners: who tokens belong to, and which admin-API role each holds. The owner as written is
//! `wire`.

pub mod wire;

use std::collections::HashMap;

use crate::config::wire as config_wire;
use crate::config::ConfigError;

/// Every owner by name; names must be unique and usable in principal renderings.
pub(crate) fn index<'a>(
    owners: &'a [config_wire::Owner],
    errors: &mut Vec<ConfigError>,
) -> HashMap<&'a str, &'a config_wire::Owner> {
    let mut index = HashMap::new();
    for (i, o) in owners.iter().enumerate() {
        let config_wire::Owner {
            name,
            id,
            enabled: _,
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
        if !crate::auth::valid_principal_name(name) {
            errors.push(ConfigError::at(
                format!("owners[{i}].name"),
                format!("`{name}` is not an owner name: 1 to 128 letters, digits and `-_.@+`"),
            ));
        } else if index.insert(name.as_str(), o).is_some() {
            errors.push(ConfigError::at(
                format!("owners[{i}].name"),
                format!("owner `{name}` is repeated"),
            ));
        }
        if id
            .as_deref()
            .is_some_and(|id| id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            errors.push(ConfigError::at(
                format!("owners[{i}].id"),
                "an owner id is letters and digits (the control plane gives one to each owner it creates)",
            ));
        }
    }
    index
}
