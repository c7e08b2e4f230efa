//! Agents through the admin API (`/v1/agents`): each environment's invoke URL is shown with it.

use super::docs::Doc;
use super::*;

impl Doc for wire::Agent {
    const PATH: &'static str = "/v1/agents";
    const ONE: &'static str = "an agent";
    const MANY: &'static str = "agents";
    const SCHEMA: &'static str = "Agent";
    const BINDING_FIELD: &'static str = "environments";
    const BINDING_PERMISSION: Permission = Permission::AgentProtectedCredentials;
    /// Its protected environments as they are: making one protected or not, or changing its
    /// URL or auth (switching `oauth` off and on provisions a new app, with its secret), needs
    /// `agent_protected_credentials`, like minting its credentials.
    fn credential_binding(&self) -> Option<Value> {
        let protected: Vec<Value> = self
            .environments
            .iter()
            .filter(|e| e.protected)
            .map(|e| json!({"name": e.name, "url": e.url, "auth": e.auth, "enabled": e.enabled}))
            .collect();
        (!protected.is_empty()).then_some(Value::Array(protected))
    }
    fn check_name(name: &str) -> ApiResult<()> {
        super::docs::lowercase_name(name, "research")
    }
    /// Where each environment is invoked (from `public_base_url`), as `invoke_urls`.
    fn annotate(item: &mut Value, cp: &ControlPlane) {
        let name = item["name"].as_str().unwrap_or_default().to_owned();
        let mut urls = serde_json::Map::new();
        for env in item["environments"].as_array().into_iter().flatten() {
            let env_name = env["name"].as_str().unwrap_or_default();
            let url = crate::config::agent::invoke_url(&cp.vault.base_url, &name, env_name);
            urls.insert(env_name.to_owned(), url.into());
        }
        item["invoke_urls"] = Value::Object(urls);
    }
    /// Turning `auth: oauth` on for an environment provisions its app (the secret shown once,
    /// under `provisioned`); turning it off, removing the environment or the agent deletes the
    /// environment's apps and their sealed secrets. Re-enabling provisions a new one.
    async fn companions(
        name: &str,
        new: Option<&Self>,
        cp: &ControlPlane,
    ) -> ApiResult<(Vec<Op>, Value)> {
        use crate::config::agent::wire::AgentAuth;
        use crate::control::issuer::{self, AppDoc};
        let apps: Vec<AppDoc> = super::apps::stored_apps(cp)
            .await?
            .into_iter()
            .filter(|a| a.agent == name)
            .collect();
        let oauth: Vec<&str> = new
            .map(|a| {
                a.environments
                    .iter()
                    .filter(|e| e.auth == AgentAuth::Oauth)
                    .map(|e| e.name.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let mut ops = Vec::new();
        for app in apps.iter().filter(|a| !oauth.contains(&a.env.as_str())) {
            ops.push(Op::Delete {
                kind: issuer::APP.into(),
                name: app.client_id.clone(),
            });
        }
        let mut provisioned = Vec::new();
        for env in oauth {
            let has = apps
                .iter()
                .any(|a| a.env == env && a.created_by == issuer::PROVISIONED);
            if has {
                continue;
            }
            let (doc, secret) = AppDoc::create(
                name,
                env,
                format!("{name}-{env}"),
                issuer::PROVISIONED.into(),
                &cp.key,
                unix_now(),
            )
            .map_err(ApiError::internal)?;
            ops.push(doc.store_op(true).map_err(ApiError::internal)?);
            let mut shown = super::apps::with_secret(&doc, &secret, cp);
            shown["env"] = env.into();
            provisioned.push(shown);
        }
        let shown = if provisioned.is_empty() {
            Value::Null
        } else {
            Value::Array(provisioned)
        };
        Ok((ops, shown))
    }
}

/// Lifetime of a test token.
const TEST_TOKEN_SECONDS: u64 = 300;

/// A short-lived token of Sluice's issuer for an `auth: oauth` agent environment, to try it.
pub(super) async fn test_token(
    State(cp): Cp,
    headers: HeaderMap,
    Path((agent, env)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let caller = cp.authorize(&headers, Permission::AgentTestToken)?;
    cp.may_mint_for(&caller, &agent, &env).await?;
    let snap = cp.config.snapshot();
    if snap.agent_route(&agent, &env).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("agent `{agent}` has no enabled environment `{env}`"),
        ));
    }
    let Some((route, audience)) = snap.oauth_environment(&agent, &env) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_oauth",
            format!("agent `{agent}` environment `{env}` does not take tokens of Sluice's issuer (`auth: oauth`)"),
        ));
    };
    let now = unix_now();
    let signer = crate::control::issuer::current_signer(&*cp.store, &cp.key, now)
        .await
        .map_err(ApiError::internal)?;
    let subject = format!("test:{}", caller.principal);
    let claims = crate::control::issuer::AccessToken {
        issuer: &snap.public_base_url,
        subject: &subject,
        client_id: crate::config::agent::TEST_CLIENT,
        audience,
        scope: &route.access.scopes.join(" "),
        agent: &agent,
        env: &env,
        lifetime: TEST_TOKEN_SECONDS,
    }
    .claims(now)
    .map_err(ApiError::internal)?;
    let token = signer.sign(&claims, "at+jwt").map_err(ApiError::internal)?;
    cp.vault.audit_record(&json!({
        "ts": now,
        "event": "issuer.test_token",
        "principal": caller.principal,
        "agent": agent,
        "env": env,
        "jti": claims["jti"],
        "kid": signer.kid,
    }));
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": TEST_TOKEN_SECONDS,
            "invoke_url": audience,
            "curl": format!("curl -H 'Authorization: Bearer {token}' {audience}/"),
        })),
    ))
}
