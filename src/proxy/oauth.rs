//! The proxy listener's own OAuth pages and endpoints (`/oauth/v1/…`), where users' browsers
//! and agents reach Sluice, and the vault step of providers with `credentials: oauth`.
//!
//! - `POST /oauth/v1/connect/{provider}` with the principal's credential → a single-use link.
//! - `GET  /oauth/v1/connect/{provider}?link=…` → a page naming the identity and the provider,
//!   with a button (no silent redirect: someone else's link shows someone else's name). The
//!   page sets a `SameSite=Strict` cookie bound to the link; the button's POST must carry it,
//!   so another site cannot submit the form for the user.
//! - `POST /oauth/v1/connect/{provider}` (form, from that page) → 303 to the upstream.
//! - `GET  /oauth/v1/callback` → the grant is stored; a page says so (or what went wrong).
//! - `GET  /oauth/v1/connections`, `DELETE /oauth/v1/connections/{provider}` with the
//!   principal's credential: its own grants.

use pingora::http::RequestHeader;
use pingora_proxy::Session;
use serde_json::json;
use std::sync::Arc;

use super::respond::{write_error, write_page as write, Page};
use crate::auth::{self, Access, AuthPolicy, CredentialKind, Principal};
use crate::clock::unix_now;
use crate::config::Snapshot;
use crate::error::{ErrorShape, GatewayError};
use crate::metrics::METRICS;
use crate::vault::{Answer, Failure, Request, Vault, Who};

pub const PREFIX: &str = "/oauth/v1/";
const COOKIE: &str = "sluice_consent";
/// Set when the consent page's button is pressed and checked at the callback: the grant
/// completes only in the browser that pressed it, so nobody can send their own authorization
/// URL to a victim and have the victim's upstream account bound to their principal. One
/// cookie per `state` (`{BROWSER_COOKIE}_{digest}`), so flows in several tabs do not clash;
/// `__Host-` over HTTPS, so no sibling host can plant one.
const BROWSER_COOKIE: &str = "sluice_oauth";

/// The names the browser cookie of `state` may have: `__Host-` (HTTPS) or plain.
pub(super) fn browser_cookie_names(state: &str) -> [String; 2] {
    let tag = hex::encode(&digest(&format!("sluice browser\0{state}"))[..8]);
    [
        format!("__Host-{BROWSER_COOKIE}_{tag}"),
        format!("{BROWSER_COOKIE}_{tag}"),
    ]
}
/// Largest form accepted from the consent page.
const MAX_FORM: usize = 4096;

/// Answers a request under `/oauth/v1/`; returns the status written.
pub async fn serve(session: &mut Session, snap: &Snapshot, vault: &Vault, request_id: &str) -> u16 {
    let req = session.req_header();
    let method = req.method.clone();
    let path = req.uri.path().to_owned();
    let query = req.uri.query().unwrap_or("").to_owned();
    let rest = &path[PREFIX.len()..];
    let answer = match (method.as_str(), rest.split_once('/')) {
        ("GET", Some(("connect", provider))) => {
            let link = param(&query, "link").unwrap_or_default();
            let secure = snap.public_base_url.starts_with("https://");
            let signed_in = super::signin::session_cookie(session, secure);
            consent_page(vault, provider, &link, signed_in).await
        }
        ("POST", Some(("connect", provider))) if is_form(req) => {
            let secure = snap.public_base_url.starts_with("https://");
            confirm(session, vault, provider, secure).await
        }
        ("POST", Some(("connect", provider))) => match principal(session, snap).await {
            Ok((who, credential)) => json_answer(
                vault
                    .ask(Request::Link {
                        who,
                        provider: provider.to_owned(),
                        credential: Some(credential),
                    })
                    .await,
                201,
            ),
            Err(e) => return refuse(session, e, request_id).await,
        },
        ("GET", None) if rest == "callback" => {
            let get = |k| param(&query, k);
            let state = get("state").unwrap_or_default();
            let [host_only, plain] = browser_cookie_names(&state);
            // Over HTTPS only the `__Host-` cookie counts: a sibling host can set the other.
            let secure = snap.public_base_url.starts_with("https://");
            let browser = match secure {
                true => cookie(req, &host_only),
                false => cookie(req, &plain),
            };
            callback_page(
                vault
                    .ask(Request::Callback {
                        state: get("state").unwrap_or_default(),
                        code: get("code"),
                        error: get("error"),
                        error_description: get("error_description"),
                        browser,
                    })
                    .await,
            )
        }
        ("GET", None) if rest == "connections" => match principal(session, snap).await {
            Ok((who, credential)) => json_answer(
                vault
                    .ask(Request::Connections {
                        principal: Some(who.key),
                        credential: Some(credential),
                    })
                    .await,
                200,
            ),
            Err(e) => return refuse(session, e, request_id).await,
        },
        ("DELETE", Some(("connections", provider))) => match principal(session, snap).await {
            Ok((who, credential)) => {
                let reply = vault
                    .ask(Request::Disconnect {
                        principal: who.key.clone(),
                        provider: provider.to_owned(),
                        credential: Some(credential),
                    })
                    .await;
                vault.forget(&who.key, provider);
                json_answer(reply, 200)
            }
            Err(e) => return refuse(session, e, request_id).await,
        },
        _ => json_answer(Err(Failure::NotFound), 200),
    };
    write(session, answer, request_id).await
}

