//! The request policy as plain functions of the request head and the snapshot, in order:
//! check the head → route → authenticate → pick credential. The head is checked first because a
//! path the upstream could read differently must not be routed at all; routing comes next
//! because the route names the auth policy and the error shape; the credential is picked last
//! so a refused request never takes a turn from the key pool.

use http::HeaderName;
use pingora::http::RequestHeader;

use std::net::IpAddr;
use std::sync::Arc;

use super::ctx::Passthrough;
use super::forward::{allowed_addrs, proxy_auth_error, ConnKind, DialError, ForwardConn};
use crate::auth::{self, Principal, CREDENTIAL_HEADERS};
use crate::budgets::Charge;
use crate::config::{CredentialMode, Provider, Snapshot};
use crate::error::{BadRequest, ErrorShape, GatewayError};
use crate::forward::policy::{split_authority, Decision, Denied};
use crate::limits::Grant;

mod provider_paths;
pub use provider_paths::model_in_path;
use provider_paths::push_query;

/// A request Sluice will forward.
#[derive(Debug, PartialEq)]
pub struct Admitted {
    pub route: usize,
    pub principal: Arc<Principal>,
    /// The pool key to inject, or `None` to pass the client's own provider key (BYOK).
    pub key: Option<usize>,
    /// What the limits took (released when the request ends).
    pub grant: Grant,
    /// The budgets its usage is charged to.
    pub charge: Charge,
    /// The provider it starts on: 0 for the route's own, `i` for the fallback chain's `i`-th
    /// when the route's own has no healthy key.
    pub hop: usize,
}

/// A request Sluice answers itself, in the route's provider error shape.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub error: GatewayError,
    pub shape: ErrorShape,
}

/// Who is at the other end of a request's connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer<'a> {
    /// The client's address (the peer's, or the one a trusted load balancer named).
    pub source: Option<IpAddr>,
    /// The client certificate the TLS handshake verified, if any.
    pub cert: Option<&'a auth::PeerCert>,
}

/// `now_ms` is the monotonic clock of key health, `now_unix` the wall clock of token expiry.
pub async fn admit(
    req: &RequestHeader,
    snap: &Snapshot,
    peer: Peer<'_>,
    now_ms: u64,
    now_unix: u64,
) -> Result<Admitted, Refusal> {
    let path = req.uri.path();
    check_head(req).map_err(|error| Refusal {
        error,
        shape: guess_shape(path),
    })?;
    let Some((route_idx, route)) = snap.route(path) else {
        return Err(Refusal {
            error: GatewayError::NoRoute,
            shape: guess_shape(path),
        });
    };
    let provider = &route.provider;
    let shape = ErrorShape::from(provider.kind);
    let refuse = |error| Refusal { error, shape };

    let rest = &path[route.prefix.len()..];
    let access = if route.open.iter().any(|o| o.matches(&req.method, rest)) {
        &OPEN
    } else {
        &route.access
    };
    let authed = auth::authenticate((&req.headers, peer.cert), access, snap, now_unix)
        .await
        .map_err(refuse)?;
    let on_route = OnRoute {
        idx: route_idx,
        route,
        path,
        fallback: true,
        source: peer.source,
    };
    admit_to(
        snap,
        on_route,
        authed.principal,
        authed.client_provider_key,
        now_ms,
        now_unix,
    )
    .await
    .map_err(refuse)
}

/// The route a caller was admitted to, as the route admission needs it.
#[derive(Clone, Copy)]
struct OnRoute<'a> {
    idx: usize,
    route: &'a crate::config::Route,
    path: &'a str,
    /// Whether its fallback chain may answer when its provider has no healthy key.
    fallback: bool,
    /// The client's address (limits `per: source`).
    source: Option<IpAddr>,
}

