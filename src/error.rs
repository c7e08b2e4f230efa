//! The one error type of the request path, and how each failure looks on the wire.

use crate::upstream::ProviderKind;

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
    #[error("the Sluice credential is not valid: {0}")]
    InvalidCredential(AuthFailure),
    #[error("this credential may not use this route: {0}")]
    Forbidden(Forbidden),
    #[error("two different Sluice credentials were sent; send one")]
    ConflictingCredentials,
    #[error(
        "this provider needs your own provider key (bring your own key) next to X-Sluice-Token"
    )]
    MissingProviderKey,
    #[error("no healthy provider key is available for this provider")]
    NoHealthyKey,
    /// A data plane cut off from its control plane for longer than it may serve
    /// (`server.control_plane_stale: refuse`).
    #[error("this gateway has lost its control plane; try another replica")]
    ControlPlaneStale,
    #[error("the upstream provider could not be reached")]
    UpstreamUnavailable,
    /// The upstream did not connect or answer in time (504).
    #[error("the upstream provider did not answer in time")]
    UpstreamTimeout,
    /// Something in Sluice failed (500); the log says what.
    #[error("internal error")]
    Internal,
    /// Forward proxy: no usable `Proxy-Authorization` (407).
    #[error("proxy authentication required: send Proxy-Authorization with a Sluice token")]
    ProxyAuthMissing,
    /// Forward proxy: the `Proxy-Authorization` credential was refused (407).
    #[error("proxy authentication failed: {0}")]
    ProxyAuthInvalid(AuthFailure),
    /// Forward proxy: the destination is refused by policy.
    #[error("{0}")]
    Destination(Denied),
    /// Forward proxy: a request that is neither CONNECT nor absolute-form HTTP.
    #[error("this is a forward proxy: send CONNECT host:port or an absolute-form http:// request")]
    NotAProxyRequest,
    /// A request Sluice will not interpret for the upstream (400).
    #[error("{0}")]
    BadRequest(BadRequest),
    /// A limit (`limits:`) refuses the request for now (429).
    #[error("{}", limited_message(.0))]
    Limited(Limited),
    /// A budget (`budgets:`) is used up until its period ends (429, not worth retrying).
    #[error("the budget for these requests is used up until {}", crate::clock::rfc3339(.0.resets_at))]
    BudgetExceeded(Exceeded),
}

/// Which allowance refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Requests,
    Tokens,
    Concurrent,
}

impl Dimension {
    pub fn reason(self) -> &'static str {
        match self {
            Dimension::Requests => "rate_limited",
            Dimension::Tokens => "token_rate_limited",
            Dimension::Concurrent => "concurrency_limited",
        }
    }
}

/// A refusal, with what the client needs to back off (the `Retry-After` and rate-limit headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub dimension: Dimension,
    /// The allowance (requests or tokens per `period_s`, or requests in flight).
    pub limit: u64,
    /// 1 or 60 for rates, 0 for concurrency.
    pub period_s: u32,
    pub retry_after_ms: u64,
    /// Until the allowance is whole again.
    pub reset_ms: u64,
}

/// A refusal: the budget is used up until `resets_at` (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub resets_at: u64,
    pub now: u64,
}

/// `rate limit reached: 60 requests per minute; retry after 1.2 s`.
fn limited_message(l: &Limited) -> String {
    let per = match l.period_s {
        1 => "per second",
        _ => "per minute",
    };
    let what = match l.dimension {
        Dimension::Requests => format!("rate limit reached: {} requests {per}", l.limit),
        Dimension::Tokens => format!("token rate limit reached: {} tokens {per}", l.limit),
        Dimension::Concurrent => {
            format!("concurrency limit reached: {} requests in flight", l.limit)
        }
    };
    format!(
        "{what}; retry after {:.1} s",
        l.retry_after_ms as f64 / 1000.0
    )
}

/// Requests refused before routing because their meaning could differ between Sluice and the
/// upstream (or anything in between).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// `.`/`..` segments, raw or percent-encoded: matched against one route, they could be
    /// resolved by the upstream (or a CDN before it) into another path.
    #[error(
        "the path holds a `.` or `..` segment (raw or percent-encoded); send the normalised path"
    )]
    DotSegment,
    /// `%2F`/`%5C` or a backslash: a separator the upstream may decode into a new segment.
    #[error("the path holds an encoded `/`, an encoded `\\` or a backslash")]
    EncodedSeparator,
    /// `Upgrade`: a 101 from the upstream would turn the connection into a raw tunnel whose
    /// later bytes no filter sees.
    #[error("protocol upgrades (Upgrade, Connection: upgrade) are not allowed through this route")]
    Upgrade,
    /// The client's request could not be read (bad framing, a body cut short).
    #[error("the request could not be read")]
    Unreadable,
    /// A body over what the route keeps (a fallback chain's `max_body_bytes`).
    #[error("the request body is larger than this route takes")]
    BodyTooLarge,
    /// The same credential header twice: which one counts would be anyone's guess.
    #[error(
        "a credential header (Authorization, x-api-key, X-Sluice-Token, …) was sent more than once"
    )]
    DuplicateCredential,
}