/// The principal behind the request's Sluice credential (any kind, any issuer but Sluice's
/// own, whose tokens are for their agent environment only), and the credential itself.
async fn principal(session: &Session, snap: &Snapshot) -> Result<(Who, String), GatewayError> {
    let access = Access {
        auth: AuthPolicy::Any,
        ..Access::default()
    };
    let headers = &session.req_header().headers;
    let authed = auth::authenticate((headers, None), &access, snap, unix_now()).await?;
    // A token that may not act as its owner upstream may not connect or see their accounts.
    if !authed.principal.grants {
        return Err(GatewayError::Forbidden(
            crate::error::Forbidden::GrantsWithheld,
        ));
    }
    let who = Who::of(&authed.principal).ok_or(GatewayError::MissingCredential)?;
    let (token, _) = auth::presented(headers, AuthPolicy::Any)?;
    Ok((who, token.unwrap_or_default().to_owned()))
}

async fn refuse(session: &mut Session, error: GatewayError, request_id: &str) -> u16 {
    METRICS.rejected.with_label_values(&[error.reason()]).inc();
    write_error(
        session,
        error,
        ErrorShape::OpenAi,
        error.status(),
        request_id,
    )
    .await;
    error.status()
}

async fn consent_page(
    vault: &Vault,
    provider: &str,
    link: &str,
    signed_in: Option<String>,
) -> Page {
    let reply = vault
        .ask(Request::ViewLink {
            provider: provider.to_owned(),
            link: link.to_owned(),
            session: signed_in,
        })
        .await;
    // A person who signs in at Sluice signs in first (then comes back here).
    if let Err(Failure::SignInFirst { sign_in_url, .. }) = &reply {
        return Page {
            status: 303,
            content_type: "text/plain; charset=utf-8",
            body: String::new(),
            headers: vec![("location", sign_in_url.clone())],
        };
    }
    let (who, display_name, scopes) = match reply {
        Ok(Answer::Consent {
            who,
            display_name,
            scopes,
            ..
        }) => (who, display_name, scopes),
        Ok(_) => return error_page(&Failure::BadLink),
        Err(f) => return error_page(&f),
    };
    let scopes = if scopes.is_empty() {
        String::new()
    } else {
        format!(
            "<p>Access asked for: <code>{}</code></p>",
            escape(&scopes.join(" "))
        )
    };
    let Ok(nonce) = random_hex() else {
        return error_page(&Failure::unavailable("randomness"));
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Connect {name}</title></head>\
         <body><h1>Connect {name}</h1>\
         <p>Sluice will hold your {name} authorization for <strong id=\"identity\">{who}</strong> \
         and use it for that identity's requests.</p>{scopes}\
         <p>If this is not you, close this page: someone sent you their link.</p>\
         <form method=\"post\" action=\"{PREFIX}connect/{provider}\">\
         <input type=\"hidden\" name=\"link\" value=\"{link}\">\
         <input type=\"hidden\" name=\"consent\" value=\"{nonce}\">\
         <button type=\"submit\" id=\"continue\">Continue to {name}</button></form></body></html>",
        name = escape(&display_name),
        who = escape(&who),
        provider = escape(provider),
        link = escape(link),
    );
    Page {
        status: 200,
        content_type: "text/html; charset=utf-8",
        body,
        headers: vec![
            (
                "set-cookie",
                format!(
                    "{COOKIE}={nonce}; Path={PREFIX}connect; HttpOnly; SameSite=Strict; Max-Age=600"
                ),
            ),
            // Nobody frames this page to have the button pressed through it.
            ("x-frame-options", "DENY".to_owned()),
            (
                "content-security-policy",
                "frame-ancestors 'none'".to_owned(),
            ),
        ],
    }
}

