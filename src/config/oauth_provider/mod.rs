//! Upstream OAuth providers: authorization servers Sluice is a *client* of, so that it can hold
//! and inject a user's own token for an upstream (GitHub, Slack, an internal API behind the
//! company IdP). Not to be confused with the apps that authenticate *to* Sluice.
//!
//! A provider's client secret is a stored secret scoped `mcp`, named here; its endpoints are
//! given, or discovered from `issuer` (RFC 8414, then OpenID discovery) when the provider is
//! written through the admin API. The provider as written is `wire`.

pub mod wire;

pub use wire::{AuthMethod, GrantType, OAuthProvider};

use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::config::ConfigError;

/// Validates every OAuth provider; the valid ones by name.
pub(super) fn build_all(
    providers: &[OAuthProvider],
    issuers: &[crate::config::wire::Issuer],
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> HashMap<String, Arc<OAuthProvider>> {
    let mut built = HashMap::new();
    let mut names = HashSet::new();
    for (i, p) in providers.iter().enumerate() {
        let at = format!("oauth_providers[{i}]");
        let before = errors.len();
        let name_at = format!("{at}.name");
        let kind = ("OAuth provider", "github");
        crate::config::name::check_unique(kind, &p.name, &name_at, &mut names, errors);
        check(p, &at, errors);
        for (j, name) in p.subject_issuers.iter().enumerate() {
            let known =
                name == crate::auth::jwt::BUILTIN_ISSUER || issuers.iter().any(|i| i.name == *name);
            if !known {
                errors.push(ConfigError::at(
                    format!("{at}.subject_issuers[{j}]"),
                    format!("`{name}` is not the name of an issuer (`issuers:` or `sluice`)"),
                ));
            }
        }
        let own_issuer = |i: &crate::config::wire::Issuer| {
            p.issuer
                .as_deref()
                .is_some_and(|own| own.trim_end_matches('/') == i.issuer.trim_end_matches('/'))
        };
        if p.grant_types.contains(&GrantType::TokenExchange)
            && p.subject_issuers.is_empty()
            && !issuers.iter().any(own_issuer)
        {
            warnings.push(format!(
                "{at}: token_exchange receives no JWT: no issuer in `issuers:` is this provider's `issuer`; name the ones it may receive in `subject_issuers`"
            ));
        }
        if errors.len() == before {
            built.insert(p.name.clone(), Arc::new(p.clone()));
        }
    }
    built
}

fn check(p: &OAuthProvider, at: &str, errors: &mut Vec<ConfigError>) {
    let mut bad = |field: &str, message: String| {
        errors.push(ConfigError::at(format!("{at}.{field}"), message));
    };
    for (field, url) in [
        ("issuer", &p.issuer),
        ("authorization_endpoint", &p.authorization_endpoint),
        ("token_endpoint", &p.token_endpoint),
        ("revocation_endpoint", &p.revocation_endpoint),
    ] {
        if let Some(url) = url {
            if let Err(e) = check_url(url) {
                bad(field, e);
            }
        }
    }
    let grants: HashSet<GrantType> = p.grant_types.iter().copied().collect();
    if grants.is_empty() || grants.len() != p.grant_types.len() {
        bad(
            "grant_types",
            "list authorization_code and/or token_exchange, each once".into(),
        );
    }
    if p.token_endpoint.is_none() {
        bad(
            "token_endpoint",
            "required (or give `issuer` and create the provider through the admin API, which discovers it)".into(),
        );
    }
    if grants.contains(&GrantType::AuthorizationCode) && p.authorization_endpoint.is_none() {
        bad(
            "authorization_endpoint",
            "required for the authorization_code grant".into(),
        );
    }
    if p.client_id.trim().is_empty() {
        bad("client_id", "required".into());
    }
    match (p.token_endpoint_auth_method, &p.client_secret_ref) {
        (AuthMethod::None, Some(_)) => bad(
            "client_secret_ref",
            "a public client (`token_endpoint_auth_method: none`) has no secret".into(),
        ),
        (AuthMethod::None, None) if !p.require_pkce => bad(
            "require_pkce",
            "a public client (`none`) must use PKCE".into(),
        ),
        (AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost, None) => bad(
            "client_secret_ref",
            "name the stored secret (scope `mcp`) holding the client secret".into(),
        ),
        (AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost, Some(name))
            if !crate::secrets::valid_name(name) =>
        {
            bad(
                "client_secret_ref",
                format!(
                    "`{name}` is not a secret name: UPPER_SNAKE_CASE (e.g. GITHUB_CLIENT_SECRET)"
                ),
            )
        }
        _ => {}
    }
    for (j, s) in p.scopes.iter().enumerate() {
        if s.is_empty() || s.contains(char::is_whitespace) {
            bad(&format!("scopes[{j}]"), format!("`{s}` is not one scope"));
        }
    }
}

/// An endpoint: `https://`, or `http://` to a loopback host only (tests, a local IdP).
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let host = uri.host().unwrap_or("");
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http")
            if host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback()) =>
        {
            Ok(())
        }
        Some("http") => Err(format!(
            "`{url}` must use https (http only to a loopback host)"
        )),
        _ => Err(format!("`{url}` must be an https:// URL")),
    }
}

