//! Tokens for signed-in people's MCP clients (`/oauth2/token`, public clients): the
//! `authorization_code` grant (the code single use, bound to its client, redirect URI, PKCE
//! verifier and resource) and the `refresh_token` grant (refresh tokens rotate on every use;
//! one presented again ends its whole family, RFC 9700 §4.14.2), and RFC 7009 revocation.
//!
//! Access tokens are JWTs of Sluice's issuer for one MCP server (`aud`), naming the person
//! (`sub` and `sluice_idp`) and the client. A refresh token is `{family}.{secret}`; its family
//! is sealed in the pending table under `family\0{family}` with the digest of the current
//! secret, taken (deleted) while it is rotated, so one of two concurrent uses wins.

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

use super::sealed::{slot, Pending};
use super::signin::{pkce_value, Person};
use super::{pkce_challenge, random_token, same_secret, sha256_hex, VaultWorker};
use crate::clock::unix_now;
use crate::control::issuer;
use crate::vault::{Answer, Failure, Reply};

/// Lifetime of a person's access token (clients refresh within the last 5 minutes).
const ACCESS_SECONDS: u64 = 3600;
/// How long an exchanged code is remembered (to revoke what it gave if it comes again).
const USED_CODE_SECONDS: u64 = 600;

/// A refresh-token family as sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Family {
    pub(super) client_id: String,
    pub(super) resource: String,
    pub(super) scope: String,
    pub(super) person: Person,
    /// SHA-256 (hex) of the current refresh token's secret.
    pub(super) secret: String,
    /// The last access token issued, to revoke it with the family.
    pub(super) jti: String,
    pub(super) exp: u64,
    /// Earlier access tokens of the family that have not expired (revoked with it too).
    #[serde(default)]
    pub(super) earlier: Vec<(String, u64)>,
    /// When the family ends whatever its use (`sign_in.refresh_days` after the sign-in).
    #[serde(default)]
    pub(super) until: u64,
    /// When its code was exchanged, Unix milliseconds (an operator's sign-out ends the families
    /// from before it).
    #[serde(default)]
    pub(super) started: u64,
}

/// Earlier access tokens remembered per family at most (an hour's worth of refreshes).
const MAX_EARLIER: usize = 32;

fn grant_error(error: &str, description: &str) -> Failure {
    Failure::OAuth {
        error: error.into(),
        description: description.into(),
        status: 400,
    }
}

fn family_key(id: &str) -> String {
    format!("family\0{id}")
}