/// The consent page's button: the link is used up and the browser sent upstream, holding a
/// new random cookie that its callback must bring back.
async fn confirm(session: &mut Session, vault: &Vault, provider: &str, secure: bool) -> Page {
    let form = match read_form(session).await {
        Some(form) => form,
        None => return error_page(&Failure::BadLink),
    };
    let link = param(&form, "link").unwrap_or_default();
    // The page's random value, in the form and in a `SameSite=Strict` cookie: only a page
    // this browser opened can press the button.
    let sent = param(&form, "consent").unwrap_or_default();
    let cookie_ok = cookie(session.req_header(), COOKIE).is_some_and(|c| {
        !sent.is_empty() && crate::secrets::digest_eq(&digest(&c), &digest(&sent))
    });
    if !cookie_ok {
        return Page {
            status: 403,
            ..error_page(&Failure::BadLink)
        };
    }
    let Ok(browser) = random_hex() else {
        return error_page(&Failure::unavailable("randomness"));
    };
    match vault
        .ask(Request::Begin {
            provider: provider.to_owned(),
            link,
            browser: hex::encode(digest(&browser)),
            session: super::signin::session_cookie(session, secure),
        })
        .await
    {
        // `SameSite=Lax`: the upstream's redirect back is a cross-site top-level navigation.
        Ok(Answer::Redirect { url }) => {
            let state = url::Url::parse(&url)
                .ok()
                .and_then(|u| {
                    u.query_pairs()
                        .find(|(k, _)| k == "state")
                        .map(|(_, v)| v.into_owned())
                })
                .unwrap_or_default();
            let [host_only, plain] = browser_cookie_names(&state);
            let bound = if secure {
                format!(
                    "{host_only}={browser}; Path=/; HttpOnly; SameSite=Lax; Max-Age=600; Secure"
                )
            } else {
                format!(
                    "{plain}={browser}; Path={PREFIX}callback; HttpOnly; SameSite=Lax; Max-Age=600"
                )
            };
            Page {
                status: 303,
                content_type: "text/plain; charset=utf-8",
                body: String::new(),
                headers: vec![
                    ("location", url),
                    (
                        "set-cookie",
                        format!(
                            "{COOKIE}=; Path={PREFIX}connect; HttpOnly; SameSite=Strict; Max-Age=0"
                        ),
                    ),
                    ("set-cookie", bound),
                ],
            }
        }
        Ok(_) => error_page(&Failure::BadLink),
        Err(f) => error_page(&f),
    }
}

fn callback_page(reply: Result<Answer, Failure>) -> Page {
    match reply {
        Ok(Answer::Connected {
            display_name, who, ..
        }) => Page {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>Connected</title></head>\
                 <body><h1 id=\"connected\">{name} is connected</h1>\
                 <p>Requests of {who} through Sluice now use this authorization. You can close this page.</p></body></html>",
                name = escape(&display_name),
                who = escape(&who),
            ),
            headers: Vec::new(),
        },
        Ok(_) => error_page(&Failure::BadState),
        Err(f) => error_page(&f),
    }
}

fn error_page(f: &Failure) -> Page {
    Page {
        status: f.status(),
        content_type: "text/html; charset=utf-8",
        body: format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Not connected</title></head>\
             <body><h1>Not connected</h1><p id=\"error\" data-reason=\"{reason}\">{text}</p>\
             <p>Nothing was stored.</p></body></html>",
            reason = f.reason(),
            text = escape(&f.to_string()),
        ),
        headers: Vec::new(),
    }
}

fn json_answer(reply: Result<Answer, Failure>, ok_status: u16) -> Page {
    let (status, body) = match reply {
        Ok(Answer::Link { url, expires_at }) => (
            ok_status,
            json!({"connect_url": url, "expires_at": crate::clock::rfc3339(expires_at)}),
        ),
        Ok(Answer::Connections { connections }) => (ok_status, json!({"data": connections})),
        Ok(Answer::Disconnected { revoked }) => {
            (ok_status, json!({"disconnected": true, "revoked": revoked}))
        }
        Ok(_) => (
            500,
            json!({"error": {"message": "unexpected answer", "code": "internal"}}),
        ),
        Err(f) => (f.status(), failure_json(&f, ErrorShape::OpenAi)),
    };
    Page {
        status,
        content_type: "application/json",
        body: body.to_string(),
        headers: Vec::new(),
    }
}