/// A well-known provider's endpoints and recommended scopes (`sluice oauth presets`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Preset {
    pub name: &'static str,
    pub display_name: &'static str,
    pub authorization_endpoint: &'static str,
    pub token_endpoint: &'static str,
    pub revocation_endpoint: Option<&'static str>,
    pub scopes: &'static [&'static str],
    pub note: &'static str,
}

/// The catalog. `{domain}` is replaced by `--domain` (Okta-style custom domains).
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "github",
        display_name: "GitHub",
        authorization_endpoint: "https://github.com/login/oauth/authorize",
        token_endpoint: "https://github.com/login/oauth/access_token",
        revocation_endpoint: None,
        scopes: &["repo", "read:user"],
        note: "OAuth Apps issue tokens without expiry or refresh token",
    },
    Preset {
        name: "google",
        display_name: "Google",
        authorization_endpoint: "https://accounts.google.com/o/oauth2/v2/auth",
        token_endpoint: "https://oauth2.googleapis.com/token",
        revocation_endpoint: Some("https://oauth2.googleapis.com/revoke"),
        scopes: &["openid", "email", "profile"],
        note: "add access_type=offline consent for refresh tokens",
    },
    Preset {
        name: "microsoft",
        display_name: "Microsoft Entra ID",
        authorization_endpoint: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        token_endpoint: "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        revocation_endpoint: None,
        scopes: &["openid", "offline_access", "User.Read"],
        note: "replace `common` with the tenant id for single-tenant apps",
    },
    Preset {
        name: "slack",
        display_name: "Slack",
        authorization_endpoint: "https://slack.com/oauth/v2/authorize",
        token_endpoint: "https://slack.com/api/oauth.v2.access",
        revocation_endpoint: Some("https://slack.com/api/auth.revoke"),
        scopes: &["channels:read", "chat:write"],
        note: "user scopes go in user_scope on Slack's side",
    },
    Preset {
        name: "okta",
        display_name: "Okta",
        authorization_endpoint: "https://{domain}/oauth2/default/v1/authorize",
        token_endpoint: "https://{domain}/oauth2/default/v1/token",
        revocation_endpoint: Some("https://{domain}/oauth2/default/v1/revoke"),
        scopes: &["openid", "profile", "offline_access"],
        note: "needs --domain (your Okta or custom domain)",
    },
    Preset {
        name: "atlassian",
        display_name: "Atlassian",
        authorization_endpoint: "https://auth.atlassian.com/authorize",
        token_endpoint: "https://auth.atlassian.com/oauth/token",
        revocation_endpoint: None,
        scopes: &["read:jira-work", "offline_access"],
        note: "add audience=api.atlassian.com on Atlassian's side",
    },
    Preset {
        name: "custom",
        display_name: "Custom",
        authorization_endpoint: "",
        token_endpoint: "",
        revocation_endpoint: None,
        scopes: &[],
        note: "give the endpoints, or --issuer for discovery",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(yaml: &str) -> Vec<String> {
        let config = crate::config::parse(yaml).unwrap();
        let mut errors = Vec::new();
        build_all(
            &config.oauth_providers,
            &config.issuers,
            &mut errors,
            &mut Vec::new(),
        );
        errors.into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn each_field_is_checked_and_named() {
        let ok = "oauth_providers:\n  - { name: ramp, authorization_endpoint: \"https://a.example/auth\", token_endpoint: \"https://a.example/token\", client_id: c, client_secret_ref: RAMP_SECRET }\n";
        assert!(errors_of(ok).is_empty(), "{:?}", errors_of(ok));
        for (change, field) in [
            (
                ("https://a.example/auth", "http://a.example/auth"),
                "authorization_endpoint",
            ),
            (("client_id: c", "client_id: \"\""), "client_id"),
            (("RAMP_SECRET", "ramp-secret"), "client_secret_ref"),
            (("name: ramp", "name: Ramp"), "name"),
            (
                ("client_id: c", "client_id: c, grant_types: []"),
                "grant_types",
            ),
            (
                (
                    "client_secret_ref: RAMP_SECRET",
                    "client_secret_ref: RAMP_SECRET, token_endpoint_auth_method: none",
                ),
                "client_secret_ref",
            ),
            (
                (
                    "client_secret_ref: RAMP_SECRET",
                    "token_endpoint_auth_method: none, require_pkce: false",
                ),
                "require_pkce",
            ),
            (
                ("client_id: c", "client_id: c, scopes: [\"a b\"]"),
                "scopes[0]",
            ),
        ] {
            let yaml = ok.replace(change.0, change.1);
            let errors = errors_of(&yaml);
            assert!(
                errors
                    .iter()
                    .any(|p| p == &format!("oauth_providers[0].{field}")),
                "{yaml}: {errors:?}"
            );
        }
        let public = ok.replace(
            "client_secret_ref: RAMP_SECRET",
            "token_endpoint_auth_method: none",
        );
        assert!(errors_of(&public).is_empty());
        assert!(check_url("http://127.0.0.1:9/token").is_ok());
        assert!(check_url("http://[::1]:9/token").is_ok());
        assert!(check_url("ftp://x/token").is_err());
    }

    #[test]
    fn presets_are_well_formed() {
        let mut names = HashSet::new();
        for p in PRESETS {
            assert!(names.insert(p.name) && crate::config::name::valid(p.name));
            if p.name != "custom" {
                let url = p.token_endpoint.replace("{domain}", "example.okta.com");
                assert!(check_url(&url).is_ok(), "{}", p.name);
            }
        }
    }
}
