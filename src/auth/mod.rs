//! Authentication: which Sluice credential a request carries, who it belongs to, and whether it
//! may use the route. Functions of request headers and the snapshot — no Pingora session here.
//!
//! Header precedence: `X-Sluice-Token` (then `Authorization`/`x-api-key` hold the client's own
//! provider key, for BYOK) → `Authorization: Bearer` → `x-api-key`. Two different Sluice
//! credentials on one request are refused, never guessed between.

pub mod jwks;
pub mod jwt;
pub mod jwt_preparse;
pub mod opaque;
pub mod token_format;
pub mod usage;

use http::{HeaderMap, HeaderName};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::error::{AuthFailure, BadRequest, Forbidden, GatewayError};

/// Which Sluice credentials a route (or the forward proxy) accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuthPolicy {
    /// No Sluice credential; any client reaching the listener may use the route.
    None,
    /// Opaque Sluice tokens only (`sluice_…`); `static` is accepted as another name for it.
    #[serde(alias = "static")]
    Token,
    /// JWTs from a trusted issuer only.
    Jwt,
    /// An opaque token or a JWT.
    #[default]
    Any,
    /// A client certificate presented in the TLS handshake (`listeners.proxy_tls.client_ca`);
    /// the principal is its SPIFFE ID or its subject's common name. `mtls` is another name.
    #[serde(rename = "client_cert", alias = "mtls")]
    ClientCert,
}

/// Who may use a route (or the forward proxy).
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub auth: AuthPolicy,
    pub scopes: Vec<String>,
    /// Indices into `jwt.issuers`; `None` accepts every issuer.
    pub issuers: Option<Vec<usize>>,
    pub required_claims: BTreeMap<String, String>,
    /// The audience tokens of Sluice's own issuer must name to be accepted here (an agent
    /// environment's); `None`: they are not accepted, whatever `auth` and `issuers` say.
    pub app_audience: Option<String>,
}

/// What verifying a credential needs from the configuration; the snapshot provides it, so
/// this layer does not depend on the configuration's shape.
pub trait CredentialIndex: Sync {
    /// The opaque token record with this id.
    fn token_record(&self, id: &str) -> Option<&opaque::TokenRecord>;
    /// Trusted issuers and the verified-JWT cache.
    fn jwt_verifier(&self) -> &jwt::JwtVerifier;
    /// Whether a verified token of Sluice's own issuer was revoked since (its `jti`, or its
    /// app deleted).
    fn revoked(&self, principal: &Principal) -> bool;
}

pub const SLUICE_TOKEN_HEADER: &str = "x-sluice-token";
static SLUICE_TOKEN: HeaderName = HeaderName::from_static(SLUICE_TOKEN_HEADER);
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
/// Where Google's SDKs send their API key: a Sluice credential may come in it too.
static X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");
/// Where Azure OpenAI's clients send theirs.
static AZURE_API_KEY: HeaderName = HeaderName::from_static("api-key");

/// Headers that carry a client credential of some provider (or of Sluice): never forwarded as
/// is. Header names built at compile time: a lookup with one skips parsing the name.
pub static CREDENTIAL_HEADERS: [HeaderName; 6] = [
    http::header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
    HeaderName::from_static("x-goog-api-key"),
    // Azure's (API Management's) other key header.
    HeaderName::from_static("ocp-apim-subscription-key"),
    http::header::PROXY_AUTHORIZATION,
];

/// Refuses a request that sends any credential header twice: proxies, SDKs and upstreams
/// disagree on which of two values counts (the first, the last, both joined), so a second
/// value could carry a Sluice credential past the check or a client key past the strip.
pub fn single_credentials(headers: &HeaderMap) -> Result<(), GatewayError> {
    // Almost every request repeats no header at all: one comparison instead of six lookups.
    if headers.len() == headers.keys_len() {
        return Ok(());
    }
    let twice = |name: &HeaderName| {
        let mut values = headers.get_all(name).iter();
        values.next().is_some() && values.next().is_some()
    };
    if twice(&SLUICE_TOKEN) || CREDENTIAL_HEADERS.iter().any(twice) {
        return Err(GatewayError::BadRequest(BadRequest::DuplicateCredential));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// `auth: none` routes.
    Anonymous,
    Opaque,
    Jwt,
    ClientCert,
}

impl CredentialKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            CredentialKind::Anonymous => "anonymous",
            CredentialKind::Opaque => "opaque",
            CredentialKind::Jwt => "jwt",
            CredentialKind::ClientCert => "client_cert",
        }
    }
}

/// The identity of the client certificate a TLS connection presented (verified against the
/// listener's `client_ca` during the handshake): its SPIFFE ID (`spiffe://…` URI SAN), else its
/// subject's common name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    pub subject: Box<str>,
}

