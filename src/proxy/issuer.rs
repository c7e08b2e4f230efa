//! Sluice's built-in issuer on the proxy listener: its public keys at `/oauth2/jwks`, so that
//! third parties can verify the tokens it signs (data planes have them in the snapshot), and
//! the client-credentials token endpoint `/oauth2/token` (RFC 6749 §4.4), answered by the
//! control plane where the apps' secrets and the signing keys are.

use base64::Engine;
use pingora_proxy::Session;
use serde_json::{json, Value};

use super::respond::{write_page, Page};
use super::signin::json_page;
use crate::config::Snapshot;
use crate::vault::{Answer, Failure, Request, Vault};

pub const PREFIX: &str = "/oauth2/";
pub const JWKS_PATH: &str = "/oauth2/jwks";
pub const TOKEN_PATH: &str = "/oauth2/token";
pub const INTROSPECT_PATH: &str = "/oauth2/introspect";
pub const REVOKE_PATH: &str = "/oauth2/revoke";
pub const AUTHORIZE_PATH: &str = super::signin::AUTHORIZE_PATH;
/// RFC 8414 metadata, and the same document where OpenID clients look.
pub const METADATA_PATHS: [&str; 2] = [
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
];
/// Largest token request body taken.
const MAX_FORM: usize = 16 * 1024;

/// The authorization server metadata (RFC 8414) of Sluice's issuer.
pub async fn metadata(session: &mut Session, snap: &Snapshot, request_id: &str) -> u16 {
    let base = &snap.public_base_url;
    let mut algs: Vec<&str> = snap.builtin_jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["alg"].as_str())
        .collect();
    algs.sort_unstable();
    algs.dedup();
    let mut doc = json!({
        "issuer": base,
        "token_endpoint": format!("{base}{TOKEN_PATH}"),
        "jwks_uri": format!("{base}{JWKS_PATH}"),
        "introspection_endpoint": format!("{base}{INTROSPECT_PATH}"),
        "revocation_endpoint": format!("{base}{REVOKE_PATH}"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": [],
        "scopes_supported": [],
        "token_endpoint_auth_signing_alg_values_supported": [],
        "id_token_signing_alg_values_supported": algs,
        "subject_types_supported": ["public"],
    });
    // OAuth clients (the MCP SDK among them) require an `authorization_endpoint`: without
    // sign-in it answers every request with an error page.
    doc["authorization_endpoint"] = format!("{base}{AUTHORIZE_PATH}").into();
    if snap.sign_in.is_some() {
        // Sluice as the authorization server of its MCP servers: public clients registered
        // dynamically or by metadata document, the code grant with PKCE S256.
        let mut scopes: Vec<&str> = snap
            .mcp_servers
            .values()
            .flat_map(|s| s.access.scopes.iter().map(String::as_str))
            .chain(["offline_access"])
            .collect();
        scopes.sort_unstable();
        scopes.dedup();
        let public = ["client_secret_basic", "client_secret_post", "none"];
        doc["registration_endpoint"] = format!("{base}{}", super::signin::REGISTER_PATH).into();
        doc["response_types_supported"] = json!(["code"]);
        doc["response_modes_supported"] = json!(["query"]);
        doc["grant_types_supported"] =
            json!(["authorization_code", "refresh_token", "client_credentials"]);
        doc["code_challenge_methods_supported"] = json!(["S256"]);
        doc["token_endpoint_auth_methods_supported"] = json!(public);
        doc["revocation_endpoint_auth_methods_supported"] = json!(public);
        doc["client_id_metadata_document_supported"] = true.into();
        doc["authorization_response_iss_parameter_supported"] = true.into();
        doc["scopes_supported"] = json!(scopes);
    }
    write_page(session, json_page(200, &doc, Vec::new()), request_id).await
}

/// Answers a request under `/oauth2/`; returns the status written.
pub async fn serve(
    session: &mut Session,
    snap: &Snapshot,
    vault: &Vault,
    client: Option<std::net::IpAddr>,
    request_id: &str,
) -> u16 {
    if let Some(status) = super::signin::serve(session, snap, vault, client, request_id).await {
        return status;
    }
    let path = session.req_header().uri.path().to_owned();
    let post = session.req_header().method == http::Method::POST;
    let answer = match path.as_str() {
        TOKEN_PATH if post => Some(token(session, vault).await),
        INTROSPECT_PATH if post => Some(about_token(session, vault, false).await),
        REVOKE_PATH if post => Some(about_token(session, vault, true).await),
        _ => None,
    };
    if let Some(answer) = answer {
        let page = match answer {
            Ok(answer) => json_page(200, &answer, Vec::new()),
            Err(f) => oauth_error(&f),
        };
        return write_page(session, page, request_id).await;
    }
    let page = if path == JWKS_PATH && session.req_header().method == http::Method::GET {
        Page {
            status: 200,
            content_type: "application/jwk-set+json",
            body: snap.builtin_jwks.to_string(),
            headers: Vec::new(),
        }
    } else {
        Page {
            status: 404,
            content_type: "application/json",
            body: r#"{"error":"not_found"}"#.into(),
            headers: Vec::new(),
        }
    };
    write_page(session, page, request_id).await
}