/// A vault failure in the route's provider error shape, with the link to connect when there is one.
pub fn failure_json(f: &Failure, shape: ErrorShape) -> serde_json::Value {
    let message = f.to_string();
    match shape {
        ErrorShape::OpenAi => json!({"error": {
            "message": message,
            "type": if f.status() < 500 { "invalid_request_error" } else { "server_error" },
            "param": null,
            "code": f.reason(),
            "connect_url": f.connect_url(),
        }}),
        ErrorShape::Anthropic => json!({"type": "error", "error": {
            "type": match f.status() {
                401 => "authentication_error",
                403 => "permission_error",
                400 | 404 => "invalid_request_error",
                _ => "api_error",
            },
            "message": message,
            "connect_url": f.connect_url(),
        }}),
        ErrorShape::Gemini => json!({"error": {
            "code": f.status(),
            "message": message,
            "status": if f.status() < 500 { "FAILED_PRECONDITION" } else { "UNAVAILABLE" },
            "connect_url": f.connect_url(),
        }}),
    }
}

/// Refuses a proxied request the vault could not give a token for.
pub async fn write_failure(
    session: &mut Session,
    f: &Failure,
    shape: ErrorShape,
    request_id: &str,
) {
    METRICS.rejected.with_label_values(&[f.reason()]).inc();
    let mut headers = Vec::new();
    if f.status() == 401 {
        headers.push((
            "www-authenticate",
            r#"Bearer realm="sluice", error="invalid_token", error_description="connect your account first""#.to_owned(),
        ));
    }
    let page = Page {
        status: f.status(),
        content_type: "application/json",
        body: failure_json(f, shape).to_string(),
        headers,
    };
    write(session, page, request_id).await;
}

/// The token to inject for a `credentials: oauth` provider: the principal's grant, or its JWT
/// exchanged (`credential` is the one the request presented, which also proves the principal
/// to a remote vault).
pub async fn user_token(
    vault: &Vault,
    snap: &Snapshot,
    principal: &Principal,
    oauth_provider: &str,
    credential: Option<&str>,
) -> Result<Arc<str>, Failure> {
    if !principal.grants {
        return Err(Failure::GrantsWithheld);
    }
    let who = Who::of(principal).ok_or_else(|| Failure::NotConnected {
        provider: oauth_provider.to_owned(),
        connect_url: String::new(),
    })?;
    match snap.oauth_providers.get(oauth_provider) {
        None => {
            return Err(Failure::UnknownProvider {
                provider: oauth_provider.to_owned(),
            })
        }
        Some(p) if !p.enabled => {
            return Err(Failure::Disabled {
                provider: oauth_provider.to_owned(),
            })
        }
        Some(_) => {}
    }
    // A JWT to exchange is the caller's own from its issuer: never the token Sluice gave a
    // signed-in person's client (which names another issuer's person).
    let signed_in_here = principal.audience_bound && principal.app().is_none();
    let subject = credential.filter(|_| principal.kind == CredentialKind::Jwt && !signed_in_here);
    vault
        .token(
            (&who, credential),
            oauth_provider,
            subject,
            snap.revision,
            unix_now(),
        )
        .await
}

pub(super) fn is_form(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

pub(super) async fn read_form(session: &mut Session) -> Option<String> {
    let form = super::respond::read_body(session, MAX_FORM).await.ok()?;
    String::from_utf8(form).ok()
}

/// One decoded `application/x-www-form-urlencoded` parameter.
pub(super) fn param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(super) fn cookie(req: &RequestHeader, name: &str) -> Option<String> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// 128 random bits, hex: a cookie value nobody else can compute.
pub(super) fn random_hex() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

pub(super) fn digest(text: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes()).into()
}

pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_cookies_and_escaping() {
        assert_eq!(param("a=1&link=x%2By+z", "link").as_deref(), Some("x+y z"));
        assert_eq!(param("a=1", "link"), None);
        assert_eq!(
            escape("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
        let mut req = RequestHeader::build("POST", b"/", None).unwrap();
        req.insert_header("cookie", "a=b; sluice_consent=abc")
            .unwrap();
        assert_eq!(cookie(&req, COOKIE).as_deref(), Some("abc"));
        // Random, not derived from anything an attacker sees.
        let (a, b) = (random_hex().unwrap(), random_hex().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }
}