/// Who a principal is: a kind and a stable id. Names people choose (a token's name, a JWT
/// issuer's name) never stand in for an id, so two different callers never share a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// `auth: none` routes.
    Anonymous,
    /// An owner-less opaque token, by its id (its name is only shown).
    Token { id: String },
    /// The owner of an opaque token: its name and the id the control plane gave it when it was
    /// created (`None` for owners declared in a file without one), so an owner deleted and
    /// created again under the same name does not inherit what the first one held.
    Owner { name: String, uid: Option<String> },
    /// A JWT subject: the issuer's configured name and the value of its `principal_claim`.
    Jwt { issuer: String, subject: String },
    /// A client of Sluice's own issuer (an agent environment's app, or a test token's subject
    /// under the test client).
    App { client_id: String, subject: String },
    /// A client certificate's SPIFFE ID or common name.
    Cert { subject: String },
}

impl Identity {
    /// The one rendering of an identity: the key of vault grants, MCP sessions, limits and
    /// budgets `per: principal|owner`, and the audit's `principal`. Collision-free because
    /// owner names and issuer names hold no `:` or `#` (refused at load), token ids are
    /// alphanumeric, and every form starts with its kind.
    pub fn render(&self) -> String {
        match self {
            Identity::Anonymous => "anonymous".to_owned(),
            Identity::Token { id } => format!("token:{id}"),
            Identity::Owner { name, uid: None } => format!("owner:{name}"),
            Identity::Owner {
                name,
                uid: Some(uid),
            } => format!("owner:{name}#{uid}"),
            Identity::Jwt { issuer, subject } => format!("jwt:{issuer}:{subject}"),
            Identity::App { client_id, subject } if client_id == subject => {
                format!("app:{client_id}")
            }
            Identity::App { client_id, subject } => format!("app:{client_id}:{subject}"),
            Identity::Cert { subject } => format!("cert:{subject}"),
        }
    }
}

/// Whether `name` may name an owner or an issuer: it appears inside principal renderings, so
/// it may not hold their separators (`:`, `#`), spaces or control characters.
pub fn valid_principal_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'+'))
}

/// Who is making the request. Built once per token record or verified JWT and shared.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub kind: CredentialKind,
    pub identity: Identity,
    /// `identity.render()`, made once.
    pub key: Box<str>,
    /// The credential itself as a key: `token:{id}` for an opaque token (one of an owner's
    /// several), else `key`.
    pub credential: Box<str>,
    /// What people call it (a token's name, an owner's name, a subject): shown, never a key.
    pub name: String,
    /// The opaque token presented, by id.
    pub token_id: Option<String>,
    /// Whether it may present the principal's connected accounts (vault grants) upstream: not
    /// a token an operator minted for an owner.
    pub grants: bool,
    pub scopes: Vec<String>,
    /// Index of the JWT's issuer in `Snapshot::issuers`.
    pub issuer: Option<usize>,
    /// A JWT's claims (for `required_claims`); `Null` otherwise.
    pub claims: serde_json::Value,
    /// A token of Sluice's own issuer (an app's, or a person's signed in through Sluice's
    /// authorization endpoint): a credential for its audience only.
    pub audience_bound: bool,
}

impl Principal {
    pub fn new(kind: CredentialKind, identity: Identity, name: String) -> Principal {
        let key = identity.render().into_boxed_str();
        Principal {
            kind,
            credential: key.clone(),
            key,
            identity,
            name,
            token_id: None,
            grants: true,
            scopes: Vec::new(),
            issuer: None,
            claims: serde_json::Value::Null,
            audience_bound: false,
        }
    }

    pub fn anonymous() -> Arc<Principal> {
        static ANONYMOUS: std::sync::OnceLock<Arc<Principal>> = std::sync::OnceLock::new();
        ANONYMOUS
            .get_or_init(|| {
                Arc::new(Principal::new(
                    CredentialKind::Anonymous,
                    Identity::Anonymous,
                    "anonymous".to_owned(),
                ))
            })
            .clone()
    }

    /// An opaque token's principal: its owner's, or the token's own.
    #[cfg(test)]
    pub fn opaque_for_tests(token_id: &str, owner: Option<&str>) -> Principal {
        let identity = match owner {
            Some(name) => Identity::Owner {
                name: name.to_owned(),
                uid: None,
            },
            None => Identity::Token {
                id: token_id.to_owned(),
            },
        };
        let name = owner.unwrap_or(token_id).to_owned();
        Principal {
            token_id: Some(token_id.to_owned()),
            credential: Identity::Token {
                id: token_id.to_owned(),
            }
            .render()
            .into_boxed_str(),
            ..Principal::new(CredentialKind::Opaque, identity, name)
        }
    }