impl BadRequest {
    pub fn reason(&self) -> &'static str {
        match self {
            BadRequest::DotSegment => "dot_segment",
            BadRequest::EncodedSeparator => "encoded_separator",
            BadRequest::Upgrade => "upgrade_refused",
            BadRequest::DuplicateCredential => "duplicate_credential",
            BadRequest::Unreadable => "unreadable_request",
            BadRequest::BodyTooLarge => "body_too_large",
        }
    }
}

/// Why the forward proxy refuses a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this destination host is not allowed through the proxy")]
    Host,
    #[error("this destination port is not allowed through the proxy")]
    Port,
    #[error("this destination resolves to a private or loopback address")]
    PrivateAddress,
}

impl Denied {
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::Host => "host_denied",
            Denied::Port => "port_denied",
            Denied::PrivateAddress => "private_address",
        }
    }
}

/// Why a credential was refused: a fixed label for metrics and logs, and a description for the
/// client. Never carries the credential itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("malformed token")]
    Malformed,
    #[error("unknown token")]
    Unknown,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token revoked")]
    Revoked,
    #[error("token owner disabled")]
    OwnerDisabled,
    #[error("bad signature")]
    BadSignature,
    #[error("wrong audience")]
    WrongAudience,
    #[error("untrusted issuer")]
    UnknownIssuer,
    #[error("unsupported or disallowed algorithm")]
    UnsupportedAlgorithm,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("a required claim is missing")]
    MissingClaim,
    #[error(
        "this route takes a client certificate (TLS) that names its holder, and none was presented"
    )]
    NoClientCertificate,
}

impl AuthFailure {
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::Malformed => "malformed",
            AuthFailure::Unknown => "unknown",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::Revoked => "revoked",
            AuthFailure::OwnerDisabled => "owner_disabled",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::WrongAudience => "wrong_audience",
            AuthFailure::UnknownIssuer => "unknown_issuer",
            AuthFailure::UnsupportedAlgorithm => "unsupported_alg",
            AuthFailure::UnknownKey => "unknown_kid",
            AuthFailure::NoClientCertificate => "no_client_certificate",
            AuthFailure::MissingClaim => "missing_claim",
        }
    }
}

/// Why a valid credential may not use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    #[error("a required scope is missing")]
    MissingScope,
    #[error("tokens from this issuer are not accepted here")]
    IssuerNotAllowed,
    #[error("a required claim does not match")]
    ClaimMismatch,
    #[error("this route does not accept this kind of credential")]
    CredentialKind,
    #[error("this token was not minted by an admin: it cannot act as its owner upstream")]
    GrantsWithheld,
}

impl Forbidden {
    pub fn reason(&self) -> &'static str {
        match self {
            Forbidden::MissingScope => "missing_scope",
            Forbidden::IssuerNotAllowed => "issuer_not_allowed",
            Forbidden::ClaimMismatch => "claim_mismatch",
            Forbidden::CredentialKind => "credential_kind",
            Forbidden::GrantsWithheld => "oauth_grants_withheld",
        }
    }
}

/// Which provider's JSON error shape a response uses, so SDKs raise their usual exceptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    OpenAi,
    Anthropic,
    /// Google's `{"error": {"code", "message", "status"}}`.
    Gemini,
}

