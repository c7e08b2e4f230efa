//! The request policy as plain functions of the request head and the snapshot, in order:
//! route → authenticate → pick credential. Routing comes first because the route names the auth
//! policy and the error shape; the credential is picked last so a refused request never takes a
//! turn from the key pool.

use pingora::http::RequestHeader;

use std::sync::Arc;

use crate::auth::{self, Principal};
use crate::config::{CredentialMode, Snapshot};
use crate::error::{ErrorShape, GatewayError};

/// A request Sluice will forward.
#[derive(Debug, PartialEq)]
pub struct Admitted {
    pub route: usize,
    pub principal: Arc<Principal>,
    /// The pool key to inject, or `None` to pass the client's own provider key (BYOK).
    pub key: Option<usize>,
}

/// A request Sluice answers itself, in the route's provider error shape.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub error: GatewayError,
    pub shape: ErrorShape,
}

/// `now_ms` is the monotonic clock of key health, `now_unix` the wall clock of token expiry.
pub async fn admit(
    req: &RequestHeader,
    snap: &Snapshot,
    now_ms: u64,
    now_unix: u64,
) -> Result<Admitted, Refusal> {
    let path = req.uri.path();
    let Some((route_idx, route)) = snap.route(path) else {
        return Err(Refusal {
            error: GatewayError::NoRoute,
            shape: guess_shape(path),
        });
    };
    let provider = &route.provider;
    let shape = ErrorShape::from(provider.kind);
    let refuse = |error| Refusal { error, shape };

    let authed = auth::authenticate(&req.headers, route, snap, now_unix)
        .await
        .map_err(refuse)?;

    let use_client_key = match provider.credentials {
        CredentialMode::Centralized => false,
        CredentialMode::Byok if !authed.client_provider_key => {
            return Err(refuse(GatewayError::MissingProviderKey))
        }
        CredentialMode::Byok => true,
        CredentialMode::PreferByok => authed.client_provider_key,
    };
    let key = if use_client_key {
        None
    } else {
        Some(
            provider
                .pool
                .pick(now_ms, None)
                .ok_or(refuse(GatewayError::NoHealthyKey))?,
        )
    };
    Ok(Admitted {
        route: route_idx,
        principal: authed.principal,
        key,
    })
}

/// Error shape for a path that matched no route: Anthropic's paths are recognisable.
fn guess_shape(path: &str) -> ErrorShape {
    if path.contains("/messages") || path.contains("anthropic") {
        ErrorShape::Anthropic
    } else {
        ErrorShape::OpenAi
    }
}

/// Headers that carry a client credential of some provider (or of Sluice): never forwarded as is.
pub const CREDENTIAL_HEADERS: [&str; 5] = [
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "proxy-authorization",
];

/// Rewrites the request head for the upstream: path under the provider's base path, `Host`,
/// Sluice's own headers and client credentials removed, the pool key injected.
pub fn rewrite(
    upstream: &mut RequestHeader,
    route: &crate::config::Route,
    key: Option<&crate::config::ProviderKey>,
    principal: Option<&Principal>,
) -> pingora::Result<()> {
    let (prefix, provider) = (route.prefix.as_str(), &*route.provider);
    let uri = &upstream.uri;
    let rest = uri.path().strip_prefix(prefix).unwrap_or(uri.path());
    let base = provider.upstream.base_path.as_str();
    let mut target = String::with_capacity(base.len() + rest.len() + 64);
    target.push_str(base);
    target.push_str(rest);
    if target.is_empty() {
        target.push('/');
    }
    if let Some(q) = uri.query() {
        target.push('?');
        target.push_str(q);
    }
    let new_uri = http::Uri::try_from(target).map_err(|e| {
        pingora::Error::because(
            pingora::ErrorType::InvalidHTTPHeader,
            "rewritten path is not a URI",
            e,
        )
    })?;
    upstream.set_uri(new_uri);
    upstream.insert_header(http::header::HOST, provider.upstream.authority.as_str())?;

    // Most requests carry no `x-sluice-*` header: only then collect names to remove.
    let is_ours = |n: &http::HeaderName| n.as_str().starts_with("x-sluice-");
    if upstream.headers.keys().any(is_ours) {
        let ours: Vec<http::HeaderName> = upstream
            .headers
            .keys()
            .filter(|n| is_ours(n))
            .cloned()
            .collect();
        for name in &ours {
            upstream.remove_header(name);
        }
    }
    upstream.remove_header("proxy-authorization");
    if let Some(key) = key {
        for name in CREDENTIAL_HEADERS {
            upstream.remove_header(name);
        }
        upstream.insert_header(provider.key_header(), key.header_value.clone())?;
    }
    if let (Some(name), Some(principal)) = (&route.principal_header, principal) {
        upstream.insert_header(name.clone(), principal.id.as_str())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
