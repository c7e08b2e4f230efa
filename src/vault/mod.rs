//! The token vault as the request path sees it: users' upstream OAuth grants, asked for by
//! (principal, OAuth provider) and injected for them, so an agent never holds the token.
//!
//! The vault itself (sealed grants in the store, the consent flow's links and states, refresh,
//! RFC 8693 exchange, RFC 7009 revocation) runs in the control plane, which holds the master
//! key: `control::vault`. A data plane reaches it through a channel (the embedded control plane)
//! or the control plane's `/v1/vault` (`--control-plane`); either way it speaks `Request` and
//! gets `Answer` or `Failure`. Tokens handed out are cached here until shortly before they
//! expire (and at most `CACHE_TTL`, so a disconnect made on another replica applies within it):
//! a cached lookup is a hash and a map read.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::{Identity, Principal};

/// How long a token handed out by the vault is reused without asking it again.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// A token this close to its expiry is refreshed (or exchanged again) before use.
pub const REFRESH_BEFORE: u64 = 60;
const CACHE_CAPACITY: u64 = 100_000;

/// Whose grant: a stable key (the token's owner, or a JWT's issuer and subject, so rotating a
/// token keeps the user's connections) and how to show it to the user on the consent page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    pub key: String,
    pub display: String,
}

impl Who {
    /// `None` for an anonymous principal: nobody to hold a grant for. The key is the
    /// principal's one rendering (`Identity::render`).
    pub fn of(principal: &Principal) -> Option<Who> {
        let display = match &principal.identity {
            Identity::Anonymous => return None,
            Identity::Token { id } => format!("token `{}` ({id})", principal.name),
            Identity::Owner { name, .. } => format!("owner `{name}`"),
            Identity::Jwt { issuer, subject } => format!("`{subject}` of issuer `{issuer}`"),
            Identity::App { client_id, .. } => format!("app `{client_id}`"),
            Identity::Cert { subject } => format!("certificate `{subject}`"),
        };
        Some(Who {
            key: principal.key.to_string(),
            display,
        })
    }
}

