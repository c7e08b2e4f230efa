//! Admin API roles and the permission each endpoint checks: one `Permission` type shared by the
//! router (each handler names one), the roles (an exhaustive decision per permission class)
//! and the OpenAPI table (`x-permission`). A misspelt permission does not compile; a new
//! whole-document kind brings its five permissions with it.

use std::borrow::Cow;

use crate::config::kind::Kind;
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
    /// Letting a resource use another's credentials (a provider or MCP server referencing an
    /// OAuth provider): checked besides the resource's own create/update permission, and held
    /// apart from editing either, so that each can be granted alone.
    Attach,
    /// Credentials of `protected` (production) agent environments: apps, their secrets, test
    /// tokens. Admins only, unless named in an owner's `permissions`.
    Protected,
}

macro_rules! permissions {
    ($($variant:ident = $name:literal, $class:ident;)*) => {
        /// Every permission an endpoint can require: `{resource}_{verb}` on the wire. Those of
        /// the whole-document kinds (providers, routes, …) come with the kind (`Doc`); the
        /// others are listed here.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Permission {
            Doc(DocPermission),
            $($variant,)*
        }

        impl Permission {
            const FIXED: &'static [Permission] = &[$(Permission::$variant,)*];

            /// The name in errors and in the OpenAPI document (`provider_create`).
            pub fn name(self) -> Cow<'static, str> {
                match self {
                    Permission::Doc(d) => Cow::Owned(format!("{}_{}", d.kind, d.verb.name())),
                    $(Permission::$variant => Cow::Borrowed($name),)*
                }
            }

            pub const fn class(self) -> Class {
                match self {
                    Permission::Doc(d) => d.verb.class(),
                    $(Permission::$variant => Class::$class,)*
                }
            }
        }
    };
}

/// What a permission of a whole-document kind lets one do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocVerb {
    List,
    Get,
    Create,
    Update,
    Delete,
}

impl DocVerb {
    pub const ALL: [DocVerb; 5] = [
        DocVerb::List,
        DocVerb::Get,
        DocVerb::Create,
        DocVerb::Update,
        DocVerb::Delete,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            DocVerb::List => "list",
            DocVerb::Get => "get",
            DocVerb::Create => "create",
            DocVerb::Update => "update",
            DocVerb::Delete => "delete",
        }
    }

    const fn class(self) -> Class {
        match self {
            DocVerb::List | DocVerb::Get => Class::Read,
            DocVerb::Create | DocVerb::Update | DocVerb::Delete => Class::Configure,
        }
    }
}

/// A whole-document kind's permission. Its fields are private: it is made from a `Kind`
/// (`Permission::doc`), so it cannot name a kind that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DocPermission {
    kind: &'static str,
    verb: DocVerb,
}

impl Permission {
    /// `verb` on the whole-document kind `T`.
    pub const fn doc<T: Kind>(verb: DocVerb) -> Permission {
        Permission::Doc(DocPermission {
            kind: T::KIND,
            verb,
        })
    }

    /// Every permission: each registered document kind's five, then the others.
    pub fn all() -> Vec<Permission> {
        let mut all: Vec<Permission> = super::api::docs::DOCS
            .iter()
            .flat_map(|d| {
                DocVerb::ALL.map(|verb| Permission::Doc(DocPermission { kind: d.kind, verb }))
            })
            .collect();
        all.extend_from_slice(Permission::FIXED);
        all
    }
}

permissions! {
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
    SnapshotRead = "snapshot_read", Feed;
    VaultUse = "vault_use", Feed;
    OauthConnectionList = "oauth_connection_list", Read;
    OauthConnectionDelete = "oauth_connection_delete", Credentials;
    OauthProviderAttach = "oauth_provider_attach", Attach;
    AgentTestToken = "agent_test_token", Credentials;
    IssuerKeyList = "issuer_key_list", Read;
    IssuerKeyRotate = "issuer_key_rotate", Configure;
    TlsReload = "tls_reload", Configure;
    AppList = "app_list", Read;
    AppCreate = "app_create", Credentials;
    AppRegenerate = "app_regenerate", Credentials;
    AppRevoke = "app_revoke", Credentials;
    AgentProtectedCredentials = "agent_protected_credentials", Protected;
    UsageRead = "usage_read", Read;
    OauthClientList = "oauth_client_list", Read;
    OauthClientRevoke = "oauth_client_revoke", Credentials;
    PersonSignOut = "person_sign_out", Credentials;
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Whether `role` holds `permission`. Operators also face a per-target check on tokens (only
/// admins manage tokens of owners that hold a role): see the token handlers.
pub fn allows(role: Role, permission: Permission) -> bool {
    match (role, permission.class()) {
        (Role::Admin, _) => true,
        (Role::Operator, Class::Read | Class::Credentials) => true,
        (Role::Operator, Class::Configure | Class::Feed | Class::Attach | Class::Protected) => {
            false
        }
        (Role::Viewer, Class::Read) => true,
        (
            Role::Viewer,
            Class::Configure | Class::Credentials | Class::Feed | Class::Attach | Class::Protected,
        ) => false,
        (Role::Dataplane, Class::Feed) => true,
        (
            Role::Dataplane,
            Class::Read | Class::Configure | Class::Credentials | Class::Attach | Class::Protected,
        ) => false,
    }
}

/// Whether `name` names a permission (owners' `permissions` lists).
pub fn known(name: &str) -> bool {
    Permission::all().iter().any(|p| p.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    #[test]
    fn roles() {
        use crate::config::wire;
        let doc = |verb| Permission::doc::<wire::Provider>(verb);
        assert!(Permission::all().iter().all(|p| allows(Role::Admin, *p)));
        assert!(allows(Role::Operator, SecretCreate) && allows(Role::Operator, TokenRotate));
        assert!(allows(Role::Operator, doc(DocVerb::Get)));
        assert!(!allows(Role::Operator, doc(DocVerb::Create)));
        let owner_update = Permission::doc::<wire::Owner>(DocVerb::Update);
        assert_eq!(owner_update.name(), "owner_update");
        assert!(!allows(Role::Operator, SnapshotRead) && !allows(Role::Operator, owner_update));
        assert!(allows(Role::Viewer, SecretList) && !allows(Role::Viewer, SecretCreate));
        assert!(!allows(Role::Viewer, SnapshotRead));
        assert!(allows(Role::Dataplane, SnapshotRead) && !allows(Role::Dataplane, TokenList));
        assert!(allows(Role::Dataplane, VaultUse) && !allows(Role::Operator, VaultUse));
        // Attaching is held apart: only admins by role (others through named permissions).
        assert!(allows(Role::Admin, OauthProviderAttach));
        for role in [Role::Operator, Role::Viewer, Role::Dataplane] {
            assert!(!allows(role, OauthProviderAttach), "{role:?}");
        }
        assert!(known("oauth_provider_attach") && !known("oauth_provider_atach"));
    }

    #[test]
    fn names_are_resource_underscore_verb_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for p in Permission::all() {
            let name = p.name();
            let (resource, verb) = name.rsplit_once('_').expect("resource_verb");
            assert!(!resource.is_empty() && !verb.is_empty(), "{p}");
            assert!(seen.insert(name.clone()), "{p} twice");
        }
    }
}
