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
    let body = Bytes::from(error.body(shape));
    let result = async {
        let mut resp = ResponseHeader::build(status, Some(5))?;
        resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        resp.insert_header("x-sluice-error", error.reason())?;
        resp.insert_header("x-request-id", request_id)?;
        if let Some(challenge) = error.challenge() {
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
