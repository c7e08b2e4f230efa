//! Console sign-in: an operator signs in at the company IdP exactly as a person does for an
//! MCP client (`/oauth2/signin?next=console` on the proxy listener, the same Sluice session),
//! and comes back to `{console.url}/ui/#signin={code}`: a single-use code (60 s) the console
//! trades at `POST /v1/console/session` for a token of Sluice's issuer whose audience is the
//! admin API only. The role is not in the token: the admin API maps the person's claim values
//! (kept in the token) with the configuration of the moment, so a role removed from the
//! mapping applies at once.

use serde_json::json;

use super::sealed::{slot, Pending};
use super::{random_token, VaultWorker};
use crate::clock::unix_now;
use crate::config::issuer::CONSOLE_AUDIENCE;
use crate::control::issuer;
use crate::vault::{Answer, Failure, Reply};

/// How long a console sign-in lasts.
const CONSOLE_SECONDS: u64 = 8 * 3600;
/// How long the code in the console's URL lives.
const CODE_SECONDS: u64 = 60;
/// The client id in console tokens.
pub const CONSOLE_CLIENT: &str = "sluice-console";

fn no_console() -> Failure {
    Failure::OAuth {
        error: "invalid_request".into(),
        description: "console sign-in is not configured (issuers[].sign_in.console)".into(),
        status: 400,
    }
}

impl VaultWorker {
    /// Always to the IdP (a Sluice session is not enough: the role claim is read fresh at
    /// every console sign-in), for the console tab that keeps `tab_state`.
    pub(super) async fn console_sign_in(&self, browser: String, tab_state: Option<&str>) -> Reply {
        let provider = match &self.config.snapshot().sign_in {
            Some(s) if s.console.is_some() => s.oauth_provider.clone(),
            _ => return Err(no_console()),
        };
        let tab = tab_state
            .filter(|t| (16..=128).contains(&t.len()))
            .ok_or_else(|| Failure::OAuth {
                error: "invalid_request".into(),
                description: "start the sign-in from the console (its tab keeps a state)".into(),
                status: 400,
            })?;
        let then = super::signin::Then::Console {
            tab: super::sha256_hex(tab),
        };
        self.send_to_sign_in(&provider, then, browser, &[]).await
    }

    /// The console's URL with a fresh single-use code for `person`.
    pub(super) async fn console_redirect(
        &self,
        person: &super::signin::Person,
        tab: &str,
    ) -> Result<String, Failure> {
        let url = match &self.config.snapshot().sign_in {
            Some(s) => s.console.as_ref().map(|c| c.url.clone()),
            None => None,
        }
        .ok_or_else(no_console)?;
        let code = random_token()?;
        self.put_pending(
            &code,
            &Pending::ConsoleCode {
                person: person.clone(),
                tab: tab.to_owned(),
            },
            unix_now() + CODE_SECONDS,
        )
        .await?;
        Ok(format!("{url}/ui/#signin={code}"))
    }

    /// The console's token for a code, when the person's claim values map to a role now.
    pub(super) async fn console_session(&self, code: &str, state: &str) -> Reply {
        let taken = self.take_pending(code, slot::CONSOLE, true).await?;
        // The code opens a session only in the tab that started the sign-in: a code someone
        // sends a victim (to have them work signed in as someone else) finds no state there.
        let person = match taken {
            Some(Pending::ConsoleCode { person, tab })
                if super::same_secret(&super::sha256_hex(state), &tab) =>
            {
                Some(person)
            }
            _ => None,
        };
        let Some(person) = person else {
            return Err(Failure::OAuth {
                error: "invalid_grant".into(),
                description: "this sign-in code is unknown, used or expired: sign in again".into(),
                status: 400,
            });
        };
        let now = unix_now();
        let snap = self.config.snapshot();
        let role = snap
            .sign_in
            .as_ref()
            .filter(|s| s.issuer == person.issuer)
            .and_then(|s| s.console_role(&person.groups));
        let Some(role) = role else {
            self.refused_record(&json!({"ts": now, "event": "console.signin", "principal": person.principal(), "outcome": "no_role"}));
            return Err(Failure::OAuth {
                error: "access_denied".into(),
                description: format!(
                    "{} has no console role: none of their claim values is mapped (issuers[].sign_in.console.roles)",
                    person.principal()
                ),
                status: 403,
            });
        };
        let signer = self.signer(now).await?;
        let mut claims = issuer::AccessToken {
            issuer: &snap.public_base_url,
            subject: &person.subject,
            client_id: CONSOLE_CLIENT,
            audience: CONSOLE_AUDIENCE,
            scope: "",
            agent: "",
            env: "",
            lifetime: CONSOLE_SECONDS,
        }
        .claims(now)
        .map_err(|e| Failure::unavailable(e.to_string()))?;
        if let Some(map) = claims.as_object_mut() {
            map.remove("agent");
            map.remove("env");
            map.remove("scope");
            map.insert(
                crate::auth::jwt::SIGNED_IN_AT.into(),
                person.issuer.clone().into(),
            );
            map.insert(CONSOLE_GROUPS.into(), json!(person.groups));
            map.insert(
                crate::auth::jwt::ISSUED_MS.into(),
                crate::clock::unix_now_ms().into(),
            );
        }
        let token = signer
            .sign(&claims, "at+jwt")
            .map_err(|e| Failure::unavailable(e.to_string()))?;
        let role = serde_json::to_value(role)
            .ok()
            .and_then(|r| r.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.audit_record(&json!({"ts": now, "event": "console.signin", "principal": person.principal(), "role": role, "jti": claims["jti"], "outcome": "ok"}));
        Ok(Answer::Issued {
            access_token: token,
            expires_in: CONSOLE_SECONDS,
            scope: role,
        })
    }
}

/// The claim of console tokens holding the person's role-claim values.
pub const CONSOLE_GROUPS: &str = "sluice_groups";
