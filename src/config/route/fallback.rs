//! A route's fallback chain: the providers that answer when the route's own cannot, the model
//! each is asked for, and what moves a request on. The chain as written is `wire`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::provider::Provider;
use crate::config::wire::{CredentialMode, ProviderKind};
use crate::config::ConfigError;

pub mod wire {
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    /// Providers tried in order when the route's own provider fails before its answer starts.
    #[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Fallback {
        /// The next providers, in order (1 to 8).
        pub to: Vec<FallbackTarget>,
        /// What moves a request to the next provider (default: all four). An answer whose
        /// head reached the client is never retried.
        #[serde(default = "FallbackOn::all")]
        pub on: Vec<FallbackOn>,
        /// Seconds (1 to 600) to wait for a response head before moving on (with `on: timeout`; the last
        /// provider waits as long as any request).
        #[serde(default = "default_timeout_seconds")]
        pub timeout_seconds: u64,
        /// Largest request body kept to be resent (bytes, at most 64 MiB); a larger request
        /// gets 413.
        #[serde(default = "default_max_body_bytes")]
        pub max_body_bytes: usize,
    }

    /// One provider of a chain.
    #[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct FallbackTarget {
        pub provider: String,
        /// The model this provider is asked for instead of the one the client named
        /// (`gpt-4o: claude-sonnet-4-0`); `"*"` for any other. A model not mapped is sent as is.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub models: BTreeMap<String, String>,
    }

    /// A failure that moves a request on.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
    pub enum FallbackOn {
        /// The connection could not be made.
        #[serde(rename = "connect")]
        Connect,
        /// The provider answered 500–599.
        #[serde(rename = "5xx")]
        ServerError,
        /// The provider answered 429.
        #[serde(rename = "429")]
        RateLimited,
        /// No response head within `timeout_seconds`.
        #[serde(rename = "timeout")]
        Timeout,
    }

    impl FallbackOn {
        pub fn all() -> Vec<FallbackOn> {
            vec![
                FallbackOn::Connect,
                FallbackOn::ServerError,
                FallbackOn::RateLimited,
                FallbackOn::Timeout,
            ]
        }
    }

    fn default_timeout_seconds() -> u64 {
        30
    }

    fn default_max_body_bytes() -> usize {
        8 * 1024 * 1024
    }
}

/// Providers a chain may name: every one an attempt, and Pingora makes at most 16 per request.
const MAX_HOPS: usize = 8;
/// Largest body a chain keeps to resend (each request holds it twice in memory).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A route's chain, built.
#[derive(Debug)]
pub struct Fallback {
    pub hops: Vec<Hop>,
    pub on_connect: bool,
    pub on_server_error: bool,
    pub on_rate_limited: bool,
    /// `Some` with `on: timeout`.
    pub timeout: Option<Duration>,
    pub max_body: usize,
}

#[derive(Debug)]
pub struct Hop {
    pub provider: Arc<Provider>,
    models: HashMap<String, String>,
}

impl Hop {
    /// The model to ask this provider for when the client asked for `asked`.
    pub fn model(&self, asked: Option<&str>) -> Option<&str> {
        asked
            .and_then(|m| self.models.get(m))
            .or_else(|| self.models.get("*"))
            .map(String::as_str)
    }
}

impl Fallback {
    /// Whether an answer with this status moves the request on.
    pub fn moves_on(&self, status: u16) -> bool {
        (status == 429 && self.on_rate_limited) || (status >= 500 && self.on_server_error)
    }
}

/// The chain of `routes[i]` (`at`) in front of `primary`, checked: each provider exists, speaks
/// an LLM API and has keys of its own (a client's key is for its own provider only).
pub(super) fn build(
    w: &wire::Fallback,
    primary: &Provider,
    providers: &[Arc<Provider>],
    declared: &[crate::config::wire::Provider],
    at: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Fallback> {
    let at = format!("{at}.fallback");
    if matches!(
        primary.kind,
        ProviderKind::Http | ProviderKind::Gemini | ProviderKind::AzureOpenAi
    ) {
        errors.push(ConfigError::at(
            at.clone(),
            format!(
                "provider `{}` is `kind: {}`: only OpenAI- and Anthropic-shaped APIs fall back",
                primary.name,
                match primary.kind {
                    ProviderKind::Http => "http",
                    ProviderKind::Gemini => "gemini",
                    _ => "azure-openai",
                }
            ),
        ));
    }
    let bounds = [
        ("to", w.to.len(), 1, MAX_HOPS, "providers"),
        (
            "timeout_seconds",
            w.timeout_seconds as usize,
            1,
            600,
            "seconds",
        ),
        ("max_body_bytes", w.max_body_bytes, 1, MAX_BODY, "bytes"),
    ];
    for (field, v, low, high, unit) in bounds {
        if !(low..=high).contains(&v) {
            errors.push(ConfigError::at(
                format!("{at}.{field}"),
                format!("{low} to {high} {unit}"),
            ));
        }
    }
    let mut hops = Vec::new();
    for (j, t) in w.to.iter().enumerate() {
        let field = format!("{at}.to[{j}].provider");
        let Some(p) = providers.iter().find(|p| p.name == t.provider) else {
            if !declared.iter().any(|p| p.name == t.provider) {
                errors.push(ConfigError::at(
                    field,
                    format!("no provider named `{}`", t.provider),
                ));
            }
            continue;
        };
        let keyed = matches!(
            p.credentials,
            CredentialMode::Centralized | CredentialMode::PreferByok
        );
        let problem = if p.kind == ProviderKind::Http {
            Some("is `kind: http`: only LLM APIs can answer for an LLM route")
        } else if matches!(p.kind, ProviderKind::Gemini | ProviderKind::AzureOpenAi) {
            Some("is `kind: gemini` or `azure-openai`: its requests are not translated yet")
        } else if !keyed {
            Some("must use keys of its own (`credentials: centralized` or `prefer-byok`)")
        } else {
            None
        };
        if let Some(problem) = problem {
            errors.push(ConfigError::at(
                field,
                format!("provider `{}` {problem}", t.provider),
            ));
            continue;
        }
        hops.push(Hop {
            provider: p.clone(),
            models: t.models.clone().into_iter().collect(),
        });
    }
    let on = |o| w.on.contains(&o);
    Some(Fallback {
        hops,
        on_connect: on(wire::FallbackOn::Connect),
        on_server_error: on(wire::FallbackOn::ServerError),
        on_rate_limited: on(wire::FallbackOn::RateLimited),
        timeout: on(wire::FallbackOn::Timeout).then(|| Duration::from_secs(w.timeout_seconds)),
        max_body: w.max_body_bytes,
    })
}
