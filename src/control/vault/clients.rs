//! The clients of Sluice's authorization endpoint (MCP clients such as Claude Code, Cursor, the
//! MCP SDKs): registered dynamically (RFC 7591) or named by a Client ID Metadata Document (an
//! `https` client id that is the URL of the client's metadata, fetched under the forward
//! proxy's address rules). Public clients only (`token_endpoint_auth_method: none`, PKCE).
//!
//! Clients are kept in their own table (no secret in them: public clients): registered ones
//! that never got a token expire a day after registration, the others 30 days after their last
//! token (metadata documents' clients are recorded at their first token). Registration is
//! limited per client address and in all. Operators list and revoke them (`/v1/oauth-clients`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;

use super::VaultWorker;
use crate::clock::unix_now;
use crate::vault::{Answer, Failure, Reply};

/// A registered client that never got a token is forgotten after this.
const UNUSED_SECONDS: u64 = 24 * 3600;
/// A client that got tokens is forgotten this long after its last one.
pub(super) const USED_SECONDS: u64 = 30 * 24 * 3600;
const MAX_REDIRECT_URIS: usize = 10;
const MAX_URI: usize = 2048;
const MAX_NAME: usize = 100;
/// Largest client metadata document read.
const MAX_DOCUMENT: usize = 16 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A client as Sluice knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ClientDoc {
    pub(super) client_id: String,
    pub(super) client_name: String,
    pub(super) redirect_uris: Vec<String>,
    /// Named by a metadata document (its id is the document's URL), not registered.
    #[serde(default)]
    pub(super) document: bool,
}

fn invalid(error: &str, description: impl Into<String>) -> Failure {
    Failure::OAuth {
        error: error.into(),
        description: description.into(),
        status: 400,
    }
}

impl VaultWorker {
    /// RFC 7591 §3: the metadata checked, a client id made, the client stored.
    pub(super) async fn register(&self, metadata: &Value, from: &str) -> Reply {
        let now = unix_now();
        if !self.registrations.admit(from, now) {
            return Err(Failure::OAuth {
                error: "slow_down".into(),
                description: "too many registrations: wait a minute".into(),
                status: 429,
            });
        }
        let doc = client_metadata(metadata, None)?;
        let client_id = format!("mcp-{}", super::random_token()?);
        let doc = ClientDoc { client_id, ..doc };
        let body = serde_json::to_string(&doc).map_err(super::sealed::unavailable)?;
        self.store
            .put_client(&doc.client_id, &body, now + UNUSED_SECONDS)
            .await
            .map_err(super::sealed::unavailable)?;
        self.audit_record(&json!({"ts": now, "event": "oauth2.register", "client_id": doc.client_id, "client_name": doc.client_name}));
        Ok(Answer::Registered {
            client: json!({
                "client_id": doc.client_id,
                "client_id_issued_at": now,
                "client_name": doc.client_name,
                "redirect_uris": doc.redirect_uris,
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            }),
        })
    }

    /// The client with this id: registered here, or described by the document at its URL;
    /// never one an operator revoked.
    pub(super) async fn client(&self, client_id: &str) -> Result<ClientDoc, Failure> {
        let unknown = || invalid("invalid_client", "unknown client: register first");
        self.not_revoked(client_id)?;
        if client_id.starts_with("https://") {
            if let Some(doc) = self.documents.get(client_id) {
                return Ok((*doc).clone());
            }
            let doc = self.client_document(client_id).await?;
            self.documents
                .insert(client_id.to_owned(), std::sync::Arc::new(doc.clone()));
            return Ok(doc);
        }
        if client_id.is_empty() || client_id.len() > 128 {
            return Err(unknown());
        }
        let row = self
            .store
            .client(client_id)
            .await
            .map_err(super::sealed::unavailable)?;
        row.and_then(|r| serde_json::from_str::<ClientDoc>(&r.body).ok())
            .filter(|doc| doc.client_id == client_id)
            .ok_or_else(unknown)
    }

    /// The client of a grant, at the token endpoint: still registered and not revoked (a
    /// metadata document is not fetched again: its id is its identity).
    pub(super) async fn grant_client(&self, client_id: &str) -> Result<ClientDoc, Failure> {
        if !client_id.starts_with("https://") {
            return self.client(client_id).await;
        }
        self.not_revoked(client_id)?;
        Ok(ClientDoc {
            client_id: client_id.to_owned(),
            client_name: client_id.to_owned(),
            redirect_uris: Vec::new(),
            document: true,
        })
    }