impl VaultWorker {
    pub(super) async fn user_token(&self, form: BTreeMap<String, String>) -> Reply {
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => self.exchange_code(&form).await,
            Some("refresh_token") => self.refresh_family(&form).await,
            _ => Err(grant_error(
                "unsupported_grant_type",
                "public clients use authorization_code or refresh_token",
            )),
        }
    }

    /// The code's tokens, once. A code that comes again revokes what it gave.
    async fn exchange_code(&self, form: &BTreeMap<String, String>) -> Reply {
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        let bad = || {
            grant_error(
                "invalid_grant",
                "the code is unknown, used, expired or not for this request",
            )
        };
        let code = get("code");
        let (request, person) = match self.take_pending(code, slot::CODE, true).await? {
            Some(Pending::Code { request, person }) => (request, person),
            Some(Pending::UsedCode { family, jti, exp }) => {
                self.end_family(&family, Some((&jti, exp)), "code_replayed")
                    .await;
                return Err(grant_error(
                    "invalid_grant",
                    "this code was used before: the tokens it gave are revoked",
                ));
            }
            _ => return Err(bad()),
        };
        let verifier = get("code_verifier");
        let challenge_ok =
            pkce_value(verifier) && same_secret(&pkce_challenge(verifier), &request.challenge);
        let resource = get("resource").trim_end_matches('/');
        let matches = request.client_id == get("client_id")
            && request.redirect_uri == get("redirect_uri")
            && (resource.is_empty() || resource == request.resource);
        // The code is used up either way: a wrong verifier cannot be tried again.
        if !challenge_ok || !matches {
            self.refused_record(&json!({"ts": unix_now(), "event": "oauth2.token", "client_id": clip(get("client_id")), "outcome": if challenge_ok { "mismatch" } else { "pkce_failed" }}));
            return Err(bad());
        }
        let client = self.grant_client(&request.client_id).await?;
        let family_id = random_token()?;
        let refresh_seconds = self
            .config
            .snapshot()
            .sign_in
            .as_ref()
            .map_or(0, |s| s.refresh_seconds);
        let family = Family {
            client_id: request.client_id.clone(),
            resource: request.resource,
            scope: request.scope,
            person,
            secret: String::new(),
            jti: String::new(),
            exp: 0,
            earlier: Vec::new(),
            until: unix_now() + refresh_seconds,
            started: crate::clock::unix_now_ms(),
        };
        let (answer, family) = self.issue(&family_id, family).await?;
        let used = Pending::UsedCode {
            family: family_id,
            jti: family.jti.clone(),
            exp: family.exp,
        };
        self.put_pending(code, &used, unix_now() + USED_CODE_SECONDS)
            .await?;
        self.client_used(&client).await;
        Ok(answer)
    }

    /// A new access token and refresh token for the family (stored with the new secret).
    async fn issue(
        &self,
        family_id: &str,
        mut family: Family,
    ) -> Result<(Answer, Family), Failure> {
        let now = unix_now();
        let snap = self.config.snapshot();
        let alive = snap
            .sign_in
            .as_ref()
            .is_some_and(|s| s.issuer == family.person.issuer)
            && !snap.revoked_clients.contains(&family.client_id)
            && !snap.signed_out_since(&family.person.principal(), family.started);
        if !alive {
            return Err(grant_error(
                "invalid_grant",
                "this client was revoked or sign-in there ended: sign in again",
            ));
        }
        let signer = self.signer(now).await?;
        let mut claims = issuer::AccessToken {
            issuer: &snap.public_base_url,
            subject: &family.person.subject,
            client_id: &family.client_id,
            audience: &family.resource,
            scope: &family.scope,
            agent: "",
            env: "",
            lifetime: ACCESS_SECONDS,
        }
        .claims(now)
        .map_err(|e| Failure::unavailable(e.to_string()))?;
        if let Some(map) = claims.as_object_mut() {
            map.remove("agent");
            map.remove("env");
            map.insert(
                crate::auth::jwt::SIGNED_IN_AT.into(),
                family.person.issuer.clone().into(),
            );
            map.insert(
                crate::auth::jwt::ISSUED_MS.into(),
                crate::clock::unix_now_ms().into(),
            );
        }
        let access_token = signer
            .sign(&claims, "at+jwt")
            .map_err(|e| Failure::unavailable(e.to_string()))?;
        let secret = random_token()?;
        family.secret = sha256_hex(&secret);
        if !family.jti.is_empty() {
            family.earlier.push((family.jti.clone(), family.exp));
        }
        family.earlier.retain(|(_, exp)| *exp > now);
        let excess = family.earlier.len().saturating_sub(MAX_EARLIER);
        family.earlier.drain(..excess);
        family.jti = claims["jti"].as_str().unwrap_or_default().to_owned();
        family.exp = now + ACCESS_SECONDS;
        self.put_pending(
            &family_key(family_id),
            &Pending::Family(family.clone()),
            family.until,
        )
        .await?;
        self.audit_record(&json!({"ts": now, "event": "oauth2.token", "principal": family.person.principal(), "client_id": family.client_id, "resource": family.resource, "jti": family.jti, "outcome": "issued"}));
        let answer = Answer::UserTokens {
            access_token,
            expires_in: ACCESS_SECONDS,
            scope: family.scope.clone(),
            refresh_token: format!("{family_id}.{secret}"),
        };
        Ok((answer, family))
    }

    /// Rotates a refresh token. The family is taken while this runs; a token that is not the
    /// current one (stolen and used by the other party first, or replayed) ends the family.
    async fn refresh_family(&self, form: &BTreeMap<String, String>) -> Reply {
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        let bad = || {
            grant_error(
                "invalid_grant",
                "the refresh token is unknown, used, revoked or expired",
            )
        };
        let Some((family_id, secret)) = get("refresh_token").split_once('.') else {
            return Err(bad());
        };
        let key = family_key(family_id);
        let Some(Pending::Family(mut family)) = self.take_pending(&key, slot::FAMILY, true).await?
        else {
            return Err(bad());
        };
        if family.until <= unix_now() {
            return Err(grant_error(
                "invalid_grant",
                "this sign-in has ended (sign_in.refresh_days): sign in again",
            ));
        }
        if !same_secret(&sha256_hex(secret), &family.secret) {
            // Not put back: the family ends, its access tokens with it.
            self.revoke_family_tokens(&family).await;
            self.refused_record(&json!({"ts": unix_now(), "event": "oauth2.refresh", "principal": family.person.principal(), "client_id": family.client_id, "outcome": "reused"}));
            return Err(bad());
        }
        let resource = get("resource").trim_end_matches('/');
        let wrong_client = family.client_id != get("client_id");
        let wrong_resource = !resource.is_empty() && resource != family.resource;
        let narrower = match form.get("scope") {
            None => Some(family.scope.clone()),
            Some(asked) => {
                let have: Vec<&str> = family.scope.split_whitespace().collect();
                asked
                    .split_whitespace()
                    .all(|s| have.contains(&s))
                    .then(|| asked.split_whitespace().collect::<Vec<_>>().join(" "))
            }
        };
        if wrong_client || wrong_resource || narrower.is_none() {
            let until = family.until;
            self.put_pending(&key, &Pending::Family(family), until)
                .await?;
            return Err(match (wrong_client, wrong_resource) {
                (true, _) => bad(),
                (_, true) => grant_error(
                    "invalid_target",
                    "this refresh token is for another resource",
                ),
                _ => grant_error(
                    "invalid_scope",
                    "a refresh may keep or narrow the scopes, not add any",
                ),
            });
        }
        family.scope = narrower.unwrap_or_default();
        // A revoked or forgotten client's family ends (it is not put back).
        let client = self
            .grant_client(&family.client_id)
            .await
            .map_err(|_| bad())?;
        let (answer, _) = self.issue(family_id, family).await?;
        self.client_used(&client).await;
        Ok(answer)
    }

    /// RFC 7009 for a public client: its refresh token (the family ends) or access token.
    /// Another client's token, or none at all, is answered as revoked and left alone.
    pub(super) async fn revoke_user_token(&self, client_id: &str, token: &str) -> Reply {
        if let Some((family_id, secret)) = token.split_once('.').filter(|(_, s)| !s.contains('.')) {
            let key = family_key(family_id);
            if let Some(Pending::Family(family)) =
                self.take_pending(&key, slot::FAMILY, true).await?
            {
                if family.client_id == client_id && same_secret(&sha256_hex(secret), &family.secret)
                {
                    self.revoke_family_tokens(&family).await;
                    self.audit_record(&json!({"ts": unix_now(), "event": "oauth2.revoke", "principal": family.person.principal(), "client_id": client_id}));
                } else {
                    let until = family.until;
                    self.put_pending(&key, &Pending::Family(family), until)
                        .await?;
                }
            }
            return Ok(Answer::Revoked);
        }
        let snap = self.config.snapshot();
        if let Ok(principal) = snap.jwt.verify(token, unix_now()).await {
            let own = principal.audience_bound
                && principal.app().is_none()
                && principal.claims["client_id"].as_str() == Some(client_id);
            if let (true, Some(jti), Some(exp)) = (
                own,
                principal.claims["jti"].as_str(),
                principal.claims["exp"].as_u64(),
            ) {
                self.revoke_jti(jti, exp, client_id).await;
            }
        }
        Ok(Answer::Revoked)
    }

    /// Ends a family (after a replayed code), with its current access token and the one the
    /// code gave.
    async fn end_family(&self, family_id: &str, first: Option<(&str, u64)>, why: &str) {
        if let Ok(Some(Pending::Family(family))) = self
            .take_pending(&family_key(family_id), slot::FAMILY, true)
            .await
        {
            self.revoke_family_tokens(&family).await;
            self.refused_record(&json!({"ts": unix_now(), "event": "oauth2.token", "principal": family.person.principal(), "client_id": family.client_id, "outcome": why}));
        }
        if let Some((jti, exp)) = first {
            self.revoke_jti(jti, exp, "").await;
        }
    }

    /// Every live access token of the family is refused from the next revision on (one
    /// revision for all of them).
    async fn revoke_family_tokens(&self, family: &Family) {
        let mut tokens: Vec<(&str, u64)> = vec![(&family.jti, family.exp)];
        tokens.extend(family.earlier.iter().map(|(j, e)| (j.as_str(), *e)));
        self.revoke_jtis(&tokens, &family.client_id).await;
    }

    /// The access token `jti` is refused everywhere from the next revision on.
    async fn revoke_jti(&self, jti: &str, exp: u64, client_id: &str) {
        self.revoke_jtis(&[(jti, exp)], client_id).await;
    }

    async fn revoke_jtis(&self, tokens: &[(&str, u64)], client_id: &str) {
        use crate::control::store::{Op, StoreError};
        let now = unix_now();
        let ops: Vec<Op> = tokens
            .iter()
            .filter(|(jti, exp)| !jti.is_empty() && *exp > now)
            .map(|(jti, exp)| Op::Create {
                kind: issuer::REVOKED.into(),
                name: (*jti).to_owned(),
                body: json!({ "exp": exp, "client_id": client_id }),
            })
            .collect();
        if ops.is_empty() {
            return;
        }
        match self.store.apply(&ops).await {
            Ok(_) => {}
            // One was revoked already: the others one by one.
            Err(StoreError::Conflict { .. }) => {
                for op in ops {
                    let _ = self.store.apply(&[op]).await;
                }
            }
            Err(e) => log::warn!("oauth2: tokens were not revoked: {e}"),
        }
    }
}

fn clip(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(64).collect()
}
