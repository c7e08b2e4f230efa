//! The one error type of the request path, and how each failure looks on the wire.

use crate::config::ProviderKind;

/// Every way a request can be refused by Sluice itself (upstream answers pass through untouched).
///
/// `status()`, `reason()`, `challenge()` and the body shapes are exhaustive matches: a new variant
/// does not compile until each of them decides what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("no route matches this path")]
    NoRoute,
    #[error(
        "a Sluice credential is required (Authorization: Bearer, x-api-key or X-Sluice-Token)"
    )]
    MissingCredential,
    #[error("the Sluice credential is not valid")]
    InvalidCredential,
    #[error("two different Sluice credentials were sent; send one")]
    ConflictingCredentials,
    #[error(
        "this provider needs your own provider key (bring your own key) next to X-Sluice-Token"
    )]
    MissingProviderKey,
    #[error("no healthy provider key is available for this provider")]
    NoHealthyKey,
    #[error("the upstream provider could not be reached")]
    UpstreamUnavailable,
}

/// Which provider's JSON error shape a response uses, so SDKs raise their usual exceptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    OpenAi,
    Anthropic,
}

impl From<ProviderKind> for ErrorShape {
    fn from(kind: ProviderKind) -> Self {
        match kind {
            ProviderKind::Anthropic => ErrorShape::Anthropic,
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => ErrorShape::OpenAi,
        }
    }
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::NoRoute => 404,
            GatewayError::MissingCredential => 401,
            GatewayError::InvalidCredential => 401,
            GatewayError::ConflictingCredentials => 400,
            GatewayError::MissingProviderKey => 401,
            GatewayError::NoHealthyKey => 503,
            GatewayError::UpstreamUnavailable => 502,
        }
    }

    /// A fixed label for metrics and logs; never contains request data.
    pub fn reason(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "no_route",
            GatewayError::MissingCredential => "missing_credential",
            GatewayError::InvalidCredential => "invalid_credential",
            GatewayError::ConflictingCredentials => "conflicting_credentials",
            GatewayError::MissingProviderKey => "missing_provider_key",
            GatewayError::NoHealthyKey => "no_healthy_key",
            GatewayError::UpstreamUnavailable => "upstream_unavailable",
        }
    }

    /// The `WWW-Authenticate` value for 401s (RFC 6750).
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            GatewayError::MissingCredential => Some(r#"Bearer realm="sluice""#),
            GatewayError::InvalidCredential => Some(
                r#"Bearer realm="sluice", error="invalid_token", error_description="the token is not valid""#,
            ),
            GatewayError::MissingProviderKey => Some(r#"Bearer realm="sluice""#),
            GatewayError::NoRoute
            | GatewayError::ConflictingCredentials
            | GatewayError::NoHealthyKey
            | GatewayError::UpstreamUnavailable => None,
        }
    }

    /// The JSON body in the provider's own error shape.
    pub fn body(&self, shape: ErrorShape) -> Vec<u8> {
        let message = self.to_string();
        let value = match shape {
            ErrorShape::OpenAi => {
                let (kind, code) = match self {
                    GatewayError::NoRoute => ("invalid_request_error", "unknown_url"),
                    GatewayError::MissingCredential
                    | GatewayError::InvalidCredential
                    | GatewayError::MissingProviderKey => {
                        ("invalid_request_error", "invalid_api_key")
                    }
                    GatewayError::ConflictingCredentials => {
                        ("invalid_request_error", "conflicting_credentials")
                    }
                    GatewayError::NoHealthyKey => ("server_error", "no_healthy_key"),
                    GatewayError::UpstreamUnavailable => ("server_error", "upstream_unavailable"),
                };
                serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
            }
            ErrorShape::Anthropic => {
                let kind = match self {
                    GatewayError::NoRoute => "not_found_error",
                    GatewayError::MissingCredential
                    | GatewayError::InvalidCredential
                    | GatewayError::MissingProviderKey => "authentication_error",
                    GatewayError::ConflictingCredentials => "invalid_request_error",
                    GatewayError::NoHealthyKey => "overloaded_error",
                    GatewayError::UpstreamUnavailable => "api_error",
                };
                serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
            }
        };
        value.to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failures_carry_a_challenge_and_provider_shape() {
        let e = GatewayError::InvalidCredential;
        assert_eq!(e.status(), 401);
        assert!(e.challenge().unwrap_or("").contains("invalid_token"));
        let openai: serde_json::Value =
            serde_json::from_slice(&e.body(ErrorShape::OpenAi)).unwrap();
        assert_eq!(openai["error"]["code"], "invalid_api_key");
        let anthropic: serde_json::Value =
            serde_json::from_slice(&e.body(ErrorShape::Anthropic)).unwrap();
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "authentication_error");
    }
}
