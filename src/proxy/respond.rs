//! Responses Sluice writes itself (refusals and upstream failures), in the provider's error shape.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora_proxy::Session;

use crate::error::{ErrorShape, GatewayError};

/// Writes `error` as a complete JSON response with `status` (normally `error.status()`; 504 for
/// an upstream timeout). Failures to write (client gone) are only logged: nobody is left to tell.
pub async fn write_error(
    session: &mut Session,
    error: GatewayError,
    shape: ErrorShape,
    status: u16,
    request_id: &str,
) {
    write_error_for(session, error, shape, status, None, request_id).await
}

/// `write_error` with the protected-resource metadata URL (RFC 9728) the challenge names.
pub async fn write_error_for(
    session: &mut Session,
    error: GatewayError,
    shape: ErrorShape,
    status: u16,
    resource_metadata: Option<&str>,
    request_id: &str,
) {
    let body = Bytes::from(error.body(shape));
    let result = async {
        let mut resp = ResponseHeader::build(status, Some(5))?;
        resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        resp.insert_header("x-sluice-error", error.reason())?;
        resp.insert_header("x-request-id", request_id)?;
        for (name, value) in error.headers(shape) {
            resp.insert_header(name, value)?;
        }
        if let Some(mut challenge) = error.challenge() {
            if let Some(url) = resource_metadata {
                challenge.push_str(&format!(r#", resource_metadata="{url}""#));
            }
            resp.insert_header(error.challenge_header(), challenge)?;
        }
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await
    }
    .await;
    if let Err(e) = result {
        log::debug!("could not write the {status} response: {e}");
    }
}

/// A complete response Sluice answers with itself (a page, a JSON document).
pub struct Page {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

/// Writes `page` (never cached; HTML pages under a strict content security policy); returns
/// its status. A client gone before the end is only logged.
pub async fn write_page(session: &mut Session, page: Page, request_id: &str) -> u16 {
    let status = page.status;
    let body = Bytes::from(page.body);
    let result = async {
        let mut resp = ResponseHeader::build(status, Some(6))?;
        resp.insert_header(http::header::CONTENT_TYPE, page.content_type)?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        resp.insert_header("x-request-id", request_id)?;
        if page.content_type.starts_with("text/html") {
            resp.insert_header(
                "content-security-policy",
                "default-src 'none'; form-action 'self' https: http:; frame-ancestors 'none'",
            )?;
            resp.insert_header("referrer-policy", "no-referrer")?;
        }
        for (name, value) in page.headers {
            resp.append_header(name, value)?;
        }
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await
    }
    .await;
    if let Err(e) = result {
        log::debug!("could not write the {status} response: {e}");
    }
    status
}

/// Why a request body was not taken whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than the endpoint takes.
    TooLarge,
    /// The client's body broke off or was malformed.
    Unreadable,
}

/// The whole request body of an endpoint Sluice answers itself, at most `max` bytes.
pub async fn read_body(session: &mut Session, max: usize) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= max => body.extend_from_slice(&chunk),
            Ok(Some(_)) => return Err(BodyError::TooLarge),
            Ok(None) => return Ok(body),
            Err(_) => return Err(BodyError::Unreadable),
        }
    }
}