/// The part of admission after the credential: the route's budgets and limits, then the
/// credential to inject. Every route of every entry point (reverse, agent environments,
/// intercepted forward-proxy hosts) goes through here.
async fn admit_to(
    snap: &Snapshot,
    at: OnRoute<'_>,
    principal: Arc<Principal>,
    client_provider_key: bool,
    now_ms: u64,
    now_unix: u64,
) -> Result<Admitted, GatewayError> {
    let route = at.route;
    let charge = budget(snap, route, &principal, now_unix)?;
    let grant = limit(snap, route, &principal, at.source).await?;
    let picked = pick_credential(&route.provider, client_provider_key, &principal, now_ms);
    let (hop, key) = match picked {
        Ok(key) => (0, key),
        // Every key of the route's provider is benched: its fallback chain answers.
        Err(GatewayError::NoHealthyKey) if at.fallback => {
            super::fallback::first_hop(route, at.path, &principal, now_ms)
                .map(|(hop, key)| (hop, Some(key)))
                .ok_or(GatewayError::NoHealthyKey)?
        }
        Err(e) => return Err(e),
    };
    Ok(Admitted {
        route: at.idx,
        principal,
        key,
        grant,
        charge,
        hop,
    })
}

/// The budgets that apply to this route and principal; a used-up one refuses.
fn budget(
    snap: &Snapshot,
    route: &crate::config::Route,
    principal: &Principal,
    now_unix: u64,
) -> Result<Charge, GatewayError> {
    if snap.budgets.is_empty() {
        return Ok(Charge::default());
    }
    let at = crate::limits::At {
        route: &route.label,
        provider: &route.provider.name,
        mcp_server: None,
        endpoint: None,
        source: None,
    };
    snap.budgets
        .check(at, principal, now_unix)
        .map_err(|(_, exceeded)| GatewayError::BudgetExceeded(exceeded))
}

/// The limits that apply to this route and principal, each taking its share (a refused request
/// takes nothing).
async fn limit(
    snap: &Snapshot,
    route: &crate::config::Route,
    principal: &Principal,
    source: Option<IpAddr>,
) -> Result<Grant, GatewayError> {
    let at = crate::limits::At {
        route: &route.label,
        provider: &route.provider.name,
        mcp_server: None,
        endpoint: None,
        source,
    };
    limit_at(snap, at, principal).await
}

/// The limits that apply at `at` (a route, or an MCP server), each taking its share; a refusal
/// is counted by limit and dimension.
pub async fn limit_at(
    snap: &Snapshot,
    at: crate::limits::At<'_>,
    principal: &Principal,
) -> Result<Grant, GatewayError> {
    if snap.limits.is_empty() {
        return Ok(Grant::default());
    }
    snap.limits
        .admit(at, principal, crate::limits::now_ns())
        .await
        .map_err(|(name, limited)| {
            crate::metrics::METRICS
                .limited
                .with_label_values(&[&name, limited.dimension.reason()])
                .inc();
            GatewayError::Limited(limited)
        })
}

/// An open operation of a route: no credential asked.
static OPEN: auth::Access = auth::Access {
    auth: auth::AuthPolicy::None,
    scopes: Vec::new(),
    issuers: None,
    required_claims: std::collections::BTreeMap::new(),
    app_audience: None,
};

/// Refuses what Sluice and the upstream could interpret differently: dot segments and encoded
/// separators in the path (a route's prefix and scopes would not bound what the upstream
/// serves) and protocol upgrades (a 101 would leave the rest of the connection unfiltered).
pub fn check_head(req: &RequestHeader) -> Result<(), GatewayError> {
    check_path(req.uri.path()).map_err(GatewayError::BadRequest)?;
    // An HTTP/1.1 upgrade needs the `Upgrade` header (`Connection: upgrade` alone asks for
    // nothing), and Pingora turns a request into an upgrade by that header.
    if req.headers.contains_key(http::header::UPGRADE) {
        return Err(GatewayError::BadRequest(BadRequest::Upgrade));
    }
    Ok(())
}

/// A path is refused, not normalised: normalising would forward a path the client did not
/// write, and clients that send dot segments to an API are broken or probing.
/// The body length a request head declares (`Content-Length`), when it declares one.
pub fn declared_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

