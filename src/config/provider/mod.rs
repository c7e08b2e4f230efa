//! Providers: the wire `Provider` validated into the snapshot's `Provider` — its upstream, its
//! keys resolved with their ready header values, the weighted pool and each key's health.
//! The provider as written is `wire`.

pub mod wire;

use http::HeaderValue;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::balance::{KeyPool, Member};
use crate::config::name::valid as valid_name;
use crate::config::wire::{self as config_wire, CredentialMode, ProviderKind};
use crate::config::{BuildContext, ConfigError};
use crate::metrics::KeyMetrics;
use crate::secrets::{self, Secret};
use crate::upstream::Upstream;

/// A key benched longer than a day would need a person anyway.
const MAX_BENCH_SECONDS: u64 = 86_400;

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub credentials: CredentialMode,
    /// `credentials: oauth`: the OAuth provider whose grants are injected.
    pub oauth_provider: Option<String>,
    pub upstream: Upstream,
    pub intercept_hosts: Vec<String>,
    pub keys: Vec<ProviderKey>,
    pub pool: KeyPool,
    pub quarantine: Duration,
    pub cooldown: Duration,
    /// Each principal keeps its key (`affinity: principal`).
    pub affinity: bool,
}

#[derive(Debug)]
pub struct ProviderKey {
    pub id: String,
    pub secret: Secret,
    /// The header value sent upstream (`Bearer …` or the bare key), marked sensitive.
    pub header_value: HeaderValue,
    pub hint: String,
    pub weight: u32,
    pub enabled: bool,
    pub metrics: KeyMetrics,
}

impl Provider {
    /// The header a provider expects its key in.
    pub fn key_header(&self) -> &'static str {
        match self.kind {
            ProviderKind::Anthropic => "x-api-key",
            ProviderKind::Gemini => "x-goog-api-key",
            ProviderKind::AzureOpenAi => "api-key",
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Http => {
                "authorization"
            }
        }
    }
}

