// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! Entry points for an application that runs its own HTTP/1 proxy loop with the same
//! [`ProxyHttp`] filters, and hands the requests it does not take to this proxy after reading
//! their head.

use super::*;
use crate::proxy_common::*;
use pingora_core::protocols::http::authority::{raw_target_authority, validate_request_authority};

impl<SV, C> HttpProxy<SV, C>
where
    C: custom::Connector,
{
    /// The application behind this proxy.
    pub fn app(&self) -> &SV {
        &self.inner
    }

    /// How many attempts a request gets (`ServerConf::max_retries`).
    pub fn max_retries(&self) -> usize {
        self.max_retries
    }

    /// Reads the next request's head with this proxy's head limits, keep-alive cap and
    /// shutdown watch; `None` when the connection ended or the head was refused (answered).
    pub async fn read_request_head(
        &self,
        downstream: Box<HttpSession>,
    ) -> Option<Box<HttpSession>>
    where
        SV: ProxyHttp + Send + Sync,
        SV::CTX: Send + Sync,
    {
        self.handle_new_request(downstream).await
    }

    /// The proxy session of a request whose head was read.
    pub fn new_session(&self, downstream: Box<HttpSession>) -> Session {
        Session::new(
            downstream,
            &self.downstream_modules,
            #[cfg(feature = "upstream_modules")]
            &self.upstream_modules,
            self.shutdown_flag.clone(),
        )
    }

    /// Proxies a request whose head was read (see [`Self::read_request_head`]) the way
    /// [`HttpServerApp::process_new_http`] does.
    pub async fn serve_session(
        self: &Arc<Self>,
        session: Session,
        ctx: SV::CTX,
    ) -> Option<ReusedHttpStream>
    where
        SV: ProxyHttp + Send + Sync + 'static,
        SV::CTX: Send + Sync,
    {
        self.process_request(session, ctx).await
    }
}

/// The HTTP/1.1 request head for an HTTP/1 upstream, from the client's, before
/// [`ProxyHttp::upstream_request_filter`]: hop-by-hop headers removed, as the proxy does.
pub fn h1_upstream_request(session: &Session, peer: &HttpPeer) -> Result<RequestHeader> {
    let mut req = session.req_header().clone();
    req.set_version(Version::HTTP_11);
    if session.req_header().version == Version::HTTP_2 {
        set_h1_host_from_authority(&mut req).map_err(|e| e.into_down())?;
    }
    sanitize_h1_upstream_request(
        &mut req,
        peer.options.http_upstream_request_policy,
        session.req_header().version == Version::HTTP_11,
    )
    .map_err(|e| e.into_down())?;
    Ok(req)
}

/// After [`ProxyHttp::upstream_request_filter`]: the authority reconciled with `Host`, the
/// head validated and its body framing set, as the proxy does.
pub fn finish_h1_upstream_request(
    session: &mut Session,
    req: &mut RequestHeader,
    downstream_had_host: bool,
) -> Result<()> {
    reconcile_upstream_authority(req).map_err(|e| e.into_in())?;
    let target_has_authority = raw_target_authority(req.raw_path()).authority().is_some();
    if downstream_had_host || req.uri.authority().is_some() || target_has_authority {
        set_h1_host_from_authority(req).map_err(|e| e.into_in())?;
    }
    validate_request_authority(req).map_err(|e| e.into_in())?;
    finalize_h1_upstream_request_framing(req, !session.is_body_empty())?;
    session.set_upstream_h1_upgrade_request_status(
        pingora_core::protocols::http::v1::common::is_upgrade_req(req),
    );
    Ok(())
}

/// What the proxy does to an upstream response head before
/// [`ProxyHttp::response_filter`]: an HTTP/1.0-style body (no length, no chunking) is sent on
/// as chunked so the client connection stays reusable.
pub fn h1_response_head(session: &Session, header: &mut ResponseHeader, end: bool) -> Result<()> {
    let no_body = session.req_header().method == http::method::Method::HEAD
        || matches!(header.status.as_u16(), 204 | 304);
    if !no_body
        && !header.status.is_informational()
        && header.headers.get(http::header::TRANSFER_ENCODING).is_none()
        && header.headers.get(http::header::CONTENT_LENGTH).is_none()
        && !end
    {
        header.set_version(Version::HTTP_11);
        header.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    Ok(())
}

/// Whether an upstream that answered `status` surely read the whole request, so that its
/// connection may serve another. An answer refusing the request itself (400, 408, 411, 413,
/// 414, 431) or a server error may come before the body was read: the unread rest would be
/// taken for the start of the next request on that connection — another client's. (A
/// compliant server closes such a connection itself; this is for those that do not.)
pub fn answer_keeps_connection(status: u16) -> bool {
    !matches!(status, 400 | 408 | 411 | 413 | 414 | 431 | 500..)
}
