//! The proxy listener's side of Sluice as the authorization server of its MCP servers (the
//! vault's `signin` does the deciding, in the control plane):
//!
//! - `POST /oauth2/register` (RFC 7591, JSON) → the registered client.
//! - `GET  /oauth2/authorize?…` → to the company IdP to sign in (a cookie binds its `state` to
//!   this browser), or, signed in already, to the consent page; problems are shown, or sent
//!   back to the client once its redirect URI is known to be its own.
//! - `GET  /oauth2/callback` (the IdP's redirect) → the Sluice session cookie (HttpOnly,
//!   `SameSite=Lax`, `__Host-` and `Secure` over HTTPS), then the consent page.
//! - `GET  /oauth2/consent?ticket=…` → a page naming the client, where it sends the browser
//!   back, the MCP server and the person, with Allow and Deny; its form carries a value bound to
//!   the browser's session and the request (no other site can press the button).
//! - `POST /oauth2/consent` → 303 to the client's redirect URI with a code (or the refusal).

use pingora_proxy::Session;
use serde_json::json;

use super::oauth::{
    browser_cookie_names, cookie, digest, escape, is_form, param, random_hex, read_form,
};
use super::respond::{write_page as write, BodyError, Page};
use crate::config::Snapshot;
use crate::vault::{Answer, Failure, Request, Vault};

pub const REGISTER_PATH: &str = "/oauth2/register";
pub const AUTHORIZE_PATH: &str = "/oauth2/authorize";
pub const CALLBACK_PATH: &str = "/oauth2/callback";
pub const CONSENT_PATH: &str = "/oauth2/consent";
/// Sign-in on its own, back to a connect link (`?next=`).
pub const SIGNIN_PATH: &str = "/oauth2/signin";
/// The Sluice browser session (plain name over HTTP, `__Host-` over HTTPS).
const SESSION_COOKIE: &str = "sluice_session";
/// Largest registration document taken.
const MAX_REGISTRATION: usize = 16 * 1024;

/// Answers `path` when it is one of these endpoints.
pub async fn serve(
    session: &mut Session,
    snap: &Snapshot,
    vault: &Vault,
    client: Option<std::net::IpAddr>,
    request_id: &str,
) -> Option<u16> {
    let req = session.req_header();
    let (method, path) = (req.method.as_str().to_owned(), req.uri.path().to_owned());
    let query = req.uri.query().unwrap_or("").to_owned();
    let secure = snap.public_base_url.starts_with("https://");
    let page = match (method.as_str(), path.as_str()) {
        ("POST", REGISTER_PATH) => register(session, vault, client).await,
        ("GET", AUTHORIZE_PATH) => authorize(session, vault, (query, client), secure).await,
        ("GET", SIGNIN_PATH) => {
            let next = param(&query, "next").unwrap_or_default();
            let signed_in = session_cookie(session, secure);
            let tab = param(&query, "state");
            sign_in(vault, (next, tab), signed_in, secure).await
        }
        ("GET", CALLBACK_PATH) => callback(session, vault, &query, secure).await,
        ("GET", CONSENT_PATH) => consent_page(session, vault, &query, secure).await,
        ("POST", CONSENT_PATH) if is_form(session.req_header()) => {
            decide(session, vault, secure).await
        }
        (_, REGISTER_PATH | AUTHORIZE_PATH | CALLBACK_PATH | CONSENT_PATH | SIGNIN_PATH) => {
            json_error(405, "invalid_request", "method not allowed here")
        }
        _ => return None,
    };
    Some(write(session, page, request_id).await)
}

async fn register(session: &mut Session, vault: &Vault, client: Option<std::net::IpAddr>) -> Page {
    let body = match super::respond::read_body(session, MAX_REGISTRATION).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return json_error(
                413,
                "invalid_client_metadata",
                "the registration is too large",
            )
        }
        Err(BodyError::Unreadable) => {
            return json_error(400, "invalid_request", "the body could not be read")
        }
    };
    let Ok(metadata) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return json_error(
            400,
            "invalid_client_metadata",
            "the body must be a JSON object",
        );
    };
    let from = address_key(client);
    match vault.ask(Request::Register { metadata, from }).await {
        Ok(Answer::Registered { client }) => json_page(201, &client, Vec::new()),
        Ok(_) => json_error(500, "server_error", "unexpected answer"),
        Err(f) => failure_json(&f),
    }
}

