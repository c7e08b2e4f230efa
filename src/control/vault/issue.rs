//! Client-credentials tokens of Sluice's issuer (`/oauth2/token` on any data plane, answered
//! here where the apps' secrets and the signing keys are): the app's secret checked in constant
//! time, failed attempts limited per client id, the token bound to the app's agent environment.

use serde_json::json;

use super::VaultWorker;
use crate::clock::unix_now;
use crate::control::issuer::{self, AppDoc};
use crate::vault::{Answer, Failure, Reply};

/// Lifetime of an app's access token.
pub const TOKEN_SECONDS: u64 = 900;
/// Failed client authentications allowed per client id and minute.
const FAILURES_PER_MINUTE: u32 = 10;

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
        if self.client_failures(client_id, now, false) >= FAILURES_PER_MINUTE {
            return Err(refuse(
                429,
                "slow_down",
                "too many failed client authentications: wait a minute",
            ));
        }
        let app = match self.store.get(issuer::APP, client_id).await {
            Ok(found) => found.and_then(|r| serde_json::from_value::<AppDoc>(r.body).ok()),
            Err(e) => return Err(Failure::Unavailable(e.to_string())),
        };
        let Some(app) = app.filter(|a| a.secret_matches(&self.key, client_secret)) else {
            self.client_failures(client_id, now, true);
            self.audit_record(&json!({"ts": now, "event": "issuer.token", "client_id": client_id, "outcome": "invalid_client"}));
            return Err(refuse(
                401,
                "invalid_client",
                "unknown client or wrong secret",
            ));
        };
        let snap = self.config.snapshot();
        let prefix = format!("{}/{}/{}", crate::config::agent::PREFIX, app.agent, app.env);
        let route = snap.routes.iter().find(|r| r.prefix == prefix);
        let Some((route, audience)) =
            route.and_then(|r| r.access.required_claims.get("aud").map(|aud| (r, aud)))
        else {
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
        let keys = match self.store.list(issuer::SIGNING_KEY).await {
            Ok(r) => issuer::keys_of(&r),
            Err(e) => return Err(Failure::Unavailable(e.to_string())),
        };
        let key = issuer::signing(&keys, now)
            .ok_or_else(|| Failure::Unavailable("the issuer has no signing key".into()))?;
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|e| Failure::Unavailable(e.to_string()))?;
        let scope = granted.join(" ");
        let claims = json!({
            "iss": snap.public_base_url,
            "sub": app.client_id,
            "aud": audience,
            "iat": now,
            "exp": now + TOKEN_SECONDS,
            "jti": hex::encode(jti),
            "client_id": app.client_id,
            "scope": scope,
            "agent": app.agent,
            "env": app.env,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        header.typ = Some("at+jwt".into());
        let token = key
            .encoding_key(&self.key)
            .and_then(|k| Ok(jsonwebtoken::encode(&header, &claims, &k)?))
            .map_err(|e| Failure::Unavailable(e.to_string()))?;
        self.audit_record(&json!({"ts": now, "event": "issuer.token", "client_id": app.client_id, "agent": app.agent, "env": app.env, "jti": claims["jti"], "outcome": "issued"}));
        Ok(Answer::Issued {
            access_token: token,
            expires_in: TOKEN_SECONDS,
            scope,
        })
    }

    /// Failed authentications of `client_id` this minute (counting one more when `failed`).
    fn client_failures(&self, client_id: &str, now: u64, failed: bool) -> u32 {
        let minute = now / 60;
        let mut map = self
            .client_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (m, _)| *m == minute);
        }
        let entry = map.entry(client_id.to_owned()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if failed {
            entry.1 += 1;
        }
        entry.1
    }
}
