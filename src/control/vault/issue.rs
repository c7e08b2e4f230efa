//! Client-credentials tokens of Sluice's issuer (`/oauth2/token` on any data plane, answered
//! here where the apps' secrets and the signing keys are): the app's secret checked in constant
//! time, failed attempts limited per client id, the token bound to the app's agent environment.

use serde_json::json;

use super::VaultWorker;
use crate::clock::unix_now;
use crate::control::issuer::{self, AppDoc, Signer};
use crate::vault::{Answer, Failure, Reply};
use std::sync::Arc;

/// Lifetime of an app's access token unless its agent says otherwise.
pub const TOKEN_SECONDS: u64 = 900;
/// Failed client authentications allowed per client id and minute.
const FAILURES_PER_MINUTE: u32 = 10;
/// Client ids whose failures are counted apart, within a minute.
const MAX_TRACKED_CLIENTS: usize = 10_000;
/// The failure map's entry that says in which minute it was last swept.
const SWEPT: &str = "\0swept";
/// Longest client id written to the refused-requests log.
const MAX_CLIENT_ID_SHOWN: usize = 64;

fn refuse(status: u16, error: &str, description: impl Into<String>) -> Failure {
    Failure::OAuth {
        error: error.into(),
        description: description.into(),
        status,
    }
}

