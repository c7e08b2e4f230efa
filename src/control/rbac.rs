//! Admin API roles and the named permission each endpoint checks.

use crate::config::wire::Role;

/// Every permission an endpoint can require: `{resource}_{verb}`.
pub const PERMISSIONS: &[&str] = &[
    "provider_list",
    "provider_get",
    "provider_create",
    "provider_update",
    "provider_delete",
    "key_create",
    "key_update",
    "key_delete",
    "secret_list",
    "secret_get",
    "secret_create",
    "secret_update",
    "secret_delete",
    "token_list",
    "token_create",
    "token_revoke",
    "token_rotate",
    "issuer_list",
    "issuer_get",
    "issuer_create",
    "issuer_update",
    "issuer_delete",
    "route_list",
    "route_get",
    "route_create",
    "route_update",
    "route_delete",
    "owner_list",
    "owner_get",
    "owner_create",
    "owner_update",
    "owner_delete",
    "snapshot_read",
];

pub fn allows(role: Role, permission: &str) -> bool {
    let (resource, verb) = permission.rsplit_once('_').unwrap_or((permission, ""));
    let read = matches!(verb, "list" | "get");
    match role {
        Role::Admin => true,
        Role::Operator => {
            matches!(resource, "key" | "secret" | "token") || (read && resource != "snapshot")
        }
        Role::Viewer => read,
        Role::Dataplane => permission == "snapshot_read",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        assert!(PERMISSIONS.iter().all(|p| allows(Role::Admin, p)));
        assert!(allows(Role::Operator, "secret_create") && allows(Role::Operator, "token_rotate"));
        assert!(
            allows(Role::Operator, "provider_get") && !allows(Role::Operator, "provider_create")
        );
        assert!(
            !allows(Role::Operator, "snapshot_read") && !allows(Role::Operator, "owner_update")
        );
        assert!(allows(Role::Viewer, "secret_list") && !allows(Role::Viewer, "secret_create"));
        assert!(!allows(Role::Viewer, "snapshot_read"));
        assert!(allows(Role::Dataplane, "snapshot_read") && !allows(Role::Dataplane, "token_list"));
    }
}
