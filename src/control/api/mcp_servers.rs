//! MCP servers through the admin API (`/v1/mcp-servers`): naming an OAuth provider needs
//! `oauth_provider_attach` (`Doc::oauth_providers`), a static token must be a stored secret
//! scoped `mcp`.

use super::docs::Doc;
use super::oauth_providers::mcp_secret;
use super::*;

impl Doc for wire::McpServer {
    const PATH: &'static str = "/v1/mcp-servers";
    const ONE: &'static str = "an MCP server";
    const MANY: &'static str = "MCP servers";
    const SCHEMA: &'static str = "McpServer";
    fn check_name(name: &str) -> ApiResult<()> {
        super::docs::lowercase_name(name, "github-tools")
    }
    fn oauth_providers(&self) -> Vec<(&'static str, String)> {
        self.oauth_provider
            .iter()
            .map(|o| ("oauth_provider", o.clone()))
            .collect()
    }
    /// An MCP server with `auth: oauth_provider` or `secret` sends users' grants or an `mcp`
    /// secret to its URL.
    const BINDING_FIELD: &'static str = "url";
    fn credential_binding(&self) -> Option<Value> {
        use crate::config::mcp_server::wire::McpAuth;
        (self.auth != McpAuth::None).then(|| {
            let fingerprint = json!({
                "url": self.url,
                "auth": self.auth,
                "oauth_provider": self.oauth_provider,
                "secret_ref": self.secret_ref,
                "token_injection": self.token_injection,
            });
            fingerprint
        })
    }
    /// Where clients connect (from `public_base_url`).
    fn annotate(item: &mut Value, cp: &ControlPlane) {
        if let Value::Object(map) = item {
            let name = map.get("name").and_then(Value::as_str).unwrap_or_default();
            let url = format!("{}/mcp/{name}", cp.vault.base_url);
            map.insert("endpoint".into(), url.into());
        }
    }
    async fn prepare(doc: Self, cp: &ControlPlane) -> ApiResult<Self> {
        if let Some(name) = &doc.secret_ref {
            mcp_secret(cp, "secret_ref", name).await?;
        }
        Ok(doc)
    }
}