/// What a data plane asks the vault.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The access token to inject for `who` at `provider`: the grant's (refreshed when near
    /// expiry), or for a `token_exchange` provider one exchanged for `subject_token`.
    /// `credential` is the Sluice credential the request presented: a remote control plane
    /// verifies it and serves only the principal it proves (a dataplane token alone reaches
    /// nobody's grant).
    Token {
        who: Who,
        provider: String,
        subject_token: Option<String>,
        #[serde(default)]
        credential: Option<String>,
    },
    /// A single-use connect link for `who` (the browser that opens it carries no credential).
    Link {
        who: Who,
        provider: String,
        #[serde(default)]
        credential: Option<String>,
    },
    /// What the consent page shows for a link (the link stays usable). `session` is the
    /// browser's Sluice session: a link of a person who signs in at Sluice opens only in a
    /// browser signed in as them.
    ViewLink {
        provider: String,
        link: String,
        #[serde(default)]
        session: Option<String>,
    },
    /// The user confirmed: the link is used up and the upstream authorization URL returned.
    /// `browser` is the SHA-256 (hex) of the random cookie the confirming browser was given.
    Begin {
        provider: String,
        link: String,
        browser: String,
        #[serde(default)]
        session: Option<String>,
    },
    /// `/oauth2/signin?next=…`: sign in at the company IdP, then back to `next` (a path of
    /// Sluice's connect pages, or `console`).
    SignIn {
        next: String,
        browser: String,
        #[serde(default)]
        session: Option<String>,
        /// For the console: a random value its tab keeps, which trading the code needs.
        #[serde(default)]
        console_state: Option<String>,
    },
    /// The console trades the single-use code its sign-in came back with (and the value its
    /// tab kept) for a session token.
    ConsoleSession {
        code: String,
        #[serde(default)]
        state: String,
    },
    /// The upstream's redirect back.
    Callback {
        state: String,
        code: Option<String>,
        error: Option<String>,
        error_description: Option<String>,
        /// The cookie the confirming browser was given (`Begin::browser` is its digest).
        browser: Option<String>,
    },
    /// Removes a grant and revokes it upstream (best effort).
    Disconnect {
        principal: String,
        provider: String,
        /// As for `Token`: what a data plane asks for a user is proven by that user's credential.
        #[serde(default)]
        credential: Option<String>,
    },
    /// Grants (metadata only) of one principal, or of everyone.
    Connections {
        principal: Option<String>,
        #[serde(default)]
        credential: Option<String>,
    },
    /// The static service token of an MCP server with `auth: secret`.
    ServiceToken { server: String },
    /// The key MCP session ids are bound to their principal with (the same on every node).
    SessionKey,
    /// A client-credentials token of Sluice's issuer for an OAuth app (`/oauth2/token`).
    AppToken {
        client_id: String,
        client_secret: String,
        scope: Option<String>,
        resource: Option<String>,
    },
    /// RFC 7662: what an app may learn about a token of Sluice's issuer (`/oauth2/introspect`).
    Introspect {
        client_id: String,
        client_secret: String,
        token: String,
    },
    /// RFC 7009: an app revokes one of its own tokens (`/oauth2/revoke`).
    Revoke {
        client_id: String,
        client_secret: String,
        token: String,
    },
    /// RFC 7591: an MCP client registers at Sluice's authorization endpoint (`/oauth2/register`);
    /// `from` is its address (registrations are limited per address).
    Register {
        metadata: serde_json::Value,
        from: String,
    },
    /// `/oauth2/authorize`: the query as sent, the browser's Sluice session (cookie), and the
    /// SHA-256 (hex) of the random cookie the browser gets if it is sent to sign in.
    Authorize {
        query: String,
        session: Option<String>,
        browser: String,
        /// The client's address (authorization requests are limited per address).
        #[serde(default)]
        from: String,
    },
    /// The company IdP's redirect back to `/oauth2/callback`, with the browser's cookie.
    SignedIn {
        state: String,
        code: Option<String>,
        error: Option<String>,
        browser: Option<String>,
    },
    /// What the consent page shows for a pending authorization.
    ViewAuthorization {
        ticket: String,
        session: Option<String>,
    },
    /// The signed-in person allowed (or denied) a pending authorization.
    Approve {
        ticket: String,
        session: Option<String>,
        /// The consent page's anti-forgery value, as its form posted it.
        #[serde(default)]
        nonce: String,
        allow: bool,
    },
    /// `/oauth2/token` for public clients: the `authorization_code` and `refresh_token` grants.
    UserToken {
        form: std::collections::BTreeMap<String, String>,
    },
    /// RFC 7009 for a public client (`client_id`, no secret): its refresh or access token.
    RevokeUserToken { client_id: String, token: String },
}

/// One grant as listed: never a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Connection {
    pub principal: String,
    pub provider: String,
    pub scopes: Vec<String>,
    /// Unix seconds; absent for tokens that do not expire.
    pub expires_at: Option<u64>,
    pub refreshable: bool,
    pub connected_at: u64,
    pub updated_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    Token {
        access_token: String,
        expires_at: Option<u64>,
    },
    Link {
        url: String,
        expires_at: u64,
    },
    Consent {
        who: String,
        provider: String,
        display_name: String,
        scopes: Vec<String>,
    },
    Redirect {
        url: String,
    },
    Connected {
        provider: String,
        display_name: String,
        who: String,
    },
    Disconnected {
        revoked: bool,
    },
    Connections {
        connections: Vec<Connection>,
    },
    SessionKey {
        /// Hex.
        key: String,
    },
    /// An introspection answer (RFC 7662 §2.2).
    Introspection {
        doc: serde_json::Value,
    },
    /// A revocation went through (or the token was not valid anyway).
    Revoked,
    /// An access token of Sluice's issuer (RFC 6749 §5.1).
    Issued {
        access_token: String,
        expires_in: u64,
        scope: String,
    },
    /// A registered client (RFC 7591 §3.2.1).
    Registered {
        client: serde_json::Value,
    },
    /// Sign in first: the IdP's authorization URL, whose `state` the browser's cookie is bound to.
    SignIn {
        url: String,
        state: String,
    },
    /// Signed in: the session cookie's value and lifetime, and where the browser goes next.
    Session {
        secret: String,
        max_age: u64,
        next: String,
    },
    /// What the consent page of a pending authorization shows.
    Authorization {
        client_name: String,
        client_id: String,
        redirect_uri: String,
        resource: String,
        resource_name: String,
        who: String,
        scope: String,
        /// The anti-forgery value the page's form posts back.
        nonce: String,
    },
    /// Tokens for a signed-in person's client (RFC 6749 §5.1, with a rotating refresh token).
    UserTokens {
        access_token: String,
        expires_in: u64,
        scope: String,
        refresh_token: String,
    },
}