    /// Refuses a client id an operator revoked (`DELETE /v1/oauth-clients/{id}`).
    fn not_revoked(&self, client_id: &str) -> Result<(), Failure> {
        let revoked = self.config.snapshot().revoked_clients.contains(client_id);
        match revoked {
            true => Err(invalid("invalid_client", "this client was revoked")),
            false => Ok(()),
        }
    }

    /// A client that got a token lives another [`USED_SECONDS`] (a metadata document's is
    /// recorded then, so operators see and can revoke it).
    pub(super) async fn client_used(&self, doc: &ClientDoc) {
        let Ok(body) = serde_json::to_string(doc) else {
            return;
        };
        let until = unix_now() + USED_SECONDS;
        if let Err(e) = self.store.client_used(&doc.client_id, &body, until).await {
            log::warn!("oauth2: a client's use was not recorded: {e}");
        }
    }

    /// Draft "OAuth Client ID Metadata Document": the client id is an `https` URL whose JSON
    /// names that same id, its redirect URIs and name. Fetched with no redirects, bounded in
    /// size and time, only from addresses the forward proxy may reach (no private address
    /// unless allowed), the address checked being the one dialled.
    async fn client_document(&self, url: &str) -> Result<ClientDoc, Failure> {
        // Details go to the log: the answer does not tell an outsider what resolves, what
        // answered or how (these fetches reach addresses only the forward proxy may).
        let refuse = |why: String| {
            log::info!("oauth2: client metadata document {url}: {why}");
            invalid(
                "invalid_client",
                "the client metadata document could not be used (a public https URL serving this client's metadata)",
            )
        };
        let parsed = url::Url::parse(url).map_err(|e| refuse(e.to_string()))?;
        if parsed.scheme() != "https"
            || parsed.fragment().is_some()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
            || parsed.path() == "/"
            || url.len() > MAX_URI
        {
            return Err(refuse(
                "the client id must be an https URL with a path, no fragment and no user".into(),
            ));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| refuse("no host".into()))?
            .to_owned();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addrs: Vec<std::net::SocketAddr> = match host.trim_matches(['[', ']']).parse::<IpAddr>()
        {
            Ok(ip) => vec![(ip, port).into()],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| refuse(format!("`{host}` does not resolve: {e}")))?
                .collect(),
        };
        let snap = self.config.snapshot();
        if addrs.is_empty() || addrs.iter().any(|a| !snap.forward.address_allowed(a.ip())) {
            return Err(refuse(format!(
                "`{host}` resolves to an address Sluice does not fetch from (private or internal)"
            )));
        }
        drop(snap);
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            // Dialled where it was checked: never through a proxy from the environment.
            .no_proxy()
            .resolve_to_addrs(&host, &addrs)
            .build()
            .map_err(|e| refuse(e.to_string()))?;
        let resp = client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| refuse(format!("not fetched: {e}")))?;
        if !resp.status().is_success() {
            return Err(refuse(format!("fetching it answered {}", resp.status())));
        }
        let body = super::upstream::read_capped_to(resp, MAX_DOCUMENT)
            .await
            .map_err(refuse)?;
        let metadata: Value =
            serde_json::from_slice(&body).map_err(|e| refuse(format!("not JSON: {e}")))?;
        if metadata["client_id"].as_str() != Some(url) {
            return Err(refuse("its `client_id` is not its own URL".into()));
        }
        let doc = client_metadata(&metadata, Some(url))?;
        Ok(ClientDoc {
            client_id: url.to_owned(),
            document: true,
            ..doc
        })
    }
}