pub fn check_path(path: &str) -> Result<(), BadRequest> {
    let bytes = path.as_bytes();
    // API paths rarely hold a dot, a percent sign or a backslash: one pass decides.
    if !bytes.iter().any(|b| matches!(b, b'.' | b'%' | b'\\')) {
        return Ok(());
    }
    if bytes.contains(&b'\\') {
        return Err(BadRequest::EncodedSeparator);
    }
    let mut i = 0;
    while let Some(pos) = bytes[i..].iter().position(|b| *b == b'%') {
        let at = i + pos;
        if let Some(hex) = bytes.get(at + 1..at + 3) {
            if hex.eq_ignore_ascii_case(b"2f") || hex.eq_ignore_ascii_case(b"5c") {
                return Err(BadRequest::EncodedSeparator);
            }
        }
        i = at + 1;
    }
    for segment in path.split('/') {
        if !segment.contains(['.', '%']) {
            continue;
        }
        // Decoded as often as an upstream chain might (`%252e` is `%2e` to the first one), at
        // most `MAX_DECODES` times: a segment still encoded after that is refused (no client
        // encodes so deep, and decoding on would cost a pass per two bytes). Path parameters
        // are cut off as Tomcat, Jetty and Spring do (`..;x` is `..`).
        const MAX_DECODES: usize = 4;
        let mut decoded = std::borrow::Cow::Borrowed(segment.as_bytes());
        let mut settled = false;
        for _ in 0..=MAX_DECODES {
            let once: Vec<u8> = percent_encoding::percent_decode(&decoded).collect();
            if once == *decoded {
                settled = true;
                break;
            }
            decoded = std::borrow::Cow::Owned(once);
        }
        if !settled {
            return Err(BadRequest::EncodedSeparator);
        }
        if decoded.iter().any(|b| matches!(b, b'/' | b'\\')) {
            return Err(BadRequest::EncodedSeparator);
        }
        // NUL ends a name for some upstreams; 0xC0/0xC1 start overlong UTF-8 (`%c0%ae` is a
        // dot to lenient decoders); dots and spaces alone are `.`/`..` to Windows, which trims
        // them (`...`, `.. `).
        let bare = decoded.split(|b| *b == b';').next().unwrap_or_default();
        let only_dots = bare.contains(&b'.') && bare.iter().all(|b| matches!(b, b'.' | b' '));
        if only_dots || decoded.iter().any(|b| matches!(b, 0 | 0xC0 | 0xC1)) {
            return Err(BadRequest::DotSegment);
        }
    }
    Ok(())
}

/// The pool key to inject, or `None` to pass the client's own key, by the provider's mode.
fn pick_credential(
    provider: &Provider,
    client_provider_key: bool,
    principal: &Principal,
    now_ms: u64,
) -> Result<Option<usize>, GatewayError> {
    let use_client_key = match provider.credentials {
        // The user's own token comes from the vault after admission.
        CredentialMode::OAuth | CredentialMode::None => return Ok(None),
        CredentialMode::Centralized => false,
        CredentialMode::Byok if !client_provider_key => {
            return Err(GatewayError::MissingProviderKey)
        }
        CredentialMode::Byok => true,
        CredentialMode::PreferByok => client_provider_key,
    };
    if use_client_key {
        return Ok(None);
    }
    pick_key(provider, principal, now_ms, None)
        .map(Some)
        .ok_or(GatewayError::NoHealthyKey)
}

/// A pool key for `principal`: its own with `affinity: principal`, else the next in the
/// weighted rotation; never `exclude` (the key a retry moves away from) when another serves.
pub fn pick_key(
    provider: &Provider,
    principal: &Principal,
    now_ms: u64,
    exclude: Option<usize>,
) -> Option<usize> {
    if provider.affinity {
        let h = crate::balance::hash_str(&principal.key);
        return provider.pool.pick_for(h, now_ms, exclude);
    }
    provider.pool.pick(now_ms, exclude)
}

/// A forward-proxy request Sluice will serve.
#[derive(Debug, PartialEq)]
pub enum ForwardAdmitted {
    /// An intercepted provider host: through the provider's route, like reverse mode.
    Provider(Admitted),
    /// Any other allowed host (plain HTTP only): proxied as is, to the address checked here.
    Passthrough {
        destination: Passthrough,
        addr: std::net::SocketAddr,
        principal: Arc<Principal>,
    },
}