/// Every provider, in order; a repeated name is an error.
pub(super) fn build_all(
    providers: &[config_wire::Provider],
    base: &Path,
    ctx: &BuildContext,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Vec<Arc<Provider>> {
    let mut built = Vec::new();
    let mut names = HashSet::new();
    for (i, p) in providers.iter().enumerate() {
        let at = format!("providers[{i}]");
        if !names.insert(p.name.as_str()) {
            errors.push(ConfigError::at(
                format!("{at}.name"),
                format!("duplicate provider name `{}`", p.name),
            ));
        }
        if let Some(provider) = build(p, &at, base, ctx, errors, warnings) {
            built.push(Arc::new(provider));
        }
    }
    built
}

fn build(
    p: &config_wire::Provider,
    at: &str,
    base: &Path,
    ctx: &BuildContext,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Option<Provider> {
    let config_wire::Provider {
        name,
        kind,
        base_url: _,
        intercept_hosts,
        credentials,
        oauth_provider,
        keys: _,
        ca_file: _,
        quarantine_seconds,
        cooldown_seconds,
        affinity,
    } = p;
    let before = errors.len();
    if !valid_name(name) {
        errors.push(ConfigError::at(
            format!("{at}.name"),
            crate::config::name::problem("provider", name, "openai-eu"),
        ));
    }
    for (field, value) in [
        ("quarantine_seconds", quarantine_seconds),
        ("cooldown_seconds", cooldown_seconds),
    ] {
        if *value > MAX_BENCH_SECONDS {
            errors.push(ConfigError::at(
                format!("{at}.{field}"),
                format!("{value} is more than the {MAX_BENCH_SECONDS} seconds allowed"),
            ));
        }
    }
    let upstream = upstream(p, at, base, errors);
    for (j, host) in intercept_hosts.iter().enumerate() {
        if host.is_empty() || host.contains(['/', ':', ' ']) || host.to_ascii_lowercase() != *host {
            errors.push(ConfigError::at(
                format!("{at}.intercept_hosts[{j}]"),
                format!("`{host}` must be a lowercase host name (e.g. api.openai.com)"),
            ));
        }
    }
    check_keys(p, at, errors);
    check_oauth(p, at, errors);
    let built_keys = build_keys(p, at, base, ctx, errors, warnings);
    if errors.len() > before {
        return None;
    }
    let limits = crate::balance::BenchLimits {
        quarantine: Duration::from_secs(*quarantine_seconds),
        cooldown: Duration::from_secs(*cooldown_seconds),
    };
    let members = built_keys
        .iter()
        .map(|k| Member {
            weight: k.weight,
            enabled: k.enabled,
            health: ctx.health.get(name, &k.id, k.secret.fingerprint(), limits),
            id_hash: crate::balance::hash_str(&k.id),
        })
        .collect();
    Some(Provider {
        name: name.clone(),
        kind: *kind,
        credentials: *credentials,
        oauth_provider: oauth_provider.clone(),
        upstream: upstream?,
        intercept_hosts: intercept_hosts.clone(),
        pool: KeyPool::build(members),
        keys: built_keys,
        quarantine: Duration::from_secs(*quarantine_seconds),
        cooldown: Duration::from_secs(*cooldown_seconds),
        affinity: *affinity == config_wire::Affinity::Principal,
    })
}

/// `centralized` needs keys to inject; `none` injects nothing, so it lists none.
fn check_keys(p: &config_wire::Provider, at: &str, errors: &mut Vec<ConfigError>) {
    match (p.credentials, p.keys.is_empty()) {
        (CredentialMode::Centralized, true) => errors.push(ConfigError::at(
            format!("{at}.keys"),
            format!(
                "provider `{}` has `credentials: centralized` but no keys (`credentials: none` injects nothing)",
                p.name
            ),
        )),
        (CredentialMode::None, false) => errors.push(ConfigError::at(
            format!("{at}.keys"),
            "`credentials: none` injects nothing: list no keys",
        )),
        _ => {}
    }
}

/// `credentials: oauth` names an OAuth provider and lists no keys; `oauth_provider` only with it.
fn check_oauth(p: &config_wire::Provider, at: &str, errors: &mut Vec<ConfigError>) {
    let (credentials, oauth_provider, keys) = (&p.credentials, &p.oauth_provider, &p.keys);
    match (credentials, oauth_provider) {
        (CredentialMode::OAuth, None) => errors.push(ConfigError::at(
            format!("{at}.oauth_provider"),
            "`credentials: oauth` needs the name of an OAuth provider",
        )),
        (CredentialMode::OAuth, Some(_)) if !keys.is_empty() => errors.push(ConfigError::at(
            format!("{at}.keys"),
            "`credentials: oauth` injects users' own tokens: list no keys",
        )),
        (CredentialMode::OAuth, Some(o)) if !valid_name(o) => errors.push(ConfigError::at(
            format!("{at}.oauth_provider"),
            format!("`{o}` is not an OAuth provider name"),
        )),
        (_, Some(_)) if *credentials != CredentialMode::OAuth => errors.push(ConfigError::at(
            format!("{at}.oauth_provider"),
            "only with `credentials: oauth`",
        )),
        _ => {}
    }
}

/// `base_url` with the trust roots of `ca_file`.
fn upstream(
    p: &config_wire::Provider,
    at: &str,
    base: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<Upstream> {
    let ca = match &p.ca_file {
        Some(file) => match load_ca(&base.join(file)) {
            Ok(ca) => Some(ca),
            Err(e) => {
                errors.push(ConfigError::at(format!("{at}.ca_file"), e));
                None
            }
        },
        None => None,
    };
    match parse_base_url(&p.name, &p.base_url, ca) {
        Ok(u) => Some(u),
        Err(e) => {
            errors.push(ConfigError::at(format!("{at}.base_url"), e));
            None
        }
    }
}

/// The keys whose secrets resolve; an `optional` key whose secret does not is left out with a
/// warning, any other is an error.
fn build_keys(
    p: &config_wire::Provider,
    at: &str,
    base: &Path,
    ctx: &BuildContext,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Vec<ProviderKey> {
    let name = &p.name;
    let mut built = Vec::new();
    let mut ids = HashSet::new();
    for (j, k) in p.keys.iter().enumerate() {
        let key_at = format!("{at}.keys[{j}]");
        let config_wire::Key {
            id,
            secret_ref,
            weight,
            enabled,
            optional,
        } = k;
        if id.is_empty() || !ids.insert(id.as_str()) {
            errors.push(ConfigError::at(
                format!("{key_at}.id"),
                format!("key id `{id}` is empty or repeated in provider `{name}`"),
            ));
            continue;
        }
        let secret = match resolve(secret_ref, base, ctx) {
            Ok(s) => s,
            Err(e) if *optional => {
                warnings.push(format!("provider `{name}` key `{id}` left out: {e}"));
                continue;
            }
            Err(e) => {
                errors.push(ConfigError::at(
                    format!("{key_at}.secret_ref"),
                    format!("key `{id}` of provider `{name}`: {e}"),
                ));
                continue;
            }
        };
        let Some(header_value) = header_value(p.kind, &secret) else {
            errors.push(ConfigError::at(
                format!("{key_at}.secret_ref"),
                format!("key `{id}` of provider `{name}`: the secret contains characters not allowed in a header"),
            ));
            continue;
        };
        built.push(ProviderKey {
            id: id.clone(),
            hint: secret.hint(),
            header_value,
            weight: *weight,
            enabled: *enabled,
            metrics: KeyMetrics::new(name, id),
            secret,
        });
    }
    built
}

/// `secret:NAME` from the store's opened secrets, else `env:`/`file:`.
fn resolve(secret_ref: &str, base: &Path, ctx: &BuildContext) -> Result<Secret, String> {
    match secret_ref.strip_prefix("secret:") {
        Some(secret_name) => ctx
            .secrets
            .get(secret_name)
            .cloned()
            .ok_or_else(|| format!("no secret named `{secret_name}` in the store")),
        None => secrets::resolve(secret_ref, base).map_err(|e| e.to_string()),
    }
}

/// The header value the key is sent in (`Bearer …` or the bare key), marked sensitive.
fn header_value(kind: ProviderKind, secret: &Secret) -> Option<HeaderValue> {
    let raw = match kind {
        ProviderKind::Anthropic | ProviderKind::Gemini | ProviderKind::AzureOpenAi => {
            secret.expose().to_owned()
        }
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Http => {
            format!("Bearer {}", secret.expose())
        }
    };
    let mut value = HeaderValue::from_str(&raw).ok()?;
    value.set_sensitive(true);
    Some(value)
}

pub(crate) fn parse_base_url(
    provider: &str,
    base_url: &str,
    ca: Option<Arc<[pingora::utils::tls::WrappedX509]>>,
) -> Result<Upstream, String> {
    let uri: http::Uri = base_url
        .parse()
        .map_err(|e| format!("`{base_url}` is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("`{base_url}` must start with http:// or https://")),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{base_url}` has no host"))?;
    if uri.query().is_some() {
        return Err(format!("`{base_url}` must not have a query string"));
    }
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Ok(Upstream::new(
        provider,
        tls,
        host.to_owned(),
        port,
        base_path,
        ca,
    ))
}

fn load_ca(file: &Path) -> Result<Arc<[pingora::utils::tls::WrappedX509]>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let shown = file.display();
    let pem = std::fs::read(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let der = cert.map_err(|e| format!("{shown}: bad PEM: {e}"))?;
        // pingora's parser panics on bad DER: check it here first.
        x509_parser::parse_x509_certificate(&der)
            .map_err(|e| format!("{shown}: bad certificate: {e}"))?;
        certs.push(pingora::utils::tls::WrappedX509::new(
            der.to_vec(),
            pingora::utils::tls::parse_x509,
        ));
    }
    if certs.is_empty() {
        return Err(format!("{shown} holds no PEM certificate"));
    }
    Ok(certs.into())
}