/// Why the vault could not give what was asked, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "failure", rename_all = "snake_case")]
pub enum Failure {
    #[error("connect your account to `{provider}` first: open {connect_url}")]
    NotConnected {
        provider: String,
        connect_url: String,
    },
    #[error(
        "`{provider}` now asks for more scopes ({missing}); connect again: open {connect_url}"
    )]
    Reconsent {
        provider: String,
        missing: String,
        connect_url: String,
    },
    #[error("OAuth provider `{provider}` does not exist")]
    UnknownProvider { provider: String },
    #[error("OAuth provider `{provider}` is disabled")]
    Disabled { provider: String },
    #[error("OAuth provider `{provider}` does not support {grant}")]
    GrantNotAllowed { provider: String, grant: String },
    #[error("the token exchange at `{provider}` needs a JWT from a trusted issuer")]
    NeedsJwt { provider: String },
    #[error("`{provider}` refused the token exchange: {error}")]
    ExchangeRefused { provider: String, error: String },
    #[error("this link is unknown, used or expired: ask for a new one")]
    BadLink,
    #[error("this link is for {who}: sign in as them first")]
    SignInFirst { who: String, sign_in_url: String },
    #[error("this authorization answer is unknown, used or expired (state): start again")]
    BadState,
    #[error("`{provider}` answered: {error}")]
    Upstream { provider: String, error: String },
    #[error("{error}: {description}")]
    OAuth {
        /// The RFC 6749 §5.2 error code (`invalid_client`, `invalid_scope`, …).
        error: String,
        description: String,
        status: u16,
    },
    #[error("this token was not minted by an admin: it cannot act as its owner upstream (ask an admin for a token, or use one the owner was given)")]
    GrantsWithheld,
    #[error("not found")]
    NotFound,
    #[error("the token vault is unavailable: {reason}")]
    Unavailable { reason: String },
}

impl Failure {
    /// The vault (or what it needs) is not available now: 503 naming `reason`.
    pub fn unavailable(reason: impl Into<String>) -> Failure {
        Failure::Unavailable {
            reason: reason.into(),
        }
    }
}

impl Failure {
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::NotConnected { .. } => "oauth_not_connected",
            Failure::Reconsent { .. } => "oauth_reconsent",
            Failure::UnknownProvider { .. } => "oauth_unknown_provider",
            Failure::Disabled { .. } => "oauth_provider_disabled",
            Failure::GrantNotAllowed { .. } => "oauth_grant_not_allowed",
            Failure::NeedsJwt { .. } => "oauth_needs_jwt",
            Failure::ExchangeRefused { .. } => "oauth_exchange_refused",
            Failure::BadLink => "oauth_bad_link",
            Failure::SignInFirst { .. } => "oauth_sign_in_first",
            Failure::BadState => "oauth_bad_state",
            Failure::Upstream { .. } => "oauth_upstream_error",
            Failure::OAuth { .. } => "issuer_refused",
            Failure::GrantsWithheld => "oauth_grants_withheld",
            Failure::NotFound => "not_found",
            Failure::Unavailable { .. } => "vault_unavailable",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Failure::NotConnected { .. } | Failure::Reconsent { .. } => 401,
            Failure::NeedsJwt { .. }
            | Failure::ExchangeRefused { .. }
            | Failure::GrantsWithheld => 403,
            Failure::GrantNotAllowed { .. } | Failure::BadLink | Failure::BadState => 400,
            Failure::SignInFirst { .. } => 401,
            Failure::OAuth { status, .. } => *status,
            Failure::NotFound => 404,
            Failure::Upstream { .. } => 502,
            Failure::UnknownProvider { .. }
            | Failure::Disabled { .. }
            | Failure::Unavailable { .. } => 503,
        }
    }

    /// A link to connect (again), when the user can fix this in a browser.
    pub fn connect_url(&self) -> Option<&str> {
        match self {
            Failure::NotConnected { connect_url, .. } | Failure::Reconsent { connect_url, .. } => {
                Some(connect_url)
            }
            _ => None,
        }
    }

    /// The OAuth provider a link would connect, when there is one.
    pub fn provider(&self) -> Option<&str> {
        match self {
            Failure::NotConnected { provider, .. } | Failure::Reconsent { provider, .. } => {
                Some(provider)
            }
            _ => None,
        }
    }
}