impl From<ProviderKind> for ErrorShape {
    fn from(kind: ProviderKind) -> Self {
        match kind {
            ProviderKind::Anthropic => ErrorShape::Anthropic,
            ProviderKind::Gemini => ErrorShape::Gemini,
            ProviderKind::AzureOpenAi => ErrorShape::OpenAi,
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Http => {
                ErrorShape::OpenAi
            }
        }
    }
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::NoRoute => 404,
            GatewayError::MissingCredential => 401,
            GatewayError::InvalidCredential(_) => 401,
            GatewayError::Forbidden(_) => 403,
            GatewayError::ConflictingCredentials => 400,
            GatewayError::MissingProviderKey => 401,
            GatewayError::NoHealthyKey | GatewayError::ControlPlaneStale => 503,
            GatewayError::UpstreamUnavailable => 502,
            GatewayError::UpstreamTimeout => 504,
            GatewayError::Internal => 500,
            GatewayError::ProxyAuthMissing | GatewayError::ProxyAuthInvalid(_) => 407,
            GatewayError::Destination(_) => 403,
            GatewayError::NotAProxyRequest => 400,
            GatewayError::BadRequest(_) => 400,
            GatewayError::Limited(_) | GatewayError::BudgetExceeded(_) => 429,
        }
    }

    /// A fixed label for metrics and logs; never contains request data.
    pub fn reason(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "no_route",
            GatewayError::MissingCredential => "missing_credential",
            GatewayError::InvalidCredential(failure) => failure.reason(),
            GatewayError::Forbidden(forbidden) => forbidden.reason(),
            GatewayError::ConflictingCredentials => "conflicting_credentials",
            GatewayError::MissingProviderKey => "missing_provider_key",
            GatewayError::NoHealthyKey => "no_healthy_key",
            GatewayError::ControlPlaneStale => "control_plane_stale",
            GatewayError::UpstreamUnavailable => "upstream_unavailable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::Internal => "internal",
            GatewayError::ProxyAuthMissing => "missing_credential",
            GatewayError::ProxyAuthInvalid(failure) => failure.reason(),
            GatewayError::Destination(denied) => denied.reason(),
            GatewayError::NotAProxyRequest => "not_a_proxy_request",
            GatewayError::BadRequest(bad) => bad.reason(),
            GatewayError::Limited(l) => l.dimension.reason(),
            GatewayError::BudgetExceeded(_) => "budget_exceeded",
        }
    }

    /// Headers that go with the refusal besides the challenge: `Retry-After` and the provider's
    /// own rate-limit headers (OpenAI `x-ratelimit-*-requests|tokens` with durations such as
    /// `6m0s`, Anthropic `anthropic-ratelimit-*` with an RFC 3339 reset time).
    pub fn headers(&self, shape: ErrorShape) -> Vec<(String, String)> {
        if let GatewayError::BudgetExceeded(b) = self {
            // The SDKs would retry a 429; this one lasts until the period ends.
            return vec![
                (
                    "retry-after".to_owned(),
                    b.resets_at.saturating_sub(b.now).max(1).to_string(),
                ),
                ("x-should-retry".to_owned(), "false".to_owned()),
            ];
        }
        let GatewayError::Limited(l) = self else {
            return Vec::new();
        };
        let mut h = vec![
            (
                "retry-after".to_owned(),
                l.retry_after_ms.div_ceil(1000).max(1).to_string(),
            ),
            ("retry-after-ms".to_owned(), l.retry_after_ms.to_string()),
        ];
        let unit = match l.dimension {
            Dimension::Requests | Dimension::Concurrent => "requests",
            Dimension::Tokens => "tokens",
        };
        if l.dimension == Dimension::Concurrent {
            return h;
        }
        match shape {
            ErrorShape::OpenAi => {
                h.push((format!("x-ratelimit-limit-{unit}"), l.limit.to_string()));
                h.push((format!("x-ratelimit-remaining-{unit}"), "0".to_owned()));
                h.push((format!("x-ratelimit-reset-{unit}"), go_duration(l.reset_ms)));
            }
            ErrorShape::Anthropic => {
                let reset =
                    std::time::SystemTime::now() + std::time::Duration::from_millis(l.reset_ms);
                h.push((
                    format!("anthropic-ratelimit-{unit}-limit"),
                    l.limit.to_string(),
                ));
                h.push((
                    format!("anthropic-ratelimit-{unit}-remaining"),
                    "0".to_owned(),
                ));
                h.push((
                    format!("anthropic-ratelimit-{unit}-reset"),
                    humantime::format_rfc3339_seconds(reset).to_string(),
                ));
            }
            // Google's APIs send no rate-limit headers beside `Retry-After`.
            ErrorShape::Gemini => {}
        }
        h
    }

    /// The header that carries `challenge()`: `Proxy-Authenticate` for 407s.
    pub fn challenge_header(&self) -> http::HeaderName {
        match self.status() {
            407 => http::header::PROXY_AUTHENTICATE,
            _ => http::header::WWW_AUTHENTICATE,
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750) for 401s and scope refusals.
    pub fn challenge(&self) -> Option<String> {
        match self {
            GatewayError::MissingCredential | GatewayError::MissingProviderKey => {
                Some(r#"Bearer realm="sluice""#.to_owned())
            }
            GatewayError::InvalidCredential(failure) => Some(format!(
                r#"Bearer realm="sluice", error="invalid_token", error_description="{failure}""#
            )),
            GatewayError::Forbidden(Forbidden::MissingScope) => Some(
                r#"Bearer realm="sluice", error="insufficient_scope", error_description="a required scope is missing""#
                    .to_owned(),
            ),
            GatewayError::ProxyAuthMissing | GatewayError::ProxyAuthInvalid(_) => {
                Some(r#"Basic realm="sluice""#.to_owned())
            }
            GatewayError::Forbidden(_)
            | GatewayError::Destination(_)
            | GatewayError::NotAProxyRequest
            | GatewayError::BadRequest(_)
            | GatewayError::NoRoute
            | GatewayError::ConflictingCredentials
            | GatewayError::NoHealthyKey
            | GatewayError::ControlPlaneStale
            | GatewayError::UpstreamUnavailable
            | GatewayError::UpstreamTimeout
            | GatewayError::Internal
            | GatewayError::Limited(_)
            | GatewayError::BudgetExceeded(_) => None,
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
                    | GatewayError::InvalidCredential(_)
                    | GatewayError::MissingProviderKey
                    | GatewayError::ProxyAuthMissing
                    | GatewayError::ProxyAuthInvalid(_) => {
                        ("invalid_request_error", "invalid_api_key")
                    }
                    GatewayError::Forbidden(_) | GatewayError::Destination(_) => {
                        ("invalid_request_error", "forbidden")
                    }
                    GatewayError::NotAProxyRequest => {
                        ("invalid_request_error", "not_a_proxy_request")
                    }
                    GatewayError::BadRequest(bad) => ("invalid_request_error", bad.reason()),
                    GatewayError::ConflictingCredentials => {
                        ("invalid_request_error", "conflicting_credentials")
                    }
                    GatewayError::NoHealthyKey => ("server_error", "no_healthy_key"),
                    GatewayError::ControlPlaneStale => ("server_error", "control_plane_stale"),
                    GatewayError::UpstreamUnavailable => ("server_error", "upstream_unavailable"),
                    GatewayError::UpstreamTimeout => ("server_error", "upstream_timeout"),
                    GatewayError::Internal => ("server_error", "internal"),
                    GatewayError::Limited(l) if l.dimension == Dimension::Tokens => {
                        ("tokens", "rate_limit_exceeded")
                    }
                    GatewayError::Limited(_) => ("requests", "rate_limit_exceeded"),
                    GatewayError::BudgetExceeded(_) => ("insufficient_quota", "budget_exceeded"),
                };
                serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
            }
            ErrorShape::Anthropic => {
                let kind = match self {
                    GatewayError::NoRoute => "not_found_error",
                    GatewayError::MissingCredential
                    | GatewayError::InvalidCredential(_)
                    | GatewayError::MissingProviderKey
                    | GatewayError::ProxyAuthMissing
                    | GatewayError::ProxyAuthInvalid(_) => "authentication_error",
                    GatewayError::Forbidden(_) | GatewayError::Destination(_) => "permission_error",
                    GatewayError::ConflictingCredentials
                    | GatewayError::NotAProxyRequest
                    | GatewayError::BadRequest(_) => "invalid_request_error",
                    GatewayError::NoHealthyKey | GatewayError::ControlPlaneStale => {
                        "overloaded_error"
                    }
                    GatewayError::UpstreamUnavailable | GatewayError::Internal => "api_error",
                    GatewayError::UpstreamTimeout => "timeout_error",
                    GatewayError::Limited(_) | GatewayError::BudgetExceeded(_) => {
                        "rate_limit_error"
                    }
                };
                serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
            }
            ErrorShape::Gemini => {
                let code = self.status();
                serde_json::json!({"error": {"code": code, "message": message, "status": google_status(code)}})
            }
        };
        value.to_string().into_bytes()
    }
}

