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
            let url = format!(
                "{}{}/{name}/{env_name}",
                cp.vault.base_url,
                crate::config::agent::PREFIX
            );
            urls.insert(env_name.to_owned(), url.into());
        }
        item["invoke_urls"] = Value::Object(urls);
    }
}
