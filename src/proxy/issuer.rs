//! Sluice's built-in issuer on the proxy listener: its public keys at `/oauth2/jwks`, so that
//! third parties can verify the tokens it signs (data planes have them in the snapshot).

use pingora_proxy::Session;

use super::respond::{write_page, Page};
use crate::config::Snapshot;

pub const PREFIX: &str = "/oauth2/";
pub const JWKS_PATH: &str = "/oauth2/jwks";

/// Answers a request under `/oauth2/`; returns the status written.
pub async fn serve(session: &mut Session, snap: &Snapshot, request_id: &str) -> u16 {
    let path = session.req_header().uri.path();
    let page = if path == JWKS_PATH && session.req_header().method == http::Method::GET {
        let keys = match &snap.builtin_jwks {
            serde_json::Value::Null => serde_json::json!({ "keys": [] }),
            doc => doc.clone(),
        };
        Page {
            status: 200,
            content_type: "application/jwk-set+json",
            body: keys.to_string(),
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
