//! An upstream OAuth provider as written (YAML `oauth_providers:` or the admin API).

use serde::{Deserialize, Serialize};

use crate::config::kind::Kind;
use crate::config::wire;

/// An upstream authorization server as written (YAML `oauth_providers:` or the admin API).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuthProvider {
    /// Lowercase letters, digits and hyphens; immutable once stored.
    pub name: String,
    /// Shown to users when they connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// For discovery (RFC 8414 `/.well-known/oauth-authorization-server`, then OpenID
    /// discovery), which fills the endpoints not given when written through the admin API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// RFC 7009; called on disconnect when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<GrantType>,
    #[serde(default)]
    pub token_endpoint_auth_method: AuthMethod,
    pub client_id: String,
    /// The name of a stored secret scoped `mcp`; absent exactly when the method is `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// PKCE (S256) on every authorization request (always on for `none`).
    #[serde(default = "yes")]
    pub require_pkce: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `token_exchange`: names of the `issuers` (or `sluice`, the built-in one) whose JWTs may
    /// be sent to this provider as `subject_token`. Default: only the issuer whose `issuer` is
    /// this provider's `issuer` (a JWT is never sent to a server its issuer did not name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_issuers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// A user consents in a browser (authorization code with PKCE).
    AuthorizationCode,
    /// RFC 8693: the caller's verified JWT is exchanged, no browser.
    TokenExchange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
    /// A public client: no secret, PKCE required.
    None,
}

fn default_grant_types() -> Vec<GrantType> {
    vec![GrantType::AuthorizationCode]
}

fn yes() -> bool {
    true
}

impl Kind for OAuthProvider {
    const KIND: &'static str = "oauth_provider";
    const LIST: &'static str = "oauth_providers";
    fn name(&self) -> String {
        self.name.clone()
    }
    fn list(config: &wire::Config) -> &Vec<Self> {
        &config.oauth_providers
    }
    fn list_mut(config: &mut wire::Config) -> &mut Vec<Self> {
        &mut config.oauth_providers
    }
}