pub type Reply = Result<Answer, Failure>;

/// One request and where its answer goes.
pub struct Job {
    pub request: Request,
    pub reply: tokio::sync::oneshot::Sender<Reply>,
}

#[derive(Debug)]
struct Cached {
    token: Arc<str>,
    /// Wall-clock expiry of the token, if it has one.
    expires_at: Option<u64>,
    fetched: Instant,
    /// The snapshot it was asked under: a changed configuration (scopes added, provider
    /// disabled or deleted) asks the vault again.
    revision: u64,
    /// Exchanged tokens are kept until near expiry; grants at most `CACHE_TTL`.
    bounded: bool,
}

/// The data plane's handle on the vault: a channel to the vault's worker and the token cache.
pub struct Vault {
    jobs: tokio::sync::mpsc::Sender<Job>,
    cache: moka::sync::Cache<String, Arc<Cached>>,
    session_key: tokio::sync::OnceCell<[u8; 32]>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(…)")
    }
}

impl Vault {
    /// The handle and the receiving end its worker serves.
    pub fn new() -> (Arc<Vault>, tokio::sync::mpsc::Receiver<Job>) {
        let (jobs, rx) = tokio::sync::mpsc::channel(4096);
        let cache = moka::sync::Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            .time_to_idle(Duration::from_secs(3600))
            .build();
        let vault = Vault {
            jobs,
            cache,
            session_key: tokio::sync::OnceCell::new(),
        };
        (Arc::new(vault), rx)
    }

    /// Asks the worker.
    pub async fn ask(&self, request: Request) -> Reply {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job { request, reply })
            .await
            .map_err(|_| Failure::unavailable("the vault is not running"))?;
        answer
            .await
            .map_err(|_| Failure::unavailable("the vault did not answer"))?
    }

    /// The token to inject for `who` at `provider`, from the cache when it is not near expiry.
    pub async fn token(
        &self,
        (who, credential): (&Who, Option<&str>),
        provider: &str,
        subject_token: Option<&str>,
        revision: u64,
        now_unix: u64,
    ) -> Result<Arc<str>, Failure> {
        let key = cache_key(&who.key, provider, subject_token);
        if let Some(hit) = self.cached(&key, revision, now_unix) {
            return Ok(hit);
        }
        let answer = self
            .ask(Request::Token {
                who: who.clone(),
                provider: provider.to_owned(),
                subject_token: subject_token.map(str::to_owned),
                credential: credential.map(str::to_owned),
            })
            .await?;
        let Answer::Token {
            access_token,
            expires_at,
        } = answer
        else {
            return Err(Failure::unavailable("unexpected answer"));
        };
        Ok(self.remember(
            key,
            access_token,
            expires_at,
            revision,
            subject_token.is_none(),
        ))
    }

    /// A client-credentials token for an OAuth app, an introspection or a revocation (never
    /// cached: each request is checked).
    pub async fn app_token(&self, request: Request) -> Reply {
        self.ask(request).await
    }

    /// The MCP session key, asked for once.
    pub async fn session_key(&self) -> Result<&[u8; 32], Failure> {
        self.session_key
            .get_or_try_init(|| async {
                match self.ask(Request::SessionKey).await? {
                    Answer::SessionKey { key } => hex::decode(key)
                        .ok()
                        .and_then(|k| <[u8; 32]>::try_from(k).ok())
                        .ok_or_else(|| Failure::unavailable("bad session key")),
                    _ => Err(Failure::unavailable("unexpected answer")),
                }
            })
            .await
    }

    /// An MCP server's static service token (`auth: secret`), cached like a grant.
    pub async fn service_token(&self, server: &str, revision: u64) -> Result<Arc<str>, Failure> {
        let key = format!("\0mcp-secret\0{server}");
        if let Some(hit) = self.cached(&key, revision, 0) {
            return Ok(hit);
        }
        let Answer::Token { access_token, .. } = self
            .ask(Request::ServiceToken {
                server: server.to_owned(),
            })
            .await?
        else {
            return Err(Failure::unavailable("unexpected answer"));
        };
        Ok(self.remember(key, access_token, None, revision, true))
    }

    /// Caches a token the vault handed out under `key`.
    fn remember(
        &self,
        key: String,
        token: String,
        expires_at: Option<u64>,
        revision: u64,
        bounded: bool,
    ) -> Arc<str> {
        let token: Arc<str> = Arc::from(token);
        let cached = Cached {
            token: token.clone(),
            expires_at,
            fetched: Instant::now(),
            revision,
            bounded,
        };
        self.cache.insert(key, Arc::new(cached));
        token
    }

    /// A cached token that is not within `REFRESH_BEFORE` of its expiry, asked for under this
    /// configuration revision.
    pub fn cached(&self, key: &str, revision: u64, now_unix: u64) -> Option<Arc<str>> {
        let hit = self.cache.get(key)?;
        let fresh = hit.revision == revision
            && hit
                .expires_at
                .is_none_or(|at| at > now_unix + REFRESH_BEFORE)
            && (!hit.bounded || hit.fetched.elapsed() < CACHE_TTL);
        fresh.then(|| hit.token.clone())
    }

    /// Forgets the cached tokens of `principal` at `provider` (after a disconnect here).
    pub fn forget(&self, principal: &str, provider: &str) {
        let prefix = format!("{provider}\0{principal}\0");
        let keys: Vec<String> = self
            .cache
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| (*k).clone())
            .collect();
        for k in keys {
            self.cache.invalidate(&k);
        }
    }
}