async fn authorize(
    session: &mut Session,
    vault: &Vault,
    (query, client): (String, Option<std::net::IpAddr>),
    secure: bool,
) -> Page {
    let Ok(browser) = random_hex() else {
        return error_page(&Failure::unavailable("randomness"));
    };
    let request = Request::Authorize {
        query,
        session: session_cookie(session, secure),
        browser: hex::encode(digest(&browser)),
        from: address_key(client),
    };
    match vault.ask(request).await {
        Ok(Answer::Redirect { url }) => redirect(url, Vec::new()),
        Ok(Answer::SignIn { url, state }) => to_idp(url, &state, &browser, secure),
        Ok(_) => error_page(&Failure::BadState),
        Err(f) => error_page(&f),
    }
}

/// Sign-in by itself: from a connect link of a person who signs in here, or for the console.
async fn sign_in(
    vault: &Vault,
    (next, console_state): (String, Option<String>),
    signed_in: Option<String>,
    secure: bool,
) -> Page {
    let Ok(browser) = random_hex() else {
        return error_page(&Failure::unavailable("randomness"));
    };
    let request = Request::SignIn {
        next,
        browser: hex::encode(digest(&browser)),
        session: signed_in,
        console_state,
    };
    match vault.ask(request).await {
        Ok(Answer::SignIn { url, state }) => to_idp(url, &state, &browser, secure),
        // Signed in already (the console): straight on.
        Ok(Answer::Redirect { url }) => redirect(url, Vec::new()),
        Ok(_) => error_page(&Failure::BadState),
        Err(f) => error_page(&f),
    }
}

/// To the IdP, holding a cookie its `state` is bound to. `SameSite=Lax`: the IdP's redirect
/// back is a cross-site top-level navigation.
fn to_idp(url: String, state: &str, browser: &str, secure: bool) -> Page {
    let [host_only, plain] = browser_cookie_names(state);
    let bound = if secure {
        format!("{host_only}={browser}; Path=/; HttpOnly; SameSite=Lax; Max-Age=600; Secure")
    } else {
        format!("{plain}={browser}; Path={CALLBACK_PATH}; HttpOnly; SameSite=Lax; Max-Age=600")
    };
    redirect(url, vec![("set-cookie", bound)])
}

async fn callback(session: &mut Session, vault: &Vault, query: &str, secure: bool) -> Page {
    let state = param(query, "state").unwrap_or_default();
    let [host_only, plain] = browser_cookie_names(&state);
    // Over HTTPS only the `__Host-` cookie counts: a sibling host can set the other.
    let browser = cookie(
        session.req_header(),
        if secure { &host_only } else { &plain },
    );
    let request = Request::SignedIn {
        state,
        code: param(query, "code"),
        error: param(query, "error"),
        browser,
    };
    match vault.ask(request).await {
        Ok(Answer::Session {
            secret,
            max_age,
            next,
        }) => {
            let name = session_cookie_name(secure);
            let flags = if secure { "; Secure" } else { "" };
            let cookie = format!(
                "{name}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{flags}"
            );
            redirect(next, vec![("set-cookie", cookie)])
        }
        Ok(_) => error_page(&Failure::BadState),
        Err(f) => error_page(&f),
    }
}

async fn consent_page(session: &mut Session, vault: &Vault, query: &str, secure: bool) -> Page {
    let ticket = param(query, "ticket").unwrap_or_default();
    let request = Request::ViewAuthorization {
        ticket: ticket.clone(),
        session: session_cookie(session, secure),
    };
    let answer = match vault.ask(request).await {
        Ok(answer @ Answer::Authorization { .. }) => answer,
        Ok(_) => return error_page(&Failure::BadState),
        Err(f) => return error_page(&f),
    };
    let body = consent_html(&answer, &ticket);
    Page {
        status: 200,
        content_type: "text/html; charset=utf-8",
        body,
        headers: vec![
            ("cache-control", "no-store".to_owned()),
            // Nobody frames this page to have the button pressed through it.
            ("x-frame-options", "DENY".to_owned()),
            (
                "content-security-policy",
                "frame-ancestors 'none'".to_owned(),
            ),
        ],
    }
}