/// Forward-proxy admission: the destination picks the route. On an intercepted connection the
/// credential is the one given at CONNECT, re-checked against this snapshot; on a plain-HTTP
/// proxy connection each request carries its own `Proxy-Authorization` (407 when refused).
pub async fn admit_forward(
    req: &RequestHeader,
    (conn, source): (&ForwardConn, Option<IpAddr>),
    snap: &Snapshot,
    now_ms: u64,
    now_unix: u64,
) -> Result<(String, ForwardAdmitted), Refusal> {
    let shape = ErrorShape::OpenAi;
    let refuse = |error| Refusal { error, shape };
    let (host, port, token, plain) = destination_and_credential(req, conn).map_err(refuse)?;
    let token = token.ok_or(refuse(GatewayError::ProxyAuthMissing))?;
    // Inside an intercepted connection the client talks to the provider's host: a refused
    // credential is that host's 401. On a plain proxy connection it is the proxy's 407.
    let auth_error = |e: GatewayError| if plain { proxy_auth_error(e) } else { e };
    match snap.forward.decide(&host, port) {
        Decision::Intercept(route_idx) => {
            let Some(route) = snap.routes.get(route_idx) else {
                return Err(refuse(GatewayError::NoRoute));
            };
            let provider = &route.provider;
            let refuse = |error| Refusal {
                error,
                shape: ErrorShape::from(provider.kind),
            };
            check_head(req).map_err(refuse)?;
            auth::single_credentials(&req.headers).map_err(refuse)?;
            // The proxy's own access, then the access of the route the host is reached by
            // (its scopes, issuers and claims), as in reverse mode.
            let principal = auth::verify(&token, &snap.forward.access, snap, now_unix)
                .await
                .and_then(|p| auth::authorize(&p, &route.access).map(|()| p))
                .map_err(|e| refuse(auth_error(e)))?;
            let on_route = OnRoute {
                idx: route_idx,
                route,
                path: req.uri.path(),
                // Intercept routes have no fallback chain.
                fallback: false,
                source,
            };
            let byok = client_sent_provider_key(req);
            let admitted = admit_to(snap, on_route, principal, byok, now_ms, now_unix)
                .await
                .map_err(refuse)?;
            Ok((host, ForwardAdmitted::Provider(admitted)))
        }
        // A host that stopped being intercepted since the CONNECT is not tunnelled instead.
        Decision::Tunnel if !plain => Err(refuse(GatewayError::Destination(Denied::Host))),
        Decision::Tunnel => {
            // Two `Proxy-Authorization` (or other credential) headers: refused, as everywhere.
            auth::single_credentials(&req.headers).map_err(refuse)?;
            let principal = auth::verify(&token, &snap.forward.access, snap, now_unix)
                .await
                .map_err(|e| refuse(auth_error(e)))?;
            // Resolved and checked here, so a private destination is a 403.
            let addr = match allowed_addrs(&host, port, &snap.forward).await {
                Ok(addrs) => addrs
                    .first()
                    .copied()
                    .ok_or(refuse(GatewayError::UpstreamUnavailable))?,
                Err(DialError::Denied(d)) => return Err(refuse(GatewayError::Destination(d))),
                Err(DialError::Unreachable) => {
                    return Err(refuse(GatewayError::UpstreamUnavailable))
                }
            };
            Ok((
                host.clone(),
                ForwardAdmitted::Passthrough {
                    destination: Passthrough { host, port },
                    addr,
                    principal,
                },
            ))
        }
        Decision::Deny(denied) => Err(refuse(GatewayError::Destination(denied))),
    }
}

/// Where a forward-proxy request goes and the credential it carries: the CONNECT's on an
/// intercepted connection, the request's own `Proxy-Authorization` on a plain one (`true`).
fn destination_and_credential(
    req: &RequestHeader,
    conn: &ForwardConn,
) -> Result<(String, u16, Option<String>, bool), GatewayError> {
    Ok(match &conn.kind {
        ConnKind::Intercepted {
            host,
            port,
            credential,
        } => (
            host.clone(),
            *port,
            Some(credential.expose().to_owned()),
            false,
        ),
        ConnKind::Plain => {
            // Pingora keeps only the path in `uri` for absolute-form targets; the whole
            // target is in `raw_path`.
            let (host, port) = absolute_target(req.raw_path())
                .and_then(|(authority, _)| split_authority(&authority, Some(80)))
                .ok_or(GatewayError::NotAProxyRequest)?;
            let token = req
                .headers
                .get(http::header::PROXY_AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(auth::proxy_credential);
            (host, port, token, true)
        }
    })
}

/// The authority and origin-form target of an absolute-form `http://` request target.
pub fn absolute_target(raw: &[u8]) -> Option<(String, String)> {
    let uri = http::Uri::try_from(raw).ok()?;
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None; // userinfo is not allowed in an http URI (RFC 9110 §4.2.1)
    }
    let target = match uri.path_and_query() {
        Some(pq) if pq.as_str().starts_with('/') => pq.as_str().to_owned(),
        Some(pq) => format!("/{}", pq.as_str()),
        None => "/".to_owned(),
    };
    Some((authority.as_str().to_owned(), target))
}