/// The cache key: provider, principal and (for exchanged tokens) a digest of the subject token,
/// so a new JWT from the same user is exchanged again rather than served the old one's token.
pub fn cache_key(principal: &str, provider: &str, subject_token: Option<&str>) -> String {
    match subject_token {
        None => format!("{provider}\0{principal}\0"),
        Some(t) => {
            use sha2::{Digest, Sha256};
            let digest = Sha256::digest(t.as_bytes());
            format!("{provider}\0{principal}\0{}", hex::encode(&digest[..12]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cached_tokens_are_served_until_near_expiry() {
        let (vault, mut rx) = Vault::new();
        let served = tokio::spawn(async move {
            let mut n = 0;
            while let Some(job) = rx.recv().await {
                n += 1;
                let _ = job.reply.send(Ok(Answer::Token {
                    access_token: format!("t{n}"),
                    expires_at: Some(1_000 + 61),
                }));
            }
            n
        });
        let who = Who {
            key: "owner:alice".into(),
            display: "alice".into(),
        };
        assert_eq!(
            &*vault
                .token((&who, None), "gh", None, 7, 1_000)
                .await
                .unwrap(),
            "t1"
        );
        assert_eq!(
            &*vault
                .token((&who, None), "gh", None, 7, 1_000)
                .await
                .unwrap(),
            "t1"
        );
        // Within a minute of expiry: asked again.
        assert_eq!(
            &*vault
                .token((&who, None), "gh", None, 7, 1_001)
                .await
                .unwrap(),
            "t2"
        );
        vault.forget("owner:alice", "gh");
        assert_eq!(
            &*vault.token((&who, None), "gh", None, 7, 0).await.unwrap(),
            "t3"
        );
        // Another configuration revision: asked again.
        assert_eq!(
            &*vault.token((&who, None), "gh", None, 8, 0).await.unwrap(),
            "t4"
        );
        drop(vault);
        assert_eq!(served.await.unwrap(), 4);
    }

    /// Every failure crosses `/v1/vault` (data plane ← control plane) as JSON: an unavailable
    /// vault was a tuple variant serde cannot tag, so the data plane saw "unreachable".
    #[test]
    fn failures_cross_the_wire() {
        for f in [
            Failure::unavailable("another replica is refreshing this grant"),
            Failure::NotFound,
            Failure::GrantsWithheld,
        ] {
            let text = serde_json::to_string(&f).unwrap();
            assert_eq!(serde_json::from_str::<Failure>(&text).unwrap(), f, "{text}");
        }
    }
}