    /// The owner's name, for a token that has an owner.
    pub fn owner_name(&self) -> Option<&str> {
        match &self.identity {
            Identity::Owner { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The client id, for a token of Sluice's own issuer.
    pub fn app(&self) -> Option<&str> {
        match &self.identity {
            Identity::App { client_id, .. } => Some(client_id),
            _ => None,
        }
    }
}

/// The outcome of the authentication step.
#[derive(Debug, Clone, PartialEq)]
pub struct Authenticated {
    pub principal: Arc<Principal>,
    /// The client also sent its own provider key (`Authorization`/`x-api-key` not used by Sluice).
    pub client_provider_key: bool,
}

/// The Sluice credential a request carries (none on `auth: none` routes) and whether the client
/// also sent its own provider key.
pub fn presented(
    headers: &HeaderMap,
    policy: AuthPolicy,
) -> Result<(Option<&str>, bool), GatewayError> {
    single_credentials(headers)?;
    let sluice_header = header_str(headers, &SLUICE_TOKEN);
    let bearer = header_str(headers, &http::header::AUTHORIZATION)
        .map(strip_bearer)
        .filter(|t| !t.is_empty());
    // Google's and Azure's SDKs send their key in headers of their own: a Sluice credential
    // is read there only when no other header carries one (beside one, they are a client's
    // provider key, stripped or passed on as the route says), and two of them must agree.
    let mut api_key = header_str(headers, &X_API_KEY);
    if api_key.is_none() && bearer.is_none() {
        match (
            header_str(headers, &X_GOOG_API_KEY),
            header_str(headers, &AZURE_API_KEY),
        ) {
            (Some(g), Some(a)) if g != a => return Err(GatewayError::ConflictingCredentials),
            (g, a) => api_key = g.or(a),
        }
    }
    if policy == AuthPolicy::None {
        return Ok((None, bearer.is_some() || api_key.is_some()));
    }
    match (sluice_header, bearer, api_key) {
        (Some(t), b, k) => Ok((Some(t), b.is_some() || k.is_some())),
        (None, Some(b), Some(k)) if b != k => Err(GatewayError::ConflictingCredentials),
        (None, Some(t), _) | (None, None, Some(t)) => Ok((Some(t), false)),
        (None, None, None) => Err(GatewayError::MissingCredential),
    }
}

/// Authenticates a request under `access` (a route's or the forward proxy's) and checks its
/// scopes, issuers and claims.
pub async fn authenticate(
    (headers, cert): (&HeaderMap, Option<&PeerCert>),
    access: &Access,
    index: &dyn CredentialIndex,
    now_unix: u64,
) -> Result<Authenticated, GatewayError> {
    if access.auth == AuthPolicy::ClientCert {
        // The handshake verified the certificate; here it is authorized like any principal.
        single_credentials(headers)?;
        let cert = cert.ok_or(GatewayError::InvalidCredential(
            crate::error::AuthFailure::NoClientCertificate,
        ))?;
        let subject = cert.subject.to_string();
        let mut principal = Principal::new(
            CredentialKind::ClientCert,
            Identity::Cert {
                subject: subject.clone(),
            },
            subject,
        );
        // A remote vault can verify tokens, not a handshake it did not see: no user grants.
        principal.grants = false;
        authorize(&principal, access)?;
        return Ok(Authenticated {
            principal: Arc::new(principal),
            client_provider_key: false,
        });
    }
    let (token, client_provider_key) = presented(headers, access.auth)?;
    let Some(token) = token else {
        return Ok(Authenticated {
            principal: Principal::anonymous(),
            client_provider_key,
        });
    };
    let principal = verify(token, access, index, now_unix).await?;
    Ok(Authenticated {
        principal,
        client_provider_key,
    })
}

/// Verifies one Sluice credential (opaque token or JWT) and authorizes it under `access`: the
/// one admission of a credential, for every entry point (routes, agent environments, the
/// forward proxy's CONNECT and requests, MCP servers, the OAuth user endpoints, the admin API).
/// Expiry, revocation (tokens, owners, apps, `jti`s), issuer, audience, claims and scopes are
/// decided here and nowhere else.
pub async fn verify(
    token: &str,
    access: &Access,
    index: &dyn CredentialIndex,
    now_unix: u64,
) -> Result<Arc<Principal>, GatewayError> {
    // The kind first: no signature is checked for a credential the entry point refuses anyway.
    let refused_kind = match access.auth {
        AuthPolicy::Jwt => token.starts_with(opaque::PREFIX),
        AuthPolicy::Token => !token.starts_with(opaque::PREFIX) && jwt::looks_like_jwt(token),
        // Certificate routes take no bearer credential at all.
        AuthPolicy::ClientCert => true,
        AuthPolicy::Any | AuthPolicy::None => false,
    };
    if refused_kind {
        return Err(GatewayError::Forbidden(Forbidden::CredentialKind));
    }
    let principal = identify(token, index, now_unix).await?;
    authorize(&principal, access)?;
    Ok(principal)
}

/// Who a credential proves, whatever entry point it is presented at: its signature or digest,
/// expiry and revocation. `verify` adds what the entry point allows.
pub async fn identify(
    token: &str,
    index: &dyn CredentialIndex,
    now_unix: u64,
) -> Result<Arc<Principal>, GatewayError> {
    if token.starts_with(opaque::PREFIX) {
        return opaque::verify(token, index, now_unix).map_err(GatewayError::InvalidCredential);
    }
    if !jwt::looks_like_jwt(token) {
        return Err(GatewayError::InvalidCredential(AuthFailure::Malformed));
    }
    let principal = index
        .jwt_verifier()
        .verify(token, now_unix)
        .await
        .map_err(GatewayError::InvalidCredential)?;
    if index.revoked(&principal) {
        return Err(GatewayError::InvalidCredential(AuthFailure::Revoked));
    }
    Ok(principal)
}

/// Whether a header value is a Sluice credential rather than a provider key (so it is never
/// passed upstream as the client's own key).
pub fn is_sluice_credential(value: &str) -> bool {
    let value = strip_bearer(value.trim());
    value.starts_with(opaque::PREFIX) || jwt::looks_like_jwt(value)
}

/// The token in a `Proxy-Authorization` header: `Basic base64(user:TOKEN)` (the user is
/// ignored) or `Bearer TOKEN`.
pub fn proxy_credential(value: &str) -> Option<String> {
    use base64::Engine;
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_owned());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    (!password.is_empty()).then(|| password.to_owned())
}

/// Route-level checks on an authenticated principal: 403s, and the 401 of a token for another
/// audience.
pub fn authorize(principal: &Principal, access: &Access) -> Result<(), GatewayError> {
    let kind_refused = match (access.auth, principal.kind) {
        (AuthPolicy::Token, CredentialKind::Jwt) | (AuthPolicy::Jwt, CredentialKind::Opaque) => {
            true
        }
        // Certificates and bearer credentials never stand in for each other.
        (AuthPolicy::ClientCert, kind) => kind != CredentialKind::ClientCert,
        (_, CredentialKind::ClientCert) => true,
        _ => false,
    };
    if kind_refused {
        return Err(GatewayError::Forbidden(Forbidden::CredentialKind));
    }
    // A token of Sluice's own issuer is a credential for its audience only: never a general
    // gateway credential, whatever the route's `auth` and `issuers` say.
    if principal.audience_bound {
        let named = access
            .app_audience
            .as_deref()
            .is_some_and(|want| names_audience(&principal.claims["aud"], want));
        if !named {
            return Err(GatewayError::InvalidCredential(AuthFailure::WrongAudience));
        }
    }
    if let (Some(allowed), Some(issuer)) = (&access.issuers, principal.issuer) {
        if !allowed.contains(&issuer) {
            return Err(GatewayError::Forbidden(Forbidden::IssuerNotAllowed));
        }
    }
    // Claims first: a token for another audience is refused as such, whatever its scopes.
    for (claim, want) in &access.required_claims {
        let ok = match &principal.claims[claim.as_str()] {
            serde_json::Value::String(v) => v == want,
            serde_json::Value::Array(values) => values.iter().any(|v| v.as_str() == Some(want)),
            serde_json::Value::Bool(b) => want.parse::<bool>().ok() == Some(*b),
            serde_json::Value::Number(n) => n
                .as_f64()
                .is_some_and(|n| want.parse::<f64>().ok() == Some(n)),
            serde_json::Value::Null | serde_json::Value::Object(_) => false,
        };
        // A token for another audience is not a token for this resource at all (RFC 6750
        // `invalid_token`, and what MCP clients expect): 401, so the client gets a new one.
        if !ok && claim == "aud" {
            return Err(GatewayError::InvalidCredential(AuthFailure::WrongAudience));
        }
        if !ok {
            return Err(GatewayError::Forbidden(Forbidden::ClaimMismatch));
        }
    }
    if !access
        .scopes
        .iter()
        .all(|s| principal.scopes.iter().any(|have| have == s))
    {
        return Err(GatewayError::Forbidden(Forbidden::MissingScope));
    }
    Ok(())
}

/// Whether an `aud` claim (a string or a list) names `want`.
pub fn names_audience(aud: &serde_json::Value, want: &str) -> bool {
    match aud {
        serde_json::Value::String(a) => a == want,
        serde_json::Value::Array(list) => list.iter().any(|a| a.as_str() == Some(want)),
        _ => false,
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The token of `Bearer TOKEN` (any case), or the value as is.
pub fn strip_bearer(value: &str) -> &str {
    if value.eq_ignore_ascii_case("bearer") {
        return "";
    }
    match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    }
}

#[cfg(test)]
mod tests;
