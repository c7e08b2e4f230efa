//! Upstream OAuth providers through the admin API (`/v1/oauth-providers`): endpoints discovered
//! from `issuer` when not given, the client secret checked to be a stored secret scoped `mcp`.

use super::docs::Doc;
use super::*;
use crate::config::oauth_provider::{check_url, OAuthProvider};

/// `name` must be a stored secret scoped `mcp` (422 naming `field` otherwise).
pub(super) async fn mcp_secret(cp: &ControlPlane, field: &str, name: &str) -> ApiResult<()> {
    let scoped = match cp.store.get(state::SECRET, name).await? {
        Some(r) => serde_json::from_value::<SecretDoc>(r.body)
            .is_ok_and(|d| d.scopes.contains(&SecretScope::Mcp)),
        None => {
            return Err(unprocessable(
                field,
                format!("no stored secret named `{name}` (create it with scope mcp)"),
            ))
        }
    };
    if !scoped {
        return Err(unprocessable(
            field,
            format!("secret `{name}` is not scoped `mcp`"),
        ));
    }
    Ok(())
}

/// Discovery documents are small; a slow or huge one is refused.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_DISCOVERY_BYTES: usize = 256 * 1024;

impl Doc for OAuthProvider {
    const PATH: &'static str = "/v1/oauth-providers";
    const ONE: &'static str = "an upstream OAuth provider";
    const MANY: &'static str = "upstream OAuth providers";
    const SCHEMA: &'static str = "OAuthProvider";
    /// The redirect URI to register at the provider (from `public_base_url`).
    fn annotate(item: &mut Value, cp: &ControlPlane) {
        if let Value::Object(map) = item {
            map.insert("redirect_uri".into(), cp.vault.redirect_uri().into());
        }
    }
    fn check_name(name: &str) -> ApiResult<()> {
        super::docs::lowercase_name(name, "github")
    }

    async fn prepare(mut doc: Self, cp: &ControlPlane) -> ApiResult<Self> {
        let missing = doc.authorization_endpoint.is_none()
            || doc.token_endpoint.is_none()
            || doc.revocation_endpoint.is_none();
        if let (Some(issuer), true) = (doc.issuer.clone(), missing) {
            let metadata = discover(&issuer)
                .await
                .map_err(|e| unprocessable("issuer", e))?;
            let field = |name: &str| metadata[name].as_str().map(str::to_owned);
            doc.authorization_endpoint = doc
                .authorization_endpoint
                .or_else(|| field("authorization_endpoint"));
            doc.token_endpoint = doc.token_endpoint.or_else(|| field("token_endpoint"));
            doc.revocation_endpoint = doc
                .revocation_endpoint
                .or_else(|| field("revocation_endpoint"));
        }
        if let Some(name) = &doc.client_secret_ref {
            mcp_secret(cp, "client_secret_ref", name).await?;
        }
        Ok(doc)
    }
}

fn unprocessable(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).field(field)
}

/// RFC 8414 metadata, else OpenID discovery; the document must name `issuer` itself.
async fn discover(issuer: &str) -> Result<Value, String> {
    check_url(issuer)?;
    // Resolved once and pinned: no link-local address (cloud metadata), and no second lookup
    // that could answer otherwise.
    let url = reqwest::Url::parse(issuer).map_err(|e| e.to_string())?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| format!("{host} does not resolve: {e}"))?
        .collect();
    if addrs.is_empty()
        || addrs
            .iter()
            .any(|a| crate::forward::policy::is_link_local(a.ip()))
    {
        return Err(format!(
            "{host} resolves to a link-local address (where clouds serve instance metadata): refused"
        ));
    }
    let client = reqwest::Client::builder()
        .timeout(DISCOVERY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .resolve_to_addrs(&host, &addrs)
        .build()
        .map_err(|e| e.to_string())?;
    let base = issuer.trim_end_matches('/');
    let mut tried = Vec::new();
    for well_known in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let url = format!("{base}{well_known}");
        let fetched = async {
            let resp = client.get(&url).send().await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("{}", resp.status()));
            }
            let mut resp = resp;
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_DISCOVERY_BYTES {
                    return Err(format!("larger than {MAX_DISCOVERY_BYTES} bytes"));
                }
            }
            serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string())
        }
        .await;
        match fetched {
            Ok(doc) if doc["issuer"].as_str().map(|i| i.trim_end_matches('/')) == Some(base) => {
                return Ok(doc)
            }
            // The fetched document's content is never echoed: the answer names the field.
            Ok(_) => tried.push(format!(
                "{url}: its `issuer` is not {issuer} (RFC 8414 §3.3)"
            )),
            Err(e) => tried.push(format!("{url}: {e}")),
        }
    }
    Err(format!("discovery failed: {}", tried.join("; ")))
}
