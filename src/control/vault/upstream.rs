//! Calls to the provider's token and revocation endpoints, with its client authentication.

use base64::Engine;
use serde::Deserialize;

use super::clip;
use super::sealed::Grant;
use super::VaultWorker;
use crate::config::oauth_provider::{AuthMethod, OAuthProvider};
use crate::control::state::{SecretDoc, SecretScope, SECRET};

/// Largest token-endpoint answer read.
pub(super) const MAX_ANSWER: usize = 64 * 1024;
pub(super) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(super) const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
pub(super) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A token endpoint's answer (RFC 6749 §5.1 / RFC 8693 §2.2).
#[derive(Debug, Deserialize)]
pub(super) struct TokenAnswer {
    pub(super) access_token: String,
    #[serde(default)]
    pub(super) refresh_token: Option<String>,
    #[serde(default)]
    pub(super) expires_in: Option<u64>,
    #[serde(default)]
    pub(super) scope: Option<String>,
    /// `Bearer` (any case); RFC 8693 answers may say `N_A` for an access token.
    #[serde(default)]
    pub(super) token_type: Option<String>,
    /// RFC 8693: what `access_token` holds.
    #[serde(default)]
    pub(super) issued_token_type: Option<String>,
    /// OpenID Connect: who signed in (the sign-in at the company IdP).
    #[serde(default)]
    pub(super) id_token: Option<String>,
}

impl TokenAnswer {
    /// Whether the token is one Sluice may inject as `Authorization: Bearer`: a `Bearer` token,
    /// or RFC 8693's `N_A` for an access token. A `DPoP` (or other) token bound to a key Sluice
    /// does not hold is not.
    pub(super) fn is_bearer(&self) -> bool {
        match self.token_type.as_deref().map(str::trim) {
            Some(t) if t.eq_ignore_ascii_case("bearer") => true,
            Some("N_A") => self.issued_token_type.as_deref() == Some(ACCESS_TOKEN_TYPE),
            _ => false,
        }
    }
}

/// Why a token endpoint call failed.
pub(super) enum CallError {
    /// `error` of an RFC 6749 §5.2 answer (`invalid_grant`, …) and its description.
    OAuth(String, String),
    Other(String),
}

impl CallError {
    pub(super) fn text(&self) -> String {
        match self {
            CallError::OAuth(e, d) if d.is_empty() => e.clone(),
            CallError::OAuth(e, d) => format!("{e}: {d}"),
            CallError::Other(e) => e.clone(),
        }
    }
}

impl VaultWorker {
    /// RFC 7009, best effort: the refresh token first (revoking it ends the access tokens it
    /// issued at most servers), then the access token.
    pub(super) async fn revoke(&self, p: &OAuthProvider, grant: &Grant) -> bool {
        let Some(endpoint) = &p.revocation_endpoint else {
            return false;
        };
        let mut tokens = Vec::new();
        if let Some(r) = &grant.refresh_token {
            tokens.push((r.as_str(), "refresh_token"));
        }
        tokens.push((grant.access_token.as_str(), "access_token"));
        for (token, hint) in tokens {
            let form = vec![
                ("token", token.to_owned()),
                ("token_type_hint", hint.to_owned()),
            ];
            match self.post_form(p, endpoint, form).await {
                Ok(resp) if resp.status().is_success() => {
                    self.event(p, "revocation", "ok");
                    return true;
                }
                Ok(resp) => log::info!(
                    "vault: `{}` refused revoking a {hint}: {}",
                    p.name,
                    resp.status()
                ),
                Err(e) => log::info!("vault: revoking at `{}`: {e}", p.name),
            }
        }
        self.event(p, "revocation", "error");
        false
    }

    pub(super) async fn call_token_endpoint(
        &self,
        p: &OAuthProvider,
        form: Vec<(&'static str, String)>,
    ) -> Result<TokenAnswer, CallError> {
        let endpoint = p
            .token_endpoint
            .clone()
            .ok_or_else(|| CallError::Other("no token endpoint".into()))?;
        let resp = self
            .post_form(p, &endpoint, form)
            .await
            .map_err(|e| CallError::Other(e.to_string()))?;
        let status = resp.status();
        let body = read_capped(resp).await.map_err(CallError::Other)?;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        // An OAuth error is a 4xx (RFC 6749 §5.2); the same words in a 5xx (a proxy's error
        // page, an overloaded provider) are a transient failure: the grant stays.
        if let Some(error) = json["error"].as_str().filter(|_| status.is_client_error()) {
            return Err(CallError::OAuth(
                clip(error),
                clip(json["error_description"].as_str().unwrap_or_default()),
            ));
        }
        if !status.is_success() {
            return Err(CallError::Other(format!(
                "token endpoint answered {status}"
            )));
        }
        let answer: TokenAnswer = serde_json::from_value(json)
            .map_err(|e| CallError::Other(format!("token endpoint answer: {e}")))?;
        // A token bound to a key Sluice does not hold (DPoP, …) would be injected as a Bearer
        // token: refused. (An answer without `token_type` is taken as Bearer here; a token
        // exchange requires it.)
        if answer.token_type.is_some() && !answer.is_bearer() {
            return Err(CallError::Other(format!(
                "the token issued is of type `{}`, not Bearer",
                clip(answer.token_type.as_deref().unwrap_or_default())
            )));
        }
        Ok(answer)
    }

    /// A form POST with the provider's client authentication; the client secret is read from
    /// the store each time, so a rotated secret is used from the next call on.
    pub(super) async fn post_form(
        &self,
        p: &OAuthProvider,
        url: &str,
        mut form: Vec<(&'static str, String)>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut req = self.http.post(url).header("accept", "application/json");
        match p.token_endpoint_auth_method {
            AuthMethod::None => form.push(("client_id", p.client_id.clone())),
            AuthMethod::ClientSecretPost => {
                form.push(("client_id", p.client_id.clone()));
                form.push(("client_secret", self.client_secret(p).await?));
            }
            AuthMethod::ClientSecretBasic => {
                // RFC 6749 §2.3.1: both parts form-urlencoded before base64.
                let pair = format!(
                    "{}:{}",
                    form_encode(&p.client_id),
                    form_encode(&self.client_secret(p).await?)
                );
                let basic = base64::engine::general_purpose::STANDARD.encode(pair);
                req = req.header("authorization", format!("Basic {basic}"));
            }
        }
        Ok(req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded(&form))
            .send()
            .await?)
    }

    pub(super) async fn client_secret(&self, p: &OAuthProvider) -> anyhow::Result<String> {
        let name = p
            .client_secret_ref
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("`{}` has no client_secret_ref", p.name))?;
        self.mcp_secret(name).await
    }

    /// The value of a stored secret scoped `mcp`.
    pub(super) async fn mcp_secret(&self, name: &str) -> anyhow::Result<String> {
        let doc = self
            .store
            .get(SECRET, name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the secret `{name}` does not exist"))?;
        let doc: SecretDoc = serde_json::from_value(doc.body)?;
        anyhow::ensure!(
            doc.scopes.contains(&SecretScope::Mcp),
            "the secret `{name}` is not scoped `mcp`"
        );
        Ok(self.key.open(name, &doc.sealed)?.expose().to_owned())
    }
}

pub(super) fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

pub(super) fn serde_urlencoded(pairs: &[(&str, String)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

pub(super) async fn read_capped(resp: reqwest::Response) -> Result<Vec<u8>, String> {
    read_capped_to(resp, MAX_ANSWER).await
}

/// The body of `resp`, refused past `max` bytes.
pub(super) async fn read_capped_to(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > max {
            return Err("the answer is too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
