//! The token vault: one grant per (principal, OAuth provider), sealed under the master key in
//! the store (`sluice_grants`, never part of a revision), and the consent flow that fills it.
//!
//! Consent: a principal asks for a link (single use, 10 minutes, bound to it and the provider)
//! → the user opens it and confirms on a page naming both → the link is used up and a `state`
//! (single use, 10 minutes, with the PKCE verifier) is stored → the upstream redirects back
//! with a code → it is exchanged with the provider's client authentication and the grant
//! sealed. Links and states are stored as SHA-256 digests of their values, sealed, and taken
//! with one `DELETE … RETURNING`, so each is used once across replicas.
//!
//! Use: a grant within a minute of expiry is refreshed first, one refresh per grant at a time
//! (a per-grant lock here; the grant is read again under it, so waiters get the new token);
//! `invalid_grant` deletes the grant and asks the user to connect again. Providers with the
//! `token_exchange` grant exchange the caller's JWT instead (RFC 8693).

use base64::Engine;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::crypto::MasterKey;
use super::store::Store;
use crate::audit::{sink::Stream, AuditSink};
use crate::clock::unix_now;
use crate::config::oauth_provider::{AuthMethod, GrantType, OAuthProvider};
use crate::config::ConfigStore;
use crate::metrics::METRICS;
use crate::vault::{Answer, Connection, Failure, Job, Reply, Request, Who, REFRESH_BEFORE};

mod clients;
pub mod console;
mod issue;
mod refresh;
mod sealed;
mod signin;
mod upstream;
mod user_tokens;

use sealed::{unavailable, Grant, Pending};
use upstream::{serde_urlencoded, ACCESS_TOKEN_TYPE, JWT_TYPE, TOKEN_EXCHANGE};

/// Lifetime of a connect link and of an authorization request's `state`.
const PENDING_SECONDS: u64 = 600;
/// Upstream token and revocation calls.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(15);

pub struct VaultWorker {
    pub store: Arc<dyn Store>,
    pub key: Arc<MasterKey>,
    pub config: Arc<ConfigStore>,
    /// What links and redirect URIs start with (`public_base_url`), without a trailing `/`.
    pub base_url: String,
    pub audit: Option<AuditSink>,
    pub http: reqwest::Client,
    /// One lock per grant being refreshed (in this process; `try_lease` across replicas).
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// This process as a lease holder.
    holder: String,
    /// Failed client authentications at the issuer's token endpoint: client id → (minute, count).
    client_failures: Mutex<HashMap<String, (u64, u32)>>,
    /// The issuer's key that signs now, with the configuration revision it was picked at.
    signer: Mutex<Option<(u64, Arc<crate::control::issuer::Signer>)>>,
    /// Client registrations (RFC 7591) per address and in all, per minute.
    registrations: clients::Limiter,
    /// Authorization requests (each stores a ticket) per address and in all, per minute.
    authorizations: clients::Limiter,
    /// Client ID Metadata Documents fetched, for a few minutes (by their URL).
    documents: moka::sync::Cache<String, Arc<clients::ClientDoc>>,
}