/// The metadata a client may register (or publish): redirect URIs (loopback or https, no
/// wildcard), a name, and only what a public client with the code grant asks for.
fn client_metadata(m: &Value, document: Option<&str>) -> Result<ClientDoc, Failure> {
    let bad = |d: String| invalid("invalid_client_metadata", d);
    if !m.is_object() {
        return Err(bad("the metadata must be a JSON object".into()));
    }
    match m["token_endpoint_auth_method"].as_str() {
        None | Some("none") => {}
        Some(other) => {
            return Err(bad(format!(
                "token_endpoint_auth_method `{}`: Sluice registers public clients only (`none`, with PKCE)",
                clip(other)
            )))
        }
    }
    let listed = |field: &str, allowed: &[&str]| -> Result<(), Failure> {
        match &m[field] {
            Value::Null => Ok(()),
            Value::Array(values) => match values
                .iter()
                .find(|v| !v.as_str().is_some_and(|v| allowed.contains(&v)))
            {
                None => Ok(()),
                Some(v) => Err(bad(format!(
                    "{field}: {} is not supported (only {})",
                    clip(&v.to_string()),
                    allowed.join(", ")
                ))),
            },
            _ => Err(bad(format!("{field} must be a list"))),
        }
    };
    listed("grant_types", &["authorization_code", "refresh_token"])?;
    listed("response_types", &["code"])?;
    let uris = m["redirect_uris"]
        .as_array()
        .filter(|a| !a.is_empty() && a.len() <= MAX_REDIRECT_URIS)
        .ok_or_else(|| {
            invalid(
                "invalid_redirect_uri",
                format!("redirect_uris: list 1 to {MAX_REDIRECT_URIS} URIs"),
            )
        })?;
    let mut redirect_uris = Vec::new();
    for uri in uris {
        let uri = uri.as_str().unwrap_or_default();
        check_redirect_uri(uri).map_err(|e| invalid("invalid_redirect_uri", e))?;
        redirect_uris.push(uri.to_owned());
    }
    let name = m["client_name"].as_str().unwrap_or_default();
    let client_name: String = name
        .chars()
        .filter(|c| shown_as_is(*c))
        .take(MAX_NAME)
        .collect();
    let client_name = match (client_name.trim().is_empty(), document) {
        (false, _) => client_name.trim().to_owned(),
        (true, Some(url)) => url.to_owned(),
        (true, None) => "an unnamed client".to_owned(),
    };
    Ok(ClientDoc {
        client_id: String::new(),
        client_name,
        redirect_uris,
        document: document.is_some(),
    })
}

/// Whether a character of a name shown on the consent page is shown as itself: no control
/// characters and no invisible formatting (bidirectional overrides, zero-width characters)
/// that could make the page read otherwise than it says.
fn shown_as_is(c: char) -> bool {
    !c.is_control()
        && !matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}')
}

/// A redirect URI a client may register: `https` with a host, or `http` to a loopback host
/// (RFC 8252 §7.3); absolute, no fragment, no user, no wildcard.
pub(super) fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let shown = clip(uri);
    if uri.len() > MAX_URI || uri.contains('*') || uri.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!(
            "`{shown}`: no wildcards, spaces or control characters, at most {MAX_URI} characters"
        ));
    }
    let u = url::Url::parse(uri).map_err(|e| format!("`{shown}` is not a URL: {e}"))?;
    if u.fragment().is_some() || !u.username().is_empty() || u.password().is_some() {
        return Err(format!("`{shown}`: no fragment and no user"));
    }
    match (u.scheme(), u.host()) {
        ("https", Some(_)) => Ok(()),
        ("http", Some(host)) if is_loopback(&host) => Ok(()),
        _ => Err(format!(
            "`{shown}` must be https, or http to a loopback address (127.0.0.1, [::1], localhost)"
        )),
    }
}