/// The Sluice credential the request presented (the CONNECT's on an intercepted connection,
/// the request's `Proxy-Authorization` on a plain one), for a token exchange and to prove the
/// principal to a remote vault.
pub fn presented_credential(req: &RequestHeader, conn: Option<&ForwardConn>) -> Option<String> {
    match conn.map(|c| &c.kind) {
        Some(ConnKind::Intercepted { credential, .. }) => Some(credential.expose().to_owned()),
        Some(ConnKind::Plain) => req
            .headers
            .get(http::header::PROXY_AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::proxy_credential),
        None => auth::presented(&req.headers, auth::AuthPolicy::Any)
            .ok()
            .and_then(|(token, _)| token.map(str::to_owned)),
    }
}

/// Whether the client sent a provider key of its own (a Sluice credential is not one).
fn client_sent_provider_key(req: &RequestHeader) -> bool {
    ["authorization", "x-api-key"].iter().any(|name| {
        req.headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .is_some_and(|v| !v.is_empty() && !auth::is_sluice_credential(v))
    })
}

/// Error shape for a path that matched no route: Anthropic's paths are recognisable.
pub fn guess_shape(path: &str) -> ErrorShape {
    if path.contains("/messages") || path.contains("anthropic") {
        ErrorShape::Anthropic
    } else {
        ErrorShape::OpenAi
    }
}

/// Headers that choose which account a provider key acts for. A pool key is the operator's:
/// a client may not point it at another organization or project (the upstream would refuse,
/// and a refusal used to bench the key for everyone).
pub static ACCOUNT_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("openai-organization"),
    HeaderName::from_static("openai-project"),
];

static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The credential a request goes upstream with.
#[derive(Debug, Clone, Copy)]
pub enum Inject<'a> {
    /// A key of the provider's pool, in the provider's header.
    Pool(&'a crate::config::ProviderKey),
    /// The user's own token from the vault (`credentials: oauth`), as a bearer token.
    User(&'a str),
    /// The client's own provider key, as sent (BYOK).
    ClientKey,
    /// Nothing (`credentials: none`); client credentials stripped.
    Nothing,
}

impl<'a> Inject<'a> {
    pub fn of(
        mode: CredentialMode,
        key: Option<&'a crate::config::ProviderKey>,
        user: Option<&'a str>,
    ) -> Inject<'a> {
        match (key, user) {
            (Some(key), _) => Inject::Pool(key),
            (None, Some(token)) => Inject::User(token),
            (None, None) if mode == CredentialMode::None => Inject::Nothing,
            (None, None) => Inject::ClientKey,
        }
    }
}

