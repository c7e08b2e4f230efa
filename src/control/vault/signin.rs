//! Sluice as the OAuth authorization server of its MCP servers (MCP authorization, protocol
//! 2025-06-18 and 2025-11-25): an MCP client sends the person's browser to `/oauth2/authorize`
//! → the request is checked (client, redirect URI, PKCE S256, `resource` naming one MCP
//! server) and kept under a ticket → without a Sluice session the browser signs in at the
//! company IdP (`issuers[].sign_in`: OpenID Connect with PKCE and a nonce, the `state` bound to
//! a cookie of that browser) and gets a session → a consent page names the client, where it
//! sends the browser back, the MCP server and the person → allowed, a single-use code bound to
//! all of that goes to the client's redirect URI.
//!
//! The person is the IdP's issuer and subject (`jwt:{issuer}:{subject}`): the same principal
//! as their JWTs from that issuer and as their vault grants.

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;

use super::sealed::{slot, Pending};
use super::{random_token, VaultWorker};
use crate::clock::unix_now;
use crate::config::oauth_provider::GrantType;
use crate::vault::{Answer, Failure, Reply};

/// How long an authorization request waits for sign-in and consent.
const TICKET_SECONDS: u64 = 600;
/// How long an authorization code lives.
const CODE_SECONDS: u64 = 60;
pub const CALLBACK_PATH: &str = "/oauth2/callback";
pub const CONSENT_PATH: &str = "/oauth2/consent";
/// The `next` of a console sign-in.
pub const CONSOLE: &str = "console";

/// Where a browser goes once signed in at the IdP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub(super) enum Then {
    /// A path of Sluice's: the consent page of an authorization request, or a connect link.
    Path { path: String },
    /// The console, with a code for the tab that keeps the state whose SHA-256 (hex) this is.
    Console { tab: String },
}

/// An MCP client's authorization request, checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct AuthRequest {
    pub(super) client_id: String,
    pub(super) client_name: String,
    pub(super) redirect_uri: String,
    pub(super) state: Option<String>,
    /// PKCE S256 challenge.
    pub(super) challenge: String,
    /// The MCP server's resource URL: the token's audience.
    pub(super) resource: String,
    pub(super) scope: String,
}

/// A person signed in at the company IdP.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Person {
    /// The issuer's configured name.
    pub(super) issuer: String,
    pub(super) subject: String,
    /// What they are called (`preferred_username`, `email`, `name` or the subject): shown only.
    pub(super) name: String,
    pub(super) expires_at: u64,
    /// The values of the console's role claim in the ID token (when console sign-in is on).
    #[serde(default)]
    pub(super) groups: Vec<String>,
    /// The scopes the IdP granted at this sign-in: the MCP servers' scopes a person holds.
    #[serde(default)]
    pub(super) idp_scopes: Vec<String>,
    /// When they signed in, Unix milliseconds (an operator's sign-out ends the sessions from
    /// before it).
    #[serde(default)]
    pub(super) signed_in_at: u64,
}