/// Whether `uri` is an `http` URI to a loopback host (a native client's own listener).
pub(super) fn is_loopback_uri(uri: &str) -> bool {
    url::Url::parse(uri)
        .is_ok_and(|u| u.scheme() == "http" && u.host().is_some_and(|h| is_loopback(&h)))
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Whether `uri` is one the client registered: the same string, or for a loopback `http` URI
/// the same but for the port (RFC 8252 §7.3: native apps listen on whatever port is free).
pub(super) fn redirect_uri_registered(doc: &ClientDoc, uri: &str) -> bool {
    // The URL parser drops tabs and newlines: compared as written, they never match.
    if uri.chars().any(|c| c.is_control() || c == ' ') {
        return false;
    }
    if doc.redirect_uris.iter().any(|r| r == uri) {
        return true;
    }
    let Ok(asked) = url::Url::parse(uri) else {
        return false;
    };
    let loopback = asked.scheme() == "http" && asked.host().is_some_and(|h| is_loopback(&h));
    loopback
        && doc.redirect_uris.iter().any(|r| {
            url::Url::parse(r).is_ok_and(|mut r| {
                let _ = r.set_port(asked.port());
                r == asked
            })
        })
}

fn clip(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_loopback_or_https_without_wildcards() {
        for ok in [
            "https://app.example.com/cb",
            "http://127.0.0.1:3118/callback",
            "http://localhost:9/callback",
            "http://[::1]:8/cb",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example.com/cb",
            "https://*.example.com/cb",
            "https://app.example.com/cb#x",
            "https://user@app.example.com/cb",
            "javascript:alert(1)",
            "http://127.0.0.1:9/call\r\nback",
            "http://127.0.0.1:9/callback\u{0}",
            "cursor://callback",
            "/relative",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_redirects_may_change_port_only() {
        let doc = ClientDoc {
            client_id: "c".into(),
            client_name: "c".into(),
            redirect_uris: vec![
                "http://127.0.0.1:3118/callback".into(),
                "https://app.example.com/cb".into(),
            ],
            document: false,
        };
        assert!(redirect_uri_registered(
            &doc,
            "http://127.0.0.1:3118/callback"
        ));
        assert!(redirect_uri_registered(
            &doc,
            "http://127.0.0.1:50000/callback"
        ));
        assert!(!redirect_uri_registered(
            &doc,
            "http://127.0.0.1:50000/other"
        ));
        assert!(!redirect_uri_registered(
            &doc,
            "http://localhost:3118/callback"
        ));
        assert!(!redirect_uri_registered(
            &doc,
            "https://app.example.com:444/cb"
        ));
        assert!(!redirect_uri_registered(
            &doc,
            "https://app.example.com/cb/"
        ));
        assert!(!redirect_uri_registered(
            &doc,
            "http://127.0.0.1:3118/call\nback"
        ));
    }

    #[test]
    fn metadata_of_public_code_clients_only() {
        let spoof = json!({"redirect_uris": ["http://127.0.0.1:9/cb"], "client_name": "evil\u{202E}moc.elgoog\u{200B}"});
        assert_eq!(
            client_metadata(&spoof, None).unwrap().client_name,
            "evilmoc.elgoog"
        );
        let ok = json!({"redirect_uris": ["http://127.0.0.1:9/cb"], "client_name": "x\ny",
            "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "none"});
        assert_eq!(client_metadata(&ok, None).unwrap().client_name, "xy");
        for bad in [
            json!({"redirect_uris": []}),
            json!({"redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "client_secret_basic"}),
            json!({"redirect_uris": ["http://127.0.0.1:9/cb"], "grant_types": ["client_credentials"]}),
            json!({"redirect_uris": ["http://127.0.0.1:9/cb"], "response_types": ["token"]}),
            json!([1]),
        ] {
            assert!(client_metadata(&bad, None).is_err(), "{bad}");
        }
    }
}

/// Requests per client address and minute, and in all per minute, for one unauthenticated
/// endpoint that stores something (registrations, authorization requests).
pub(super) struct Limiter {
    per_address: u32,
    total: u32,
    /// (minute, admitted in all, admitted per address).
    counts: std::sync::Mutex<(u64, u32, std::collections::HashMap<String, u32>)>,
}

impl Limiter {
    pub(super) fn new(per_address: u32, total: u32) -> Limiter {
        Limiter {
            per_address,
            total,
            counts: Default::default(),
        }
    }

    /// Whether a request from `from` is admitted this minute. An address past its own limit is
    /// refused without using up the total (one address cannot block everyone); the map holds
    /// at most `total` addresses.
    pub(super) fn admit(&self, from: &str, now: u64) -> bool {
        let minute = now / 60;
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.0 != minute {
            *counts = (minute, 0, Default::default());
        }
        if counts.2.get(from).is_some_and(|n| *n >= self.per_address) || counts.1 >= self.total {
            return false;
        }
        counts.1 += 1;
        *counts.2.entry(from.to_owned()).or_insert(0) += 1;
        true
    }
}

#[cfg(test)]
mod limiter_tests {
    #[test]
    fn one_address_cannot_use_up_everyones_budget() {
        let l = super::Limiter::new(2, 3);
        assert!(l.admit("a", 60) && l.admit("a", 61));
        assert!(
            !l.admit("a", 62) && !l.admit("a", 63),
            "a is past its own limit"
        );
        assert!(
            l.admit("b", 64),
            "refusals of a did not count toward the total"
        );
        assert!(!l.admit("c", 65), "the total is reached");
        assert!(l.admit("a", 120), "a new minute");
    }
}
