//! Admin API roles and the permission each endpoint checks: one `Permission` type shared by the
//! router (each handler names one), the roles (an exhaustive decision per permission class)
//! and the OpenAPI table (`x-permission`). A misspelt permission does not compile.

use crate::config::wire::Role;

/// What a permission lets a role do, for deciding roles without listing every permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Reading metadata (never a secret value).
    Read,
    /// Changing what the gateway routes to and trusts (providers, routes, issuers, owners).
    Configure,
    /// Changing credentials: keys, secrets, tokens of owners without a role.
    Credentials,
    /// The revision feed (data planes).
    Feed,
}

macro_rules! permissions {
    ($($variant:ident = $name:literal, $class:ident;)*) => {
        /// Every permission an endpoint can require: `{resource}_{verb}` on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Permission {
            $($variant,)*
        }

        impl Permission {
            pub const ALL: &'static [Permission] = &[$(Permission::$variant,)*];

            /// The name in errors and in the OpenAPI document (`provider_create`).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Permission::$variant => $name,)*
                }
            }

            pub const fn class(self) -> Class {
                match self {
                    $(Permission::$variant => Class::$class,)*
                }
            }
        }
    };
}

permissions! {
    ProviderList = "provider_list", Read;
    ProviderGet = "provider_get", Read;
    ProviderCreate = "provider_create", Configure;
    ProviderUpdate = "provider_update", Configure;
    ProviderDelete = "provider_delete", Configure;
    KeyCreate = "key_create", Credentials;
    KeyUpdate = "key_update", Credentials;
    KeyDelete = "key_delete", Credentials;
    SecretList = "secret_list", Read;
    SecretGet = "secret_get", Read;
    SecretCreate = "secret_create", Credentials;
    SecretUpdate = "secret_update", Credentials;
    SecretDelete = "secret_delete", Credentials;
    TokenList = "token_list", Read;
    TokenCreate = "token_create", Credentials;
    TokenRevoke = "token_revoke", Credentials;
    TokenRotate = "token_rotate", Credentials;
    IssuerList = "issuer_list", Read;
    IssuerGet = "issuer_get", Read;
    IssuerCreate = "issuer_create", Configure;
    IssuerUpdate = "issuer_update", Configure;
    IssuerDelete = "issuer_delete", Configure;
    RouteList = "route_list", Read;
    RouteGet = "route_get", Read;
    RouteCreate = "route_create", Configure;
    RouteUpdate = "route_update", Configure;
    RouteDelete = "route_delete", Configure;
    OwnerList = "owner_list", Read;
    OwnerGet = "owner_get", Read;
    OwnerCreate = "owner_create", Configure;
    OwnerUpdate = "owner_update", Configure;
    OwnerDelete = "owner_delete", Configure;
    SnapshotRead = "snapshot_read", Feed;
}

/// The five permissions of a whole-document resource (providers, issuers, routes, owners).
#[derive(Debug, Clone, Copy)]
pub struct DocPermissions {
    pub list: Permission,
    pub get: Permission,
    pub create: Permission,
    pub update: Permission,
    pub delete: Permission,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `role` holds `permission`. Operators also face a per-target check on tokens (only
/// admins manage tokens of owners that hold a role): see the token handlers.
pub fn allows(role: Role, permission: Permission) -> bool {
    match (role, permission.class()) {
        (Role::Admin, _) => true,
        (Role::Operator, Class::Read | Class::Credentials) => true,
        (Role::Operator, Class::Configure | Class::Feed) => false,
        (Role::Viewer, Class::Read) => true,
        (Role::Viewer, Class::Configure | Class::Credentials | Class::Feed) => false,
        (Role::Dataplane, Class::Feed) => true,
        (Role::Dataplane, Class::Read | Class::Configure | Class::Credentials) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    #[test]
    fn roles() {
        assert!(Permission::ALL.iter().all(|p| allows(Role::Admin, *p)));
        assert!(allows(Role::Operator, SecretCreate) && allows(Role::Operator, TokenRotate));
        assert!(allows(Role::Operator, ProviderGet) && !allows(Role::Operator, ProviderCreate));
        assert!(!allows(Role::Operator, SnapshotRead) && !allows(Role::Operator, OwnerUpdate));
        assert!(allows(Role::Viewer, SecretList) && !allows(Role::Viewer, SecretCreate));
        assert!(!allows(Role::Viewer, SnapshotRead));
        assert!(allows(Role::Dataplane, SnapshotRead) && !allows(Role::Dataplane, TokenList));
    }

    #[test]
    fn names_are_resource_underscore_verb_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for p in Permission::ALL {
            let (resource, verb) = p.name().rsplit_once('_').expect("resource_verb");
            assert!(!resource.is_empty() && !verb.is_empty(), "{p}");
            assert!(seen.insert(p.name()), "{p} twice");
        }
    }
}
