//! A trusted JWT issuer as written (YAML `issuers:` or the admin API).

use serde::{Deserialize, Serialize};

use crate::config::kind::Kind;
use crate::config::wire;

/// A trusted JWT issuer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Issuer {
    /// Short name for routes, metrics and logs.
    pub name: String,
    /// The exact `iss` claim.
    pub issuer: String,
    /// Where the signing keys are; default: `jwks_uri` from `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Accepted `aud` values (any of them).
    pub audiences: Vec<String>,
    /// Accepted signing algorithms, each bound to its key type.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// The claim that names the principal (`sub`, `client_id`, …).
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    /// People sign in at this issuer: Sluice's authorization endpoint (MCP clients) sends
    /// browsers here, through the named OAuth provider (its endpoints, client id and secret).
    /// One issuer at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in: Option<SignIn>,
}

/// How Sluice signs people in at an issuer (OpenID Connect, authorization code with PKCE).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The OAuth provider that is Sluice's client at this issuer: its `issuer` must be this
    /// issuer's, its redirect URI `{public_base_url}/oauth2/callback`; `openid` is always asked.
    pub oauth_provider: String,
    /// How long a Sluice browser session lasts after sign-in (1 to 720 hours).
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
    /// How long an MCP client's refresh tokens work after the person signed in (1 to 90 days;
    /// each use rotates them, none extends this): then the person signs in again, so one the
    /// IdP no longer knows loses access within this time.
    #[serde(default = "default_refresh_days")]
    pub refresh_days: u64,
    /// Operators sign in to the console (`/ui/`) here too, their role chosen by a claim of the
    /// ID token (pasted admin tokens keep working, for break-glass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<ConsoleSignIn>,
}

/// Console sign-in: where the console is and which claim values give which role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSignIn {
    /// Where browsers reach the admin listener (`https://sluice-admin.example.com`): signed-in
    /// operators are sent back to `{url}/ui/`.
    pub url: String,
    /// The ID token claim (a string or a list of strings, such as `groups`) whose values
    /// choose the role; the IdP must put it in the ID token.
    #[serde(default = "default_role_claim")]
    pub claim: String,
    /// Claim value → console role (`admin`, `operator` or `viewer`); the highest one applies.
    /// A person with none of these values does not get in.
    pub roles: std::collections::BTreeMap<String, crate::config::wire::Role>,
}

fn default_role_claim() -> String {
    "groups".into()
}

fn default_session_hours() -> u64 {
    12
}

fn default_refresh_days() -> u64 {
    7
}

impl Kind for Issuer {
    const KIND: &'static str = "issuer";
    const LIST: &'static str = "issuers";
    fn name(&self) -> String {
        self.name.clone()
    }
    fn list(config: &wire::Config) -> &Vec<Self> {
        &config.issuers
    }
    fn list_mut(config: &mut wire::Config) -> &mut Vec<Self> {
        &mut config.issuers
    }
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into(), "EdDSA".into()]
}

fn default_leeway() -> u64 {
    30
}

fn default_principal_claim() -> String {
    "sub".into()
}