impl VaultWorker {
    pub fn new(
        store: Arc<dyn Store>,
        key: Arc<MasterKey>,
        config: Arc<ConfigStore>,
        base_url: String,
        audit: Option<AuditSink>,
    ) -> anyhow::Result<VaultWorker> {
        let http = reqwest::Client::builder()
            .timeout(UPSTREAM_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(VaultWorker {
            store,
            key,
            config,
            base_url,
            audit,
            http,
            flights: Mutex::new(HashMap::new()),
            holder: crate::auth::token_format::random_base62(22)
                .map_err(|e| anyhow::anyhow!("randomness: {e}"))?,
            client_failures: Mutex::new(HashMap::new()),
            signer: Mutex::new(None),
            registrations: clients::Limiter::new(10, 60),
            authorizations: clients::Limiter::new(30, 1200),
            documents: moka::sync::Cache::builder()
                .max_capacity(1000)
                .time_to_live(Duration::from_secs(300))
                .build(),
        })
    }

    /// Serves the data plane's requests until the channel closes.
    pub async fn serve(self: Arc<Self>, mut jobs: tokio::sync::mpsc::Receiver<Job>) {
        while let Some(job) = jobs.recv().await {
            let worker = self.clone();
            tokio::spawn(async move {
                let reply = worker.handle(job.request).await;
                let _ = job.reply.send(reply);
            });
        }
    }

    pub async fn handle(&self, request: Request) -> Reply {
        match request {
            Request::Token {
                who,
                provider,
                subject_token,
                credential: _,
            } => self.token(&who, &provider, subject_token.as_deref()).await,
            Request::Link { who, provider, .. } => {
                let p = self.provider(&provider, GrantType::AuthorizationCode)?;
                let (url, expires_at) = self.link(&who, &p).await?;
                Ok(Answer::Link { url, expires_at })
            }
            Request::ViewLink {
                provider,
                link,
                session,
            } => {
                let (who, p) = self.open_link(&provider, &link, false).await?;
                self.signed_in_as(&who, session.as_deref(), (&provider, &link))
                    .await?;
                Ok(Answer::Consent {
                    who: who.display,
                    display_name: display_name(&p),
                    provider: p.name.clone(),
                    scopes: p.scopes.clone(),
                })
            }
            Request::Begin {
                provider,
                link,
                browser,
                session,
            } => {
                // Checked before the link is used up: signing in keeps it usable.
                let (who, _) = self.open_link(&provider, &link, false).await?;
                self.signed_in_as(&who, session.as_deref(), (&provider, &link))
                    .await?;
                let (who, p) = self.open_link(&provider, &link, true).await?;
                self.begin(who, &p, browser).await
            }
            Request::Callback {
                state,
                code,
                error,
                error_description,
                browser,
            } => {
                let upstream = (code, error, error_description);
                self.callback(&state, upstream, browser.as_deref()).await
            }
            Request::Disconnect {
                principal,
                provider,
                credential: _,
            } => self.disconnect(&principal, &provider).await,
            Request::Connections { principal, .. } => self.connections(principal.as_deref()).await,
            Request::ServiceToken { server } => self.service_token(&server).await,
            Request::SessionKey => Ok(Answer::SessionKey {
                key: hex::encode(self.key.derive("mcp sessions")),
            }),
            // Sluice's own issuer: apps' client credentials, and sign-in.
            issuer => self.handle_issuer(issuer).await,
        }
    }

    /// The requests to Sluice's own issuer: apps' client credentials (`issue`), and Sluice as
    /// the authorization server of its MCP servers (`signin`, `clients`, `user_tokens`,
    /// `console`).
    async fn handle_issuer(&self, request: Request) -> Reply {
        match request {
            Request::AppToken {
                client_id,
                client_secret,
                scope,
                resource,
            } => {
                self.app_token(
                    &client_id,
                    &client_secret,
                    scope.as_deref(),
                    resource.as_deref(),
                )
                .await
            }
            Request::Introspect {
                client_id,
                client_secret,
                token,
            } => self.introspect(&client_id, &client_secret, &token).await,
            Request::Revoke {
                client_id,
                client_secret,
                token,
            } => {
                self.revoke_app_token(&client_id, &client_secret, &token)
                    .await
            }
            Request::Register { metadata, from } => self.register(&metadata, &from).await,
            Request::SignIn {
                next,
                browser,
                session,
                console_state,
            } => {
                self.sign_in_then(
                    &next,
                    browser,
                    (session.as_deref(), console_state.as_deref()),
                )
                .await
            }
            Request::ConsoleSession { code, state } => self.console_session(&code, &state).await,
            Request::Authorize {
                query,
                session,
                browser,
                from,
            } => {
                self.authorize(&query, (session.as_deref(), browser, &from))
                    .await
            }
            Request::SignedIn {
                state,
                code,
                error,
                browser,
            } => {
                self.signed_in(&state, (code, error), browser.as_deref())
                    .await
            }
            Request::ViewAuthorization { ticket, session } => {
                self.view_authorization(&ticket, session.as_deref()).await
            }
            Request::Approve {
                ticket,
                session,
                nonce,
                allow,
            } => {
                self.approve(&ticket, (session.as_deref(), &nonce), allow)
                    .await
            }
            Request::UserToken { form } => self.user_token(form).await,
            Request::RevokeUserToken { client_id, token } => {
                self.revoke_user_token(&client_id, &token).await
            }
            _ => Err(Failure::unavailable("not a request to the issuer")),
        }
    }

    /// An enabled provider that allows `grant`.
    fn provider(&self, name: &str, grant: GrantType) -> Result<Arc<OAuthProvider>, Failure> {
        let snap = self.config.snapshot();
        let p =
            snap.oauth_providers
                .get(name)
                .cloned()
                .ok_or_else(|| Failure::UnknownProvider {
                    provider: name.to_owned(),
                })?;
        if !p.enabled {
            return Err(Failure::Disabled {
                provider: name.to_owned(),
            });
        }
        if !p.grant_types.contains(&grant) {
            return Err(Failure::GrantNotAllowed {
                provider: name.to_owned(),
                grant: match grant {
                    GrantType::AuthorizationCode => "the authorization_code grant (consent)",
                    GrantType::TokenExchange => "the token_exchange grant",
                }
                .to_owned(),
            });
        }
        Ok(p)
    }

    async fn token(&self, who: &Who, provider: &str, subject: Option<&str>) -> Reply {
        let snap = self.config.snapshot();
        let exchanges = snap
            .oauth_providers
            .get(provider)
            .is_some_and(|p| p.grant_types.contains(&GrantType::TokenExchange));
        let consents = snap
            .oauth_providers
            .get(provider)
            .is_some_and(|p| p.grant_types.contains(&GrantType::AuthorizationCode));
        drop(snap);
        if exchanges && (subject.is_some() || !consents) {
            let p = self.provider(provider, GrantType::TokenExchange)?;
            let subject = subject.ok_or_else(|| Failure::NeedsJwt {
                provider: provider.to_owned(),
            })?;
            return self.exchange(who, &p, subject).await;
        }
        let p = self.provider(provider, GrantType::AuthorizationCode)?;
        let grant = self.usable_grant(who, &p).await?;
        Ok(Answer::Token {
            access_token: grant.access_token,
            expires_at: grant.expires_at,
        })
    }

    /// Whether `who`'s JWT may be sent to `p`: its issuer is named in `subject_issuers`, or by
    /// default is the issuer `p` itself is (same `issuer`).
    fn may_receive(&self, who: &Who, p: &OAuthProvider) -> Result<(), Failure> {
        let issuer = match who.key.split_once(':') {
            Some(("jwt", rest)) => rest.split_once(':').map(|(issuer, _)| issuer),
            Some(("app", _)) => Some(crate::auth::jwt::BUILTIN_ISSUER),
            _ => None,
        };
        let snap = self.config.snapshot();
        let allowed = issuer.is_some_and(|name| {
            if p.subject_issuers.is_empty() {
                let iss = snap.jwt.issuers.iter().find(|i| i.name == name);
                iss.zip(p.issuer.as_deref()).is_some_and(|(i, own)| {
                    i.issuer.trim_end_matches('/') == own.trim_end_matches('/')
                })
            } else {
                p.subject_issuers.iter().any(|n| n == name)
            }
        });
        if allowed {
            return Ok(());
        }
        Err(Failure::ExchangeRefused {
            provider: p.name.clone(),
            error: format!(
                "tokens of issuer `{}` are not sent to this provider (its subject_issuers)",
                issuer.unwrap_or("none")
            ),
        })
    }

    /// RFC 8693: the caller's verified JWT for a token of this provider.
    async fn exchange(&self, who: &Who, p: &OAuthProvider, subject: &str) -> Reply {
        if let Err(f) = self.may_receive(who, p) {
            self.audit("oauth.exchange", &who.key, &p.name, "issuer_refused");
            return Err(f);
        }
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE.to_owned()),
            ("subject_token", subject.to_owned()),
            ("subject_token_type", JWT_TYPE.to_owned()),
            ("requested_token_type", ACCESS_TOKEN_TYPE.to_owned()),
        ];
        if !p.scopes.is_empty() {
            form.push(("scope", p.scopes.join(" ")));
        }
        if let Some(issuer) = &p.issuer {
            form.push(("audience", issuer.clone()));
        }
        match self.call_token_endpoint(p, form).await {
            Ok(answer) if !answer.is_bearer() => {
                self.event(p, "exchange", "error");
                self.audit("oauth.exchange", &who.key, &p.name, "not_bearer");
                Err(Failure::ExchangeRefused {
                    provider: p.name.clone(),
                    error: format!(
                        "the token issued is of type `{}`, not Bearer",
                        clip(answer.token_type.as_deref().unwrap_or("none"))
                    ),
                })
            }
            Ok(answer) => {
                self.event(p, "exchange", "ok");
                self.audit("oauth.exchange", &who.key, &p.name, "ok");
                Ok(Answer::Token {
                    access_token: answer.access_token,
                    expires_at: answer.expires_in.map(|s| unix_now() + s),
                })
            }
            Err(e) => {
                self.event(p, "exchange", "error");
                self.audit("oauth.exchange", &who.key, &p.name, "error");
                Err(Failure::ExchangeRefused {
                    provider: p.name.clone(),
                    error: e.text(),
                })
            }
        }
    }

    async fn not_connected(&self, who: &Who, p: &OAuthProvider) -> Failure {
        match self.link(who, p).await {
            Ok((connect_url, _)) => Failure::NotConnected {
                provider: p.name.clone(),
                connect_url,
            },
            Err(e) => e,
        }
    }

    /// A new connect link for `who` at `p`, and when it expires.
    async fn link(&self, who: &Who, p: &OAuthProvider) -> Result<(String, u64), Failure> {
        let secret = random_token()?;
        let expires_at = unix_now() + PENDING_SECONDS;
        let pending = Pending::Link {
            who: who.clone(),
            provider: p.name.clone(),
        };
        self.put_pending(&secret, &pending, expires_at).await?;
        let url = format!(
            "{}/oauth/v1/connect/{}?link={secret}",
            self.base_url, p.name
        );
        Ok((url, expires_at))
    }

    async fn open_link(
        &self,
        provider: &str,
        link: &str,
        take: bool,
    ) -> Result<(Who, Arc<OAuthProvider>), Failure> {
        match self.take_pending(link, sealed::slot::LINK, take).await? {
            Some(Pending::Link { who, provider: p }) if p == provider => {
                Ok((who, self.provider(provider, GrantType::AuthorizationCode)?))
            }
            _ => Err(Failure::BadLink),
        }
    }

    /// The upstream authorization URL for a confirmed link.
    async fn begin(&self, who: Who, p: &OAuthProvider, browser: String) -> Reply {
        let state = random_token()?;
        let verifier = (p.require_pkce || p.token_endpoint_auth_method == AuthMethod::None)
            .then(random_token)
            .transpose()?;
        let mut query = vec![
            ("response_type", "code".to_owned()),
            ("client_id", p.client_id.clone()),
            ("redirect_uri", self.redirect_uri()),
            ("state", state.clone()),
        ];
        if !p.scopes.is_empty() {
            query.push(("scope", p.scopes.join(" ")));
        }
        if let Some(v) = &verifier {
            query.push(("code_challenge", pkce_challenge(v)));
            query.push(("code_challenge_method", "S256".to_owned()));
        }
        let pending = Pending::State {
            who,
            provider: p.name.clone(),
            verifier,
            scopes: p.scopes.clone(),
            browser: Some(browser),
        };
        self.put_pending(&state, &pending, unix_now() + PENDING_SECONDS)
            .await?;
        let endpoint = p.authorization_endpoint.as_deref().unwrap_or_default();
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        let query = serde_urlencoded(&query);
        Ok(Answer::Redirect {
            url: format!("{endpoint}{sep}{query}"),
        })
    }

    pub fn redirect_uri(&self) -> String {
        format!("{}/oauth/v1/callback", self.base_url)
    }

    /// The upstream's redirect back (`code`, `error`, `error_description`), in the browser
    /// that confirmed: a state taken to another browser is used up and stores nothing.
    async fn callback(
        &self,
        state: &str,
        (code, error, error_description): (Option<String>, Option<String>, Option<String>),
        browser: Option<&str>,
    ) -> Reply {
        let Some(Pending::State {
            who,
            provider,
            verifier,
            scopes,
            browser: bound,
        }) = self.take_pending(state, sealed::slot::STATE, true).await?
        else {
            return Err(Failure::BadState);
        };
        let same_browser = same_browser(bound, browser);
        if !same_browser {
            self.audit("oauth.connect", &who.key, &provider, "other_browser");
            return Err(Failure::BadState);
        }
        let p = self.provider(&provider, GrantType::AuthorizationCode)?;
        if let Some(error) = error {
            self.event(&p, "consent", "denied");
            self.audit("oauth.connect", &who.key, &p.name, "denied");
            let text = match error_description {
                Some(d) => format!("{error}: {d}"),
                None => error,
            };
            return Err(Failure::Upstream {
                provider,
                error: clip(&text),
            });
        }
        let code = code.ok_or_else(|| Failure::Upstream {
            provider: provider.clone(),
            error: "no code in the answer".into(),
        })?;
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("redirect_uri", self.redirect_uri()),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        let answer = self.call_token_endpoint(&p, form).await.map_err(|e| {
            self.event(&p, "consent", "error");
            self.audit("oauth.connect", &who.key, &p.name, "error");
            Failure::Upstream {
                provider: provider.clone(),
                error: clip(&e.text()),
            }
        })?;
        let now = unix_now();
        let grant = Grant {
            access_token: answer.access_token,
            refresh_token: answer.refresh_token,
            expires_at: answer.expires_in.map(|s| now + s),
            scopes: answer.scope.as_deref().map(split_scopes).unwrap_or(scopes),
            connected_at: now,
        };
        self.write_grant(&who.key, &p.name, &grant).await?;
        self.event(&p, "consent", "ok");
        self.audit("oauth.connect", &who.key, &p.name, "ok");
        Ok(Answer::Connected {
            provider: p.name.clone(),
            display_name: display_name(&p),
            who: who.display,
        })
    }

    async fn disconnect(&self, principal: &str, provider: &str) -> Reply {
        let grant = self.read_grant(principal, provider).await?;
        let Some(grant) = grant else {
            return Err(Failure::NotFound);
        };
        self.forget_grant(principal, provider).await?;
        self.audit("oauth.disconnect", principal, provider, "ok");
        let snap = self.config.snapshot();
        let Some(p) = snap.oauth_providers.get(provider).cloned() else {
            return Ok(Answer::Disconnected { revoked: false });
        };
        drop(snap);
        let revoked = self.revoke(&p, &grant).await;
        Ok(Answer::Disconnected { revoked })
    }

    async fn connections(&self, principal: Option<&str>) -> Reply {
        let rows = self.store.grants(principal).await.map_err(unavailable)?;
        let mut connections = Vec::with_capacity(rows.len());
        for row in rows {
            let Ok(grant) = self.open_grant(&row.principal, &row.provider, &row.sealed) else {
                continue;
            };
            connections.push(Connection {
                principal: row.principal,
                provider: row.provider,
                scopes: grant.scopes,
                expires_at: grant.expires_at,
                refreshable: grant.refresh_token.is_some(),
                connected_at: grant.connected_at,
                updated_at: row.updated_at,
            });
        }
        Ok(Answer::Connections { connections })
    }

    /// The static token of an MCP server with `auth: secret` (a secret scoped `mcp`).
    async fn service_token(&self, server: &str) -> Reply {
        let snap = self.config.snapshot();
        let secret = snap
            .mcp_servers
            .get(server)
            .and_then(|s| s.secret_ref.clone())
            .ok_or(Failure::NotFound)?;
        drop(snap);
        let token = self.mcp_secret(&secret).await.map_err(unavailable)?;
        Ok(Answer::Token {
            access_token: token,
            expires_at: None,
        })
    }

    /// Grants whose provider no longer exists are removed; the gauge counts the rest.
    pub async fn sweep(&self) {
        self.sweep_revoked(unix_now()).await;
        let rows = match self.store.grants(None).await {
            Ok(rows) => rows,
            Err(e) => {
                log::warn!("vault: {e}");
                return;
            }
        };
        let snap = self.config.snapshot();
        let mut counts: HashMap<&str, i64> = snap
            .oauth_providers
            .keys()
            .map(|k| (k.as_str(), 0))
            .collect();
        for row in &rows {
            match counts.get_mut(row.provider.as_str()) {
                Some(n) => *n += 1,
                None => {
                    if let Err(e) = self.store.delete_grant(&row.principal, &row.provider).await {
                        log::warn!("vault: {e}");
                    }
                }
            }
        }
        METRICS.oauth_grants.reset();
        for (provider, n) in counts {
            METRICS.oauth_grants.with_label_values(&[provider]).set(n);
        }
    }

    fn event(&self, p: &OAuthProvider, event: &str, outcome: &str) {
        METRICS
            .oauth_events
            .with_label_values(&[p.name.as_str(), event, outcome])
            .inc();
    }

    /// One audit record per vault event (never a token).
    /// Writes a control-plane event to the audit stream (when there is one).
    pub fn audit_record(&self, record: &serde_json::Value) {
        self.record_to(record, Stream::Usage);
    }

    /// Writes a refused control-plane request (a failed client authentication) to the
    /// refused-requests stream.
    pub fn refused_record(&self, record: &serde_json::Value) {
        self.record_to(record, Stream::Refused);
    }

    fn record_to(&self, record: &serde_json::Value, stream: Stream) {
        if let Some(audit) = &self.audit {
            let mut line = record.to_string().into_bytes();
            line.push(b'\n');
            audit.record(&line, stream);
        }
    }

    fn audit(&self, event: &str, principal: &str, provider: &str, outcome: &str) {
        log::info!("vault: {event} {principal} at {provider}: {outcome}");
        if let Some(audit) = &self.audit {
            let record = serde_json::json!({
                "ts": unix_now(),
                "event": event,
                "principal": principal,
                "oauth_provider": provider,
                "outcome": outcome,
            });
            let mut line = record.to_string().into_bytes();
            line.push(b'\n');
            audit.record(&line, Stream::Usage);
        }
    }
}

