//! Agents through the admin API (`/v1/agents`): each environment's invoke URL is shown with it.

use super::docs::Doc;
use super::*;

impl Doc for wire::Agent {
    const PATH: &'static str = "/v1/agents";
    const ONE: &'static str = "an agent";
    const MANY: &'static str = "agents";
    const SCHEMA: &'static str = "Agent";
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
        let apps: Vec<AppDoc> = cp
            .store
            .list(issuer::APP)
            .await?
            .into_iter()
            .filter_map(|r| serde_json::from_value::<AppDoc>(r.body).ok())
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
            let doc = AppDoc {
                client_id: issuer::new_client_id(name, env).map_err(ApiError::internal)?,
                name: format!("{name}-{env}"),
                agent: name.to_owned(),
                env: env.to_owned(),
                created_by: issuer::PROVISIONED.into(),
                created_at: unix_now(),
                sealed: String::new(),
                secret_version: 0,
            };
            let (doc, secret) = doc.with_new_secret(&cp.key).map_err(ApiError::internal)?;
            ops.push(Op::Create {
                kind: issuer::APP.into(),
                name: doc.client_id.clone(),
                body: to_value(&doc)?,
            });
            provisioned.push(json!({
                "env": env,
                "client_id": doc.client_id,
                "client_secret": secret,
                "token_endpoint": format!("{}/oauth2/token", cp.vault.base_url),
            }));
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
    let snap = cp.config.snapshot();
    let prefix = format!("{}/{agent}/{env}", crate::config::agent::PREFIX);
    let Some(route) = snap.routes.iter().find(|r| r.prefix == prefix) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("agent `{agent}` has no enabled environment `{env}`"),
        ));
    };
    let Some(audience) = route.access.required_claims.get("aud") else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_oauth",
            format!("agent `{agent}` environment `{env}` does not take tokens of Sluice's issuer (`auth: oauth`)"),
        ));
    };
    let now = unix_now();
    let keys =
        crate::control::issuer::keys_of(&cp.store.list(crate::control::issuer::SIGNING_KEY).await?);
    let key = crate::control::issuer::signing(&keys, now)
        .ok_or_else(|| ApiError::internal("the issuer has no signing key"))?;
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti).map_err(ApiError::internal)?;
    let claims = json!({
        "iss": snap.public_base_url,
        "sub": format!("test:{}", caller.principal),
        "aud": audience,
        "iat": now,
        "exp": now + TEST_TOKEN_SECONDS,
        "jti": hex::encode(jti),
        "client_id": crate::config::agent::TEST_CLIENT,
        "scope": route.access.scopes.join(" "),
        "agent": agent,
        "env": env,
    });
    let token = key
        .signer(&cp.key)
        .and_then(|s| s.sign(&claims, "at+jwt"))
        .map_err(ApiError::internal)?;
    cp.vault.audit_record(&json!({
        "ts": now,
        "event": "issuer.test_token",
        "principal": caller.principal,
        "agent": agent,
        "env": env,
        "jti": claims["jti"],
        "kid": key.kid,
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