impl VaultWorker {
    pub(super) async fn app_token(
        &self,
        client_id: &str,
        client_secret: &str,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Reply {
        let now = unix_now();
        let app = self.authenticate_app(client_id, client_secret, now).await?;
        let snap = self.config.snapshot();
        let Some((route, audience)) = snap.oauth_environment(&app.agent, &app.env) else {
            return Err(refuse(
                400,
                "unauthorized_client",
                format!(
                    "agent `{}` environment `{}` does not take OAuth tokens now",
                    app.agent, app.env
                ),
            ));
        };
        if resource.is_some_and(|r| r.trim_end_matches('/') != audience) {
            return Err(refuse(
                400,
                "invalid_target",
                format!("this app's tokens are for {audience}"),
            ));
        }
        let granted: Vec<&str> = match scope {
            None => route.access.scopes.iter().map(String::as_str).collect(),
            Some(asked) => {
                let asked: Vec<&str> = asked.split_whitespace().collect();
                if let Some(s) = asked
                    .iter()
                    .find(|s| !route.access.scopes.iter().any(|o| o == *s))
                {
                    return Err(refuse(
                        400,
                        "invalid_scope",
                        format!("`{s}` is not a scope of this environment"),
                    ));
                }
                asked
            }
        };
        let signer = self.signer(now).await?;
        let scope = granted.join(" ");
        let lifetime = route.token_lifetime.unwrap_or(TOKEN_SECONDS);
        let claims = issuer::AccessToken {
            issuer: &snap.public_base_url,
            subject: &app.client_id,
            client_id: &app.client_id,
            audience,
            scope: &scope,
            agent: &app.agent,
            env: &app.env,
            lifetime,
        }
        .claims(now)
        .map_err(|e| Failure::unavailable(e.to_string()))?;
        let token = signer
            .sign(&claims, "at+jwt")
            .map_err(|e| Failure::unavailable(e.to_string()))?;
        self.audit_record(&json!({"ts": now, "event": "issuer.token", "client_id": app.client_id, "agent": app.agent, "env": app.env, "jti": claims["jti"], "outcome": "issued"}));
        Ok(Answer::Issued {
            access_token: token,
            expires_in: lifetime,
            scope,
        })
    }

    /// The key that signs now, opened once per configuration revision (a rotation is a new
    /// revision) instead of once per token.
    pub(super) async fn signer(&self, now: u64) -> Result<Arc<Signer>, Failure> {
        let revision = self.config.snapshot().control_revision;
        let cached = self
            .signer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((_, signer)) = cached.filter(|(at, _)| *at == revision) {
            return Ok(signer);
        }
        let signer = issuer::current_signer(&*self.store, &self.key, now)
            .await
            .map_err(|e| Failure::unavailable(e.to_string()))?;
        let signer = Arc::new(signer);
        *self.signer.lock().unwrap_or_else(|p| p.into_inner()) = Some((revision, signer.clone()));
        Ok(signer)
    }

    /// The app whose id and secret these are. The right secret is never refused (secrets are
    /// 256 random bits: guessing is hopeless, and a throttle that refused it would let anyone
    /// who knows a client id lock the app out); wrong ones are counted per client id, and past
    /// [`FAILURES_PER_MINUTE`] answered 429 without a record, so a flood cannot fill the log.
    async fn authenticate_app(
        &self,
        client_id: &str,
        client_secret: &str,
        now: u64,
    ) -> Result<AppDoc, Failure> {
        let app = match self.store.get(issuer::APP, client_id).await {
            Ok(found) => found.and_then(|r| serde_json::from_value::<AppDoc>(r.body).ok()),
            Err(e) => return Err(Failure::unavailable(e.to_string())),
        };
        if let Some(app) = app.filter(|a| a.secret_matches(&self.key, client_secret)) {
            return Ok(app);
        }
        if self.client_failures(client_id, now, true) > FAILURES_PER_MINUTE {
            return Err(refuse(
                429,
                "slow_down",
                "too many failed client authentications: wait a minute",
            ));
        }
        // A refused authentication is a refused request: its own stream, the attacker's
        // input cut like every other field.
        let shown: String = client_id.chars().take(MAX_CLIENT_ID_SHOWN).collect();
        self.refused_record(&json!({"ts": now, "event": "issuer.client_auth", "client_id": shown, "outcome": "invalid_client"}));
        Err(refuse(
            401,
            "invalid_client",
            "unknown client or wrong secret",
        ))
    }

    /// The claims of a live token of Sluice's issuer (signature, expiry, audience, app and
    /// revocation checked), or `None`.
    async fn live_claims(&self, token: &str, now: u64) -> Option<serde_json::Value> {
        let snap = self.config.snapshot();
        let principal = snap.jwt.verify(token, now).await.ok()?;
        (principal.app().is_some() && !snap.app_token_revoked(&principal))
            .then(|| principal.claims.clone())
    }

    /// RFC 7662: `{"active": false}` for anything but a live token of Sluice's issuer.
    pub(super) async fn introspect(
        &self,
        client_id: &str,
        client_secret: &str,
        token: &str,
    ) -> Reply {
        let now = unix_now();
        let app = self.authenticate_app(client_id, client_secret, now).await?;
        // An app learns about its own tokens only: another app's are as good as unknown.
        let own = |claims: &serde_json::Value| {
            claims["client_id"].as_str() == Some(app.client_id.as_str())
        };
        let doc = match self.live_claims(token, now).await.filter(own) {
            Some(mut claims) => {
                claims["active"] = true.into();
                claims["token_type"] = "Bearer".into();
                claims
            }
            None => json!({ "active": false }),
        };
        Ok(Answer::Introspection { doc })
    }

    /// RFC 7009: the app's own token is refused everywhere from the next revision on (its
    /// `jti`, kept until it expires). A token that is not valid anyway is "revoked" too.
    pub(super) async fn revoke_app_token(
        &self,
        client_id: &str,
        client_secret: &str,
        token: &str,
    ) -> Reply {
        let now = unix_now();
        let app = self.authenticate_app(client_id, client_secret, now).await?;
        let Some(claims) = self.live_claims(token, now).await else {
            return Ok(Answer::Revoked);
        };
        if claims["client_id"].as_str() != Some(app.client_id.as_str()) {
            return Err(refuse(
                400,
                "unauthorized_client",
                "this token was not issued to this client",
            ));
        }
        let (Some(jti), Some(exp)) = (claims["jti"].as_str(), claims["exp"].as_u64()) else {
            return Ok(Answer::Revoked);
        };
        let op = crate::control::store::Op::Create {
            kind: issuer::REVOKED.into(),
            name: jti.to_owned(),
            body: json!({ "exp": exp, "client_id": app.client_id }),
        };
        match self.store.apply(&[op]).await {
            Ok(_) | Err(crate::control::store::StoreError::Conflict { .. }) => {}
            Err(e) => return Err(Failure::unavailable(e.to_string())),
        }
        self.audit_record(
            &json!({"ts": now, "event": "issuer.revoke", "client_id": app.client_id, "jti": jti}),
        );
        Ok(Answer::Revoked)
    }

    /// Forgets revocations of tokens that have expired since.
    pub(super) async fn sweep_revoked(&self, now: u64) {
        let Ok(rows) = self.store.list(issuer::REVOKED).await else {
            return;
        };
        let expired: Vec<_> = rows
            .into_iter()
            .filter(|r| r.body["exp"].as_u64().is_some_and(|exp| exp + 60 < now))
            .map(|r| crate::control::store::Op::Delete {
                kind: issuer::REVOKED.into(),
                name: r.name,
            })
            .collect();
        if !expired.is_empty() {
            if let Err(e) = self.store.apply(&expired).await {
                log::warn!("issuer: expired revocations not removed: {e}");
            }
        }
    }

    /// Failed authentications of `client_id` this minute (counting one more when `failed`).
    fn client_failures(&self, client_id: &str, now: u64, failed: bool) -> u32 {
        let minute = now / 60;
        let mut map = self
            .client_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Earlier minutes' entries go once the map is full, and only when one could have
        // ended (a flood within one minute does not rescan the map on every failure).
        let swept = map.get(SWEPT).map(|(m, _)| *m);
        if map.len() >= MAX_TRACKED_CLIENTS && swept != Some(minute) {
            map.retain(|_, (m, _)| *m == minute);
            map.insert(SWEPT.to_owned(), (minute, 0));
        }
        let mut key: String = client_id.chars().take(MAX_CLIENT_ID_SHOWN).collect();
        // Full of this minute's ids (a flood of made-up ones): every new id shares one count,
        // so memory stays bounded and the flood soon gets 429 without a record.
        if map.len() >= MAX_TRACKED_CLIENTS && !map.contains_key(&key) {
            key = String::from("\0others");
        }
        let entry = map.entry(key).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if failed {
            entry.1 += 1;
        }
        entry.1
    }
}