fn near_expiry(grant: &Grant, now: u64) -> bool {
    grant
        .expires_at
        .is_some_and(|at| at <= now + REFRESH_BEFORE)
}

/// The provider's scopes the grant lacks (`offline_access` is a request for a refresh token,
/// never listed back).
fn missing_scopes(p: &OAuthProvider, grant: &Grant) -> Vec<String> {
    p.scopes
        .iter()
        .filter(|s| s.as_str() != "offline_access" && !grant.scopes.contains(s))
        .cloned()
        .collect()
}

fn split_scopes(scope: &str) -> Vec<String> {
    scope.split_whitespace().map(str::to_owned).collect()
}

fn display_name(p: &OAuthProvider) -> String {
    p.display_name.clone().unwrap_or_else(|| p.name.clone())
}

/// Whether the browser presenting `cookie` is the one a flow was bound to (`bound`: the
/// SHA-256, hex, of its cookie), compared in constant time.
fn same_browser(bound: Option<String>, cookie: Option<&str>) -> bool {
    match (bound, cookie) {
        (Some(bound), Some(cookie)) => same_secret(&sha256_hex(cookie), &bound),
        _ => false,
    }
}

/// SHA-256 of `text`, hex: how a secret is kept (never the secret itself).
fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Whether two secrets (or digests of them) are the same, compared in constant time.
fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    crate::secrets::digest_eq(&Sha256::digest(a).into(), &Sha256::digest(b).into())
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
fn pkce_challenge(verifier: &str) -> String {
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier))
}

/// 256 random bits, base64url.
fn random_token() -> Result<String, Failure> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Failure::unavailable(format!("randomness: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Upstream text shown to users: one line, bounded.
fn clip(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_missing_from_a_grant() {
        let p: OAuthProvider = serde_json::from_value(serde_json::json!({
            "name": "gh", "client_id": "c", "token_endpoint": "https://x/t",
            "authorization_endpoint": "https://x/a", "client_secret_ref": "S",
            "scopes": ["openid", "offline_access", "repo.read", "repo.write"]
        }))
        .unwrap();
        let grant = Grant {
            access_token: "a".into(),
            refresh_token: None,
            expires_at: Some(100),
            scopes: split_scopes("openid repo.read"),
            connected_at: 0,
        };
        assert_eq!(missing_scopes(&p, &grant), vec!["repo.write"]);
        assert!(near_expiry(&grant, 40) && !near_expiry(&grant, 39));
        assert_eq!(upstream::form_encode("a b:c"), "a+b%3Ac");
        assert_eq!(clip("x\ny"), "xy");
    }
}