/// Rewrites the request head for the upstream: path under the provider's base path, `Host`,
/// Sluice's own headers and client credentials removed, the pool key (or the user's token)
/// injected.
pub fn rewrite(
    upstream: &mut RequestHeader,
    route: &crate::config::Route,
    provider: &Provider,
    inject: Inject<'_>,
    principal: Option<&Principal>,
) -> pingora::Result<()> {
    let prefix = route.prefix.as_str();
    let uri = &upstream.uri;
    let rest = uri.path().strip_prefix(prefix).unwrap_or(uri.path());
    // An intercepted request already has the provider's own path.
    let base = if route.intercept {
        ""
    } else {
        provider.upstream.base_path.as_str()
    };
    let mut target = String::with_capacity(base.len() + rest.len() + 64);
    target.push_str(base);
    target.push_str(rest);
    if target.is_empty() {
        target.push('/');
    }
    if let Some(q) = uri.query() {
        push_query(
            &mut target,
            q,
            provider.kind,
            matches!(inject, Inject::ClientKey),
        );
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

    if let Inject::Pool(_) | Inject::User(_) | Inject::Nothing = inject {
        strip_client_credentials(upstream);
    }
    if let Inject::Pool(key) = inject {
        upstream.insert_header(provider.key_header(), key.header_value.clone())?;
    } else if let Inject::User(token) = inject {
        let mut value = http::HeaderValue::try_from(format!("Bearer {token}")).map_err(|e| {
            pingora::Error::because(pingora::ErrorType::InvalidHTTPHeader, "user token", e)
        })?;
        value.set_sensitive(true);
        upstream.insert_header(http::header::AUTHORIZATION, value)?;
    } else if let Inject::ClientKey = inject {
        // The client's own key goes upstream, whatever its shape (some providers' keys look
        // like JWTs); a Sluice credential never does: every value of every credential header
        // is looked at, and one that is an opaque Sluice token or the `X-Sluice-Token` value
        // takes its header out.
        let presented = upstream
            .headers
            .get(auth::SLUICE_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned());
        remove_ours(upstream);
        for name in &CREDENTIAL_HEADERS {
            let sluice = upstream.headers.get_all(name).iter().any(|v| {
                let value = v.to_str().map(str::trim).unwrap_or("");
                // Anywhere in the value: joined (`key, token`) or quoted, it is still ours.
                auth::token_format::holds_token(value)
                    || presented
                        .as_deref()
                        .is_some_and(|p| !p.is_empty() && value.contains(p))
            });
            if sluice {
                upstream.remove_header(name);
            }
        }
    }
    if let (Some(name), Some(principal)) = (&route.principal_header, principal) {
        upstream.insert_header(name.clone(), &*principal.key)?;
    }
    Ok(())
}

/// Removes every client credential, Sluice's own and the proxy headers (for upstreams that get
/// a credential of Sluice's choosing, or none).
pub fn strip_client_credentials(upstream: &mut RequestHeader) {
    remove_ours(upstream);
    for name in CREDENTIAL_HEADERS.iter().chain(&ACCOUNT_HEADERS) {
        remove(upstream, name);
    }
}

/// Removes a header the request usually does not carry: a lookup when it is absent, instead of
/// the two maps Pingora's `remove_header` updates.
fn remove(upstream: &mut RequestHeader, name: &HeaderName) {
    if upstream.headers.contains_key(name) {
        upstream.remove_header(name);
    }
}

/// Forwarding headers a client may have written: an upstream learns nothing about the client's
/// network from Sluice, and nothing a client claims about it.
static FORWARDING_HEADERS: [HeaderName; 5] = [
    http::header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-real-ip"),
];

/// Removes Sluice's own headers (`x-sluice-*`, `Proxy-Authorization`, `Proxy-Connection`) and
/// the forwarding headers.
fn remove_ours(upstream: &mut RequestHeader) {
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
    remove(upstream, &http::header::PROXY_AUTHORIZATION);
    remove(upstream, &PROXY_CONNECTION);
    for name in &FORWARDING_HEADERS {
        remove(upstream, name);
    }
}

/// Rewrites a passed-through forward-proxy request: origin-form target, `Host` from the
/// absolute URI, Sluice's headers removed; everything else (the client's own credentials
/// included) is the client's business with that host.
pub fn rewrite_passthrough(upstream: &mut RequestHeader) -> pingora::Result<()> {
    let Some((authority, target)) = absolute_target(upstream.raw_path()) else {
        return Err(pingora::Error::explain(
            pingora::ErrorType::InvalidHTTPHeader,
            "not an absolute-form http:// target",
        ));
    };
    let new_uri = http::Uri::try_from(target).map_err(|e| {
        pingora::Error::because(
            pingora::ErrorType::InvalidHTTPHeader,
            "bad request target",
            e,
        )
    })?;
    upstream.set_uri(new_uri);
    upstream.insert_header(http::header::HOST, authority)?;
    remove_ours(upstream);
    Ok(())
}

#[cfg(test)]
mod tests;