/// An RFC 6749 §5.2 error answer (`invalid_client` with its challenge).
fn oauth_error(f: &Failure) -> Page {
    let (error, description, status) = match f {
        Failure::OAuth {
            error,
            description,
            status,
        } => (error.as_str(), description.clone(), *status),
        other => ("temporarily_unavailable", other.to_string(), 503),
    };
    let mut headers = Vec::new();
    if error == "invalid_client" {
        headers.push(("www-authenticate", r#"Basic realm="sluice""#.to_owned()));
    }
    json_page(
        status,
        &json!({"error": error, "error_description": description}),
        headers,
    )
}

fn invalid_request(description: &str) -> Failure {
    Failure::OAuth {
        error: "invalid_request".into(),
        description: description.into(),
        status: 400,
    }
}

/// A form request from an authenticated-to-be client: its id and secret
/// (`client_secret_basic` or `client_secret_post`, not both) and the other parameters.
struct ClientForm {
    client_id: String,
    client_secret: String,
    form: std::collections::BTreeMap<String, String>,
}

/// A token endpoint form: the client's `Basic` credentials if any, and the parameters (none
/// repeated).
async fn read_form(
    session: &mut Session,
) -> Result<
    (
        Option<(String, String)>,
        std::collections::BTreeMap<String, String>,
    ),
    Failure,
> {
    let basic = basic_credentials(session.req_header())?;
    let body = super::respond::read_body(session, MAX_FORM)
        .await
        .map_err(|e| match e {
            super::respond::BodyError::TooLarge => invalid_request("the request body is too large"),
            super::respond::BodyError::Unreadable => {
                invalid_request("the request body could not be read")
            }
        })?;
    let mut form = std::collections::BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(&body) {
        if form.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err(invalid_request("a parameter is repeated"));
        }
    }
    Ok((basic, form))
}

/// A public client (a signed-in person's MCP client): a `client_id` and no secret at all.
fn public_client(
    basic: &Option<(String, String)>,
    form: &std::collections::BTreeMap<String, String>,
) -> bool {
    basic.is_none() && form.contains_key("client_id") && !form.contains_key("client_secret")
}

/// The confidential client's credentials, taken out of the form.
fn client_form(
    basic: Option<(String, String)>,
    mut form: std::collections::BTreeMap<String, String>,
) -> Result<ClientForm, Failure> {
    let posted = (form.remove("client_id"), form.remove("client_secret"));
    let (client_id, client_secret) = match (basic, posted) {
        (Some(_), (_, Some(_))) => {
            return Err(invalid_request("authenticate the client one way only"))
        }
        (Some(pair), _) => pair,
        (None, (Some(id), Some(secret))) => (id, secret),
        (None, _) => {
            return Err(Failure::OAuth {
                error: "invalid_client".into(),
                description: "client authentication is missing".into(),
                status: 401,
            })
        }
    };
    Ok(ClientForm {
        client_id,
        client_secret,
        form,
    })
}

/// The token request: `client_credentials` for apps (RFC 6749 §4.4); `authorization_code` and
/// `refresh_token` for signed-in people's public clients.
async fn token(session: &mut Session, vault: &Vault) -> Result<Value, Failure> {
    let (basic, form) = read_form(session).await?;
    if public_client(&basic, &form) {
        return match vault.ask(Request::UserToken { form }).await? {
            Answer::UserTokens {
                access_token,
                expires_in,
                scope,
                refresh_token,
            } => Ok(json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": expires_in,
                "scope": scope,
                "refresh_token": refresh_token,
            })),
            _ => Err(Failure::unavailable("unexpected answer")),
        };
    }
    let ClientForm {
        client_id,
        client_secret,
        mut form,
    } = client_form(basic, form)?;
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(Failure::OAuth {
                error: "unsupported_grant_type".into(),
                description: "apps use client_credentials".into(),
                status: 400,
            })
        }
        None => return Err(invalid_request("grant_type is missing")),
    }
    let request = Request::AppToken {
        client_id,
        client_secret,
        scope: form.remove("scope"),
        resource: form.remove("resource"),
    };
    match vault.app_token(request).await? {
        Answer::Issued {
            access_token,
            expires_in,
            scope,
        } => Ok(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": scope,
        })),
        _ => Err(Failure::unavailable("unexpected answer")),
    }
}

/// Introspection (RFC 7662, apps only) and revocation (RFC 7009: an app's token, or a public
/// client's refresh or access token).
async fn about_token(session: &mut Session, vault: &Vault, revoke: bool) -> Result<Value, Failure> {
    let (basic, mut form) = read_form(session).await?;
    if revoke && public_client(&basic, &form) {
        let (Some(client_id), Some(token)) = (form.remove("client_id"), form.remove("token"))
        else {
            return Err(invalid_request("token is missing"));
        };
        vault
            .ask(Request::RevokeUserToken { client_id, token })
            .await?;
        return Ok(json!({}));
    }
    let ClientForm {
        client_id,
        client_secret,
        mut form,
    } = client_form(basic, form)?;
    let Some(token) = form.remove("token") else {
        return Err(invalid_request("token is missing"));
    };
    let request = if revoke {
        Request::Revoke {
            client_id,
            client_secret,
            token,
        }
    } else {
        Request::Introspect {
            client_id,
            client_secret,
            token,
        }
    };
    match vault.app_token(request).await? {
        Answer::Introspection { doc } => Ok(doc),
        Answer::Revoked => Ok(json!({})),
        _ => Err(Failure::unavailable("unexpected answer")),
    }
}

/// `Authorization: Basic` client credentials (RFC 6749 §2.3.1: each part form-encoded).
fn basic_credentials(
    req: &pingora::http::RequestHeader,
) -> Result<Option<(String, String)>, Failure> {
    let Some(value) = req.headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || Failure::OAuth {
        error: "invalid_client".into(),
        description: "malformed Basic credentials".into(),
        status: 401,
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let Some(encoded) = value
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("basic "))
        .map(|_| value[6..].trim())
    else {
        return Err(malformed());
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    match (decode(id), decode(secret)) {
        (Some(id), Some(secret)) if !id.is_empty() => Ok(Some((id, secret))),
        _ => Err(malformed()),
    }
}