/// The canonical status Google's APIs name beside an HTTP status.
fn google_status(code: u16) -> &'static str {
    match code {
        400 | 413 | 414 | 431 => "INVALID_ARGUMENT",
        401 | 407 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500..=599 => "INTERNAL",
        _ => "UNKNOWN",
    }
}

/// A duration as OpenAI writes its rate-limit resets: `20ms`, `1.5s`, `6m0s`.
fn go_duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = format!("{:.3}", ms as f64 / 1000.0);
        format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// How a failure while proxying (after the filters admitted the request) is answered, as one
/// table (linkerd's `Rescue`): the status and the error whose body and reason go with it, or
/// `None` when nothing can be written (the client went away).
pub fn proxy_failure(
    etype: &pingora::ErrorType,
    source: &pingora::ErrorSource,
) -> Option<(u16, GatewayError)> {
    use pingora::{ErrorSource, ErrorType};
    let answer = match (etype, source) {
        (ErrorType::HTTPStatus(413), _) => {
            (413, GatewayError::BadRequest(BadRequest::BodyTooLarge))
        }
        (ErrorType::HTTPStatus(code @ 400..=499), _) => {
            (*code, GatewayError::BadRequest(BadRequest::Unreadable))
        }
        (ErrorType::HTTPStatus(code), _) => (*code, GatewayError::UpstreamUnavailable),
        (
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
            ErrorSource::Upstream,
        ) => (504, GatewayError::UpstreamTimeout),
        (_, ErrorSource::Upstream) => (502, GatewayError::UpstreamUnavailable),
        (
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
            ErrorSource::Downstream,
        ) => return None,
        (_, ErrorSource::Downstream) => (400, GatewayError::BadRequest(BadRequest::Unreadable)),
        (_, ErrorSource::Internal | ErrorSource::Unset) => (500, GatewayError::Internal),
    };
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_failures_map_to_one_answer_each() {
        use pingora::{ErrorSource as S, ErrorType as T};
        let cases = [
            (
                T::ConnectRefused,
                S::Upstream,
                Some((502, "upstream_unavailable")),
            ),
            (
                T::ConnectTimedout,
                S::Upstream,
                Some((504, "upstream_timeout")),
            ),
            (
                T::ReadTimedout,
                S::Upstream,
                Some((504, "upstream_timeout")),
            ),
            (
                T::InvalidHTTPHeader,
                S::Upstream,
                Some((502, "upstream_unavailable")),
            ),
            (T::ReadError, S::Downstream, None),
            (T::ConnectionClosed, S::Downstream, None),
            (
                T::InvalidHTTPHeader,
                S::Downstream,
                Some((400, "unreadable_request")),
            ),
            (
                T::HTTPStatus(400),
                S::Downstream,
                Some((400, "unreadable_request")),
            ),
            (T::HTTPStatus(413), S::Unset, Some((413, "body_too_large"))),
            (
                T::HTTPStatus(502),
                S::Upstream,
                Some((502, "upstream_unavailable")),
            ),
            (T::InternalError, S::Internal, Some((500, "internal"))),
            (T::InternalError, S::Unset, Some((500, "internal"))),
        ];
        for (etype, source, want) in cases {
            let got = proxy_failure(&etype, &source).map(|(s, e)| (s, e.reason()));
            assert_eq!(got, want, "{etype:?} from {source:?}");
        }
    }

    #[test]
    fn auth_failures_carry_a_challenge_and_provider_shape() {
        let e = GatewayError::InvalidCredential(AuthFailure::Expired);
        assert_eq!(e.status(), 401);
        let challenge = e.challenge().unwrap_or_default();
        assert!(challenge.contains("invalid_token") && challenge.contains("token expired"));
        assert_eq!(e.reason(), "expired");
        assert_eq!(
            GatewayError::Forbidden(Forbidden::MissingScope).status(),
            403
        );
        let openai: serde_json::Value =
            serde_json::from_slice(&e.body(ErrorShape::OpenAi)).unwrap();
        assert_eq!(openai["error"]["code"], "invalid_api_key");
        let anthropic: serde_json::Value =
            serde_json::from_slice(&e.body(ErrorShape::Anthropic)).unwrap();
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "authentication_error");
    }
}

#[cfg(test)]
mod gemini_tests {
    use super::*;

    #[test]
    fn refusals_in_googles_shape() {
        let body = |e: GatewayError| -> serde_json::Value {
            serde_json::from_slice(&e.body(ErrorShape::Gemini)).unwrap()
        };
        let missing = body(GatewayError::MissingCredential);
        assert_eq!(missing["error"]["code"], 401);
        assert_eq!(missing["error"]["status"], "UNAUTHENTICATED");
        assert_eq!(body(GatewayError::NoRoute)["error"]["status"], "NOT_FOUND");
        assert_eq!(
            body(GatewayError::NoHealthyKey)["error"]["status"],
            "UNAVAILABLE"
        );
        assert_eq!(ErrorShape::from(ProviderKind::Gemini), ErrorShape::Gemini);
    }
}