impl Person {
    /// Of the scopes `asked`, those this person holds (`offline_access` is Sluice's to give).
    fn holds(&self, asked: &str) -> String {
        asked
            .split_whitespace()
            .filter(|s| *s == OFFLINE || self.idp_scopes.iter().any(|h| h == s))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The scope that asks for a refresh token.
const OFFLINE: &str = "offline_access";

/// The server scopes of an authorization's `scope`: what the IdP must grant the person.
fn server_scopes(scope: &str) -> Vec<String> {
    scope
        .split_whitespace()
        .filter(|s| *s != OFFLINE)
        .map(str::to_owned)
        .collect()
}

impl Person {
    pub(super) fn principal(&self) -> String {
        crate::auth::Identity::Jwt {
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
        }
        .render()
    }

    fn display(&self) -> String {
        if self.name == self.subject {
            format!("{} (at {})", self.subject, self.issuer)
        } else {
            format!("{} ({} at {})", self.name, self.subject, self.issuer)
        }
    }
}

fn oauth(error: &str, description: impl Into<String>, status: u16) -> Failure {
    Failure::OAuth {
        error: error.into(),
        description: description.into(),
        status,
    }
}

impl VaultWorker {
    /// `/oauth2/authorize`. Problems with the client or its redirect URI are shown to the
    /// person (never redirected to an unchecked URI); later ones go back to the client.
    pub(super) async fn authorize(
        &self,
        query: &str,
        (session, browser, from): (Option<&str>, String, &str),
    ) -> Reply {
        if !self.authorizations.admit(from, unix_now()) {
            return Err(oauth(
                "slow_down",
                "too many authorization requests: wait a minute",
                429,
            ));
        }
        let params = single_params(query)?;
        let get = |k: &str| params.get(k).map(String::as_str);
        let client = self.client(get("client_id").unwrap_or_default()).await?;
        let redirect_uri = redirect_uri_of(&client, get("redirect_uri"))?;
        let state = get("state").map(str::to_owned);
        let snap = self.config.snapshot();
        let (challenge, resource, scope) = match checked_request(&params, &snap) {
            Ok(checked) => checked,
            // Back to the client only when that cannot send a stranger's browser to another
            // site (RFC 9700 §4.11.2): anyone may register an https redirect URI.
            Err((error, description)) if super::clients::is_loopback_uri(&redirect_uri) => {
                return Ok(Answer::Redirect {
                    url: self.redirect_to(
                        &redirect_uri,
                        state.as_deref(),
                        &[("error", error), ("error_description", description)],
                    ),
                })
            }
            Err((error, description)) => return Err(oauth(error, description, 400)),
        };
        let provider = snap
            .sign_in
            .as_ref()
            .map(|s| s.oauth_provider.clone())
            .unwrap_or_default();
        drop(snap);
        let needed = server_scopes(&scope);
        let request = AuthRequest {
            client_id: client.client_id,
            client_name: client.client_name,
            redirect_uri,
            state,
            challenge,
            resource,
            scope,
        };
        let ticket = random_token()?;
        let now = unix_now();
        self.put_pending(
            &ticket,
            &Pending::Authorization(request),
            now + TICKET_SECONDS,
        )
        .await?;
        // Signed in already, and the IdP granted what this server needs: to the consent page.
        // Otherwise to the IdP, asking for those scopes (it decides what the person holds).
        let signed_in = self.session(session).await?;
        if signed_in.is_some_and(|p| needed.iter().all(|n| p.idp_scopes.contains(n))) {
            return Ok(Answer::Redirect {
                url: format!("{}{}", self.base_url, consent_path(&ticket)),
            });
        }
        let then = Then::Path {
            path: consent_path(&ticket),
        };
        self.send_to_sign_in(&provider, then, browser, &needed)
            .await
    }

    /// `/oauth2/signin?next=…`: sign in, then back to `next`, one of Sluice's connect pages
    /// (never another site: `next` is a path checked here and kept server-side).
    pub(super) async fn sign_in_then(
        &self,
        next: &str,
        browser: String,
        (session, console_state): (Option<&str>, Option<&str>),
    ) -> Reply {
        let _ = session;
        if next == CONSOLE {
            return self.console_sign_in(browser, console_state).await;
        }
        let local = next.starts_with("/oauth/v1/connect/")
            && next.len() <= 2048
            && !next.contains("//")
            && !next.contains(['\\', '\r', '\n', '#']);
        if !local {
            return Err(oauth(
                "invalid_request",
                "next must be a connect link of this Sluice",
                400,
            ));
        }
        let provider = self
            .config
            .snapshot()
            .sign_in
            .as_ref()
            .map(|s| s.oauth_provider.clone())
            .ok_or_else(|| Failure::unavailable("sign-in is not configured"))?;
        let then = Then::Path {
            path: next.to_owned(),
        };
        self.send_to_sign_in(&provider, then, browser, &[]).await
    }

    /// A connect link of a person who signs in at Sluice opens only in a browser signed in as
    /// that person: a leaked link is of no use to anyone else. Other principals (tokens,
    /// owners, apps) have no browser identity: their link is the proof.
    pub(super) async fn signed_in_as(
        &self,
        who: &crate::vault::Who,
        session: Option<&str>,
        (provider, link): (&str, &str),
    ) -> Result<(), Failure> {
        let issuer = match &self.config.snapshot().sign_in {
            Some(s) => s.issuer.clone(),
            None => return Ok(()),
        };
        if !who.key.starts_with(&format!("jwt:{issuer}:")) {
            return Ok(());
        }
        match self.session(session).await? {
            Some(person) if person.principal() == who.key => Ok(()),
            _ => {
                let next = format!(
                    "/oauth/v1/connect/{provider}?{}",
                    super::upstream::serde_urlencoded(&[("link", link.to_owned())])
                );
                let query = super::upstream::serde_urlencoded(&[("next", next)]);
                Err(Failure::SignInFirst {
                    who: who.display.clone(),
                    sign_in_url: format!("{}/oauth2/signin?{query}", self.base_url),
                })
            }
        }
    }

    /// The IdP's authorization URL for a sign-in that continues at `then`.
    pub(super) async fn send_to_sign_in(
        &self,
        provider: &str,
        then: Then,
        browser: String,
        extra_scopes: &[String],
    ) -> Reply {
        let p = self.provider(provider, GrantType::AuthorizationCode)?;
        let (state, nonce, verifier) = (random_token()?, random_token()?, random_token()?);
        let challenge = super::pkce_challenge(&verifier);
        let mut scopes = vec!["openid".to_owned()];
        for s in p.scopes.iter().chain(extra_scopes) {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        let query = super::upstream::serde_urlencoded(&[
            ("response_type", "code".to_owned()),
            ("client_id", p.client_id.clone()),
            ("redirect_uri", format!("{}{CALLBACK_PATH}", self.base_url)),
            ("scope", scopes.join(" ")),
            ("state", state.clone()),
            ("nonce", nonce.clone()),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256".to_owned()),
        ]);
        let pending = Pending::SignIn {
            then,
            nonce,
            verifier,
            browser,
            asked: scopes,
        };
        self.put_pending(&state, &pending, unix_now() + TICKET_SECONDS)
            .await?;
        let endpoint = p.authorization_endpoint.as_deref().unwrap_or_default();
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        Ok(Answer::SignIn {
            url: format!("{endpoint}{sep}{query}"),
            state,
        })
    }

    /// The IdP's redirect back: in the browser that went there, the code exchanged, the ID
    /// token verified (signature, issuer, audience, expiry, nonce), a session made.
    pub(super) async fn signed_in(
        &self,
        state: &str,
        (code, error): (Option<String>, Option<String>),
        browser: Option<&str>,
    ) -> Reply {
        let Some(Pending::SignIn {
            then,
            nonce,
            verifier,
            browser: bound,
            asked,
        }) = self.take_pending(state, slot::SIGN_IN, true).await?
        else {
            return Err(Failure::BadState);
        };
        if !super::same_browser(Some(bound), browser) {
            self.refused_record(
                &json!({"ts": unix_now(), "event": "oauth2.signin", "outcome": "other_browser"}),
            );
            return Err(Failure::BadState);
        }
        let snap = self.config.snapshot();
        let sign_in = snap
            .sign_in
            .clone()
            .ok_or_else(|| Failure::unavailable("sign-in is not configured"))?;
        let p = self.provider(&sign_in.oauth_provider, GrantType::AuthorizationCode)?;
        let upstream = |error: String| Failure::Upstream {
            provider: p.name.clone(),
            error: super::clip(&error),
        };
        if let Some(error) = error {
            return Err(upstream(error));
        }
        let code = code.ok_or_else(|| upstream("no code in the answer".into()))?;
        let form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("redirect_uri", format!("{}{CALLBACK_PATH}", self.base_url)),
            ("code_verifier", verifier),
        ];
        let answer = self
            .call_token_endpoint(&p, form)
            .await
            .map_err(|e| upstream(e.text()))?;
        let id_token = answer
            .id_token
            .ok_or_else(|| upstream("no ID token in the answer (is `openid` allowed?)".into()))?;
        let now = unix_now();
        let mut person = person_of(&snap, &sign_in, (&id_token, &p.client_id, &nonce), now)
            .await
            .map_err(upstream)?;
        // What the IdP granted (RFC 6749 §5.1: no `scope` in the answer means all asked for).
        person.idp_scopes = match &answer.scope {
            Some(granted) => granted.split_whitespace().map(str::to_owned).collect(),
            None => asked,
        };
        let secret = random_token()?;
        self.put_pending(
            &secret,
            &Pending::Session(person.clone()),
            person.expires_at,
        )
        .await?;
        self.audit_record(&json!({"ts": now, "event": "oauth2.signin", "principal": person.principal(), "outcome": "ok"}));
        let next = match then {
            Then::Console { tab } => self.console_redirect(&person, &tab).await?,
            Then::Path { path } => format!("{}{path}", self.base_url),
        };
        Ok(Answer::Session {
            secret,
            max_age: sign_in.session_seconds,
            next,
        })
    }

    /// What the consent page of `ticket` shows the signed-in person.
    pub(super) async fn view_authorization(&self, ticket: &str, session: Option<&str>) -> Reply {
        let person = self.session(session).await?.ok_or_else(signed_out)?;
        let nonce = self.consent_nonce(session.unwrap_or_default(), ticket);
        let Some(Pending::Authorization(request)) =
            self.take_pending(ticket, slot::TICKET, false).await?
        else {
            return Err(Failure::BadState);
        };
        let snap = self.config.snapshot();
        let resource_name = snap
            .mcp_servers
            .values()
            .find(|s| s.resource == request.resource)
            .map(|s| s.display_name.clone())
            .unwrap_or_else(|| request.resource.clone());
        Ok(Answer::Authorization {
            client_name: request.client_name,
            client_id: request.client_id,
            redirect_uri: request.redirect_uri,
            resource: request.resource,
            resource_name,
            who: person.display(),
            scope: person.holds(&request.scope),
            nonce,
        })
    }

    /// The anti-forgery value of a consent page: bound to the browser's session and the
    /// ticket, so only the page Sluice served this browser for this request can approve it
    /// (nothing a sibling site can plant in a cookie stands in for it).
    fn consent_nonce(&self, session: &str, ticket: &str) -> String {
        use hmac::Mac;
        let key = self.key.derive("consent pages");
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key) else {
            return String::new();
        };
        mac.update(session.as_bytes());
        mac.update(b"\0");
        mac.update(ticket.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The person's decision on `ticket`: a code (or `access_denied`) to the client.
    pub(super) async fn approve(
        &self,
        ticket: &str,
        (session, nonce): (Option<&str>, &str),
        allow: bool,
    ) -> Reply {
        let person = self.session(session).await?.ok_or_else(signed_out)?;
        let expected = self.consent_nonce(session.unwrap_or_default(), ticket);
        if !super::same_secret(&expected, nonce) {
            self.refused_record(&json!({"ts": unix_now(), "event": "oauth2.authorize", "principal": person.principal(), "outcome": "forged_consent"}));
            return Err(oauth(
                "access_denied",
                "this consent did not come from the page Sluice showed this browser",
                403,
            ));
        }
        let Some(Pending::Authorization(mut request)) =
            self.take_pending(ticket, slot::TICKET, true).await?
        else {
            return Err(Failure::BadState);
        };
        // The token holds what the person holds at the IdP (and a refresh token if asked).
        request.scope = person.holds(&request.scope);
        let now = unix_now();
        let (client_id, resource) = (request.client_id.clone(), request.resource.clone());
        let record = |outcome: &str| json!({"ts": now, "event": "oauth2.authorize", "principal": person.principal(), "client_id": client_id, "resource": resource, "outcome": outcome});
        if !allow {
            self.audit_record(&record("denied"));
            return Ok(Answer::Redirect {
                url: self.redirect_to(
                    &request.redirect_uri,
                    request.state.as_deref(),
                    &[
                        ("error", "access_denied"),
                        ("error_description", "the person did not allow it"),
                    ],
                ),
            });
        }
        let code = random_token()?;
        let url = self.redirect_to(
            &request.redirect_uri,
            request.state.as_deref(),
            &[("code", &code)],
        );
        self.put_pending(
            &code,
            &Pending::Code {
                request,
                person: person.clone(),
            },
            now + CODE_SECONDS,
        )
        .await?;
        self.audit_record(&record("allowed"));
        Ok(Answer::Redirect { url })
    }

    /// The live session behind a session cookie, at the issuer people sign in at now.
    pub(super) async fn session(&self, secret: Option<&str>) -> Result<Option<Person>, Failure> {
        let Some(secret) = secret.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let Some(Pending::Session(person)) =
            self.take_pending(secret, slot::SESSION, false).await?
        else {
            return Ok(None);
        };
        let snap = self.config.snapshot();
        let current = snap
            .sign_in
            .as_ref()
            .is_some_and(|s| s.issuer == person.issuer)
            && !snap.signed_out_since(&person.principal(), person.signed_in_at);
        Ok((current && person.expires_at > unix_now()).then_some(person))
    }

    /// The client's redirect URI with `params`, its `state` and `iss` (RFC 9207).
    fn redirect_to(
        &self,
        redirect_uri: &str,
        state: Option<&str>,
        params: &[(&str, &str)],
    ) -> String {
        let mut pairs: Vec<(&str, String)> =
            params.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        if let Some(state) = state {
            pairs.push(("state", state.to_owned()));
        }
        pairs.push(("iss", self.base_url.clone()));
        let sep = if redirect_uri.contains('?') { '&' } else { '?' };
        format!(
            "{redirect_uri}{sep}{}",
            super::upstream::serde_urlencoded(&pairs)
        )
    }
}

/// Who an ID token says signed in: verified with the issuer's keys for Sluice's client there
/// (signature, `iss`, `aud`, expiry), with this sign-in's nonce; the subject is the issuer's
/// `principal_claim`, as for its other tokens.
async fn person_of(
    snap: &crate::config::Snapshot,
    sign_in: &crate::config::issuer::SignIn,
    (id_token, client_id, nonce): (&str, &str, &str),
    now: u64,
) -> Result<Person, String> {
    let claims = snap
        .jwt
        .verify_id_token(sign_in.index, id_token, client_id, now)
        .await
        .map_err(|e| format!("the ID token was refused: {e}"))?;
    let nonce_ok = claims["nonce"]
        .as_str()
        .is_some_and(|n| super::same_secret(n, nonce));
    let principal_claim = &snap.jwt.issuers[sign_in.index].principal_claim;
    let subject = claims[principal_claim.as_str()]
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= 256);
    let (true, Some(subject)) = (nonce_ok, subject) else {
        return Err(format!(
            "the ID token has no usable `{principal_claim}` or not this sign-in's nonce"
        ));
    };
    let name = ["preferred_username", "email", "name"]
        .iter()
        .find_map(|k| claims[*k].as_str())
        .unwrap_or(subject);
    let groups = match sign_in.console.as_ref().map(|c| &claims[c.claim.as_str()]) {
        Some(serde_json::Value::String(v)) => vec![v.clone()],
        Some(serde_json::Value::Array(values)) => values
            .iter()
            .filter_map(|v| v.as_str())
            .filter(|v| v.len() <= 256)
            .take(256)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    Ok(Person {
        issuer: sign_in.issuer.clone(),
        subject: subject.to_owned(),
        name: super::clip(name),
        expires_at: now + sign_in.session_seconds,
        groups,
        idp_scopes: Vec::new(),
        signed_in_at: crate::clock::unix_now_ms(),
    })
}

/// The request's code grant, PKCE challenge, resource (one of the MCP servers) and scopes, or
/// the error to send back to the client: (challenge, resource, scope).
fn checked_request(
    params: &HashMap<String, String>,
    snap: &crate::config::Snapshot,
) -> Result<(String, String, String), (&'static str, &'static str)> {
    let get = |k: &str| params.get(k).map(String::as_str);
    if snap.sign_in.is_none() {
        return Err((
            "temporarily_unavailable",
            "sign-in is not configured here (issuers[].sign_in)",
        ));
    }
    if get("response_type") != Some("code") {
        return Err(("unsupported_response_type", "response_type must be code"));
    }
    let challenge = get("code_challenge").unwrap_or_default();
    if get("code_challenge_method") != Some("S256") || !pkce_value(challenge) {
        return Err((
            "invalid_request",
            "PKCE is required: code_challenge (43 to 128 characters) with code_challenge_method S256",
        ));
    }
    let resource = get("resource").unwrap_or_default().trim_end_matches('/');
    let server = snap
        .mcp_servers
        .values()
        .find(|s| s.enabled && s.resource == resource)
        .ok_or((
            "invalid_target",
            "resource must be the URL of one of Sluice's MCP servers",
        ))?;
    // Only servers the operator opened to this issuer's people, as for the issuer's own tokens.
    let open = snap
        .sign_in
        .as_ref()
        .is_some_and(|s| s.audiences.iter().any(|a| *a == server.resource));
    if !open {
        return Err((
            "invalid_target",
            "this MCP server is not open to people who sign in here (its URL is not among the sign-in issuer's audiences)",
        ));
    }
    let scope = granted_scope(get("scope"), &server.access.scopes);
    Ok((challenge.to_owned(), server.resource.clone(), scope))
}

/// The consent page of a pending authorization, as a path.
fn consent_path(ticket: &str) -> String {
    let query = super::upstream::serde_urlencoded(&[("ticket", ticket.to_owned())]);
    format!("{CONSENT_PATH}?{query}")
}

/// The redirect URI of an authorization request: the one asked for (the client's own), or the
/// client's only one. Refused to the person's face, never redirected to.
fn redirect_uri_of(
    client: &super::clients::ClientDoc,
    asked: Option<&str>,
) -> Result<String, Failure> {
    let uri = match (asked, client.redirect_uris.as_slice()) {
        (Some(uri), _) => uri.to_owned(),
        (None, [only]) => only.clone(),
        (None, _) => return Err(oauth("invalid_request", "redirect_uri is missing", 400)),
    };
    if !super::clients::redirect_uri_registered(client, &uri) {
        return Err(oauth(
            "invalid_request",
            "this redirect_uri is not one the client registered",
            400,
        ));
    }
    Ok(uri)
}

fn signed_out() -> Failure {
    oauth(
        "login_required",
        "this browser is not signed in (or its session ended): start again from your client",
        401,
    )
}

/// The query's parameters; a repeated one is refused (RFC 6749 §3.1).
fn single_params(query: &str) -> Result<HashMap<String, String>, Failure> {
    let mut params = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if params.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err(oauth("invalid_request", "a parameter is repeated", 400));
        }
    }
    Ok(params)
}

/// A PKCE challenge or verifier: 43 to 128 unreserved characters (RFC 7636 §4.1).
pub(super) fn pkce_value(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The scopes granted: those asked for that the MCP server knows (and `offline_access`), or
/// all of the server's when none are asked for.
fn granted_scope(asked: Option<&str>, supported: &[String]) -> String {
    match asked {
        None => supported.join(" "),
        Some(asked) => {
            let mut granted: Vec<&str> = Vec::new();
            for s in asked.split_whitespace() {
                let known = s == "offline_access" || supported.iter().any(|o| o == s);
                if known && !granted.contains(&s) {
                    granted.push(s);
                }
            }
            granted.join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_asked_for_are_granted_when_known() {
        let supported = vec!["mcp".to_owned(), "tools.read".to_owned()];
        assert_eq!(granted_scope(None, &supported), "mcp tools.read");
        assert_eq!(
            granted_scope(Some("mcp offline_access admin mcp"), &supported),
            "mcp offline_access"
        );
        assert!(pkce_value(&"a".repeat(43)) && !pkce_value(&"a".repeat(42)));
        assert!(!pkce_value(&format!("{}+", "a".repeat(43))));
        let q = single_params("a=1&b=2").unwrap();
        assert_eq!(q["b"], "2");
        assert!(single_params("a=1&a=2").is_err());
    }
}