/// The consent page: the client, where it sends the browser back (scheme, host and port),
/// the MCP server and the person, with Allow and Deny.
fn consent_html(answer: &Answer, ticket: &str) -> String {
    let Answer::Authorization {
        client_name,
        client_id,
        redirect_uri,
        resource,
        resource_name,
        who,
        scope,
        nonce,
    } = answer
    else {
        return String::new();
    };
    let back_to = url::Url::parse(redirect_uri)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    let scope = if scope.is_empty() {
        String::new()
    } else {
        format!("<p>Scopes: <code id=\"scope\">{}</code></p>", escape(scope))
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Allow {client}?</title></head>\
         <body><h1>Allow <bdi id=\"client\">{client}</bdi> to use {server}?</h1>\
         <p>Signed in as <strong id=\"identity\">{who}</strong>.</p>\
         <p><bdi id=\"client-name\">{client}</bdi> (client <bdi><code>{client_id}</code></bdi>) will call the MCP server \
         <strong id=\"server\">{server}</strong> (<code>{resource}</code>) as you, and is sent back to \
         <strong id=\"redirect\">{back_to}</strong>.</p>{scope}\
         <p>Allow it only if you just asked for this in that application.</p>\
         <form method=\"post\" action=\"{CONSENT_PATH}\">\
         <input type=\"hidden\" name=\"ticket\" value=\"{ticket}\">\
         <input type=\"hidden\" name=\"consent\" value=\"{nonce}\">\
         <button type=\"submit\" name=\"decision\" value=\"allow\" id=\"allow\">Allow</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Deny</button></form></body></html>",
        client = escape(client_name),
        client_id = escape(client_id),
        server = escape(resource_name),
        resource = escape(resource),
        who = escape(who),
        back_to = escape(&back_to),
        ticket = escape(ticket),
        nonce = escape(nonce),
    )
}

async fn decide(session: &mut Session, vault: &Vault, secure: bool) -> Page {
    let Some(form) = read_form(session).await else {
        return error_page(&Failure::BadState);
    };
    // The page's anti-forgery value is bound to this browser's session and the ticket: the
    // control plane checks it (no cookie another site could plant stands in for it).
    let request = Request::Approve {
        ticket: param(&form, "ticket").unwrap_or_default(),
        session: session_cookie(session, secure),
        nonce: param(&form, "consent").unwrap_or_default(),
        allow: param(&form, "decision").as_deref() == Some("allow"),
    };
    match vault.ask(request).await {
        Ok(Answer::Redirect { url }) => redirect(url, Vec::new()),
        Ok(_) => error_page(&Failure::BadState),
        Err(f) => error_page(&f),
    }
}

/// The client address as limits count it (IPv6 by /64).
fn address_key(client: Option<std::net::IpAddr>) -> String {
    client
        .map(crate::client_address::source_key)
        .map(|ip| ip.to_string())
        .unwrap_or_default()
}

fn session_cookie_name(secure: bool) -> String {
    if secure {
        format!("__Host-{SESSION_COOKIE}")
    } else {
        SESSION_COOKIE.to_owned()
    }
}

/// The browser's Sluice session: over HTTPS only the `__Host-` cookie counts.
pub(super) fn session_cookie(session: &Session, secure: bool) -> Option<String> {
    cookie(session.req_header(), &session_cookie_name(secure))
}

fn redirect(location: String, mut headers: Vec<(&'static str, String)>) -> Page {
    headers.push(("location", location));
    headers.push(("cache-control", "no-store".to_owned()));
    Page {
        status: 303,
        content_type: "text/plain; charset=utf-8",
        body: String::new(),
        headers,
    }
}

fn error_page(f: &Failure) -> Page {
    let (code, text) = match f {
        Failure::OAuth {
            error, description, ..
        } => (error.clone(), format!("{error}: {description}")),
        other => (other.reason().to_owned(), other.to_string()),
    };
    Page {
        status: f.status(),
        content_type: "text/html; charset=utf-8",
        body: format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Not authorized</title></head>\
             <body><h1>Not authorized</h1><p id=\"error\" data-reason=\"{code}\">{text}</p></body></html>",
            code = escape(&code),
            text = escape(&text),
        ),
        headers: vec![("cache-control", "no-store".to_owned())],
    }
}

pub(super) fn json_page(
    status: u16,
    body: &serde_json::Value,
    headers: Vec<(&'static str, String)>,
) -> Page {
    Page {
        status,
        content_type: "application/json",
        body: body.to_string(),
        headers,
    }
}

fn json_error(status: u16, error: &str, description: &str) -> Page {
    json_page(
        status,
        &json!({"error": error, "error_description": description}),
        Vec::new(),
    )
}

fn failure_json(f: &Failure) -> Page {
    match f {
        Failure::OAuth {
            error,
            description,
            status,
        } => json_error(*status, error, description),
        other => json_error(
            other.status(),
            "temporarily_unavailable",
            &other.to_string(),
        ),
    }
}
