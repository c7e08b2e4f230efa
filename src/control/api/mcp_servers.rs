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
