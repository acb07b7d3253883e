//! The sending half of one upstream connection, HTTP/1.1 or HTTP/2, behind one type so
//! the request path, the idle pools and the session table need not care which.

use std::future::Future;

use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};

use crate::http::body::ForwardBody;

/// One upstream connection's sender. HTTP/1.1 carries one exchange at a time and is
/// leased exclusively; HTTP/2 multiplexes, so its sender is cloned and shared.
#[derive(Debug)]
pub enum Sender {
    /// An HTTP/1.1 connection (cleartext or TLS).
    Http1(http1::SendRequest<ForwardBody>),
    /// An HTTP/2 connection (h2c or h2); `tls` picks the `:scheme` requests carry.
    Http2 { sender: http2::SendRequest<ForwardBody>, tls: bool },
}

/// What a send resolves to: the response head, or the error (with the request when it
/// was not written, so it may go elsewhere).
pub(crate) type SendResult = Result<Response<Incoming>, TrySendError<Request<ForwardBody>>>;

impl Sender {
    /// Whether the connection is gone for good.
    pub fn is_closed(&self) -> bool {
        match self {
            Self::Http1(sender) => sender.is_closed(),
            Self::Http2 { sender, .. } => sender.is_closed(),
        }
    }

    /// Whether the connection is multiplexed (shared by concurrent requests).
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Http2 { .. })
    }

    /// Waits until the connection can take a request; an error means it never will.
    pub async fn ready(&mut self) -> Result<(), hyper::Error> {
        match self {
            Self::Http1(sender) => sender.ready().await,
            Self::Http2 { sender, .. } => sender.ready().await,
        }
    }

    /// Another handle on a shared (HTTP/2) connection; `None` for HTTP/1.1.
    pub fn share(&self) -> Option<Self> {
        match self {
            Self::Http1(_) => None,
            Self::Http2 { sender, tls } => Some(Self::Http2 { sender: sender.clone(), tls: *tls }),
        }
    }

    /// Sends `req`. The future does not borrow the sender, so the caller can race it
    /// against a deadline and still hand the sender back afterwards.
    pub fn try_send(
        &mut self,
        req: Request<ForwardBody>,
    ) -> impl Future<Output = SendResult> + Send + 'static {
        let pending = match self {
            Self::Http1(sender) => Pending::Http1(sender.try_send_request(req)),
            Self::Http2 { sender, tls } => Pending::Http2(sender.try_send_request(to_h2(req, *tls))),
        };
        async move {
            match pending {
                Pending::Http1(response) => response.await,
                Pending::Http2(response) => response.await,
            }
        }
    }
}

enum Pending<A, B> {
    Http1(A),
    Http2(B),
}

/// Rewrites an origin-form HTTP/1.1 request for HTTP/2: `:scheme` and `:authority` come
/// from the URI, so the `Host` header becomes the authority (RFC 9113 §8.3.1). A request
/// already rewritten (one that came back unsent) passes unchanged.
fn to_h2(mut req: Request<ForwardBody>, tls: bool) -> Request<ForwardBody> {
    if req.uri().scheme().is_some() {
        return req;
    }
    let authority =
        req.headers_mut().remove(header::HOST).and_then(|host| Authority::try_from(host.as_bytes()).ok());
    let mut parts = req.uri().clone().into_parts();
    parts.scheme = Some(if tls { Scheme::HTTPS } else { Scheme::HTTP });
    parts.authority = authority.or(parts.authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    // A head without an authority cannot be expressed in HTTP/2; the node always sets
    // `Host`, so this keeps the request as it was and lets hyper report the error.
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = http::Version::HTTP_2;
    // `TE: trailers` is the one connection header HTTP/2 allows, and gRPC needs it.
    if req.headers().get(header::TE).is_some_and(|te| te != HeaderValue::from_static("trailers")) {
        req.headers_mut().remove(header::TE);
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn request(uri: &str, host: &str) -> Request<ForwardBody> {
        let mut req = Request::new(ForwardBody::buffered(Bytes::new(), None));
        *req.uri_mut() = uri.parse().unwrap();
        req.headers_mut().insert(header::HOST, HeaderValue::from_str(host).unwrap());
        req
    }

    #[test]
    fn h2_requests_carry_scheme_and_authority_instead_of_host() {
        let req = to_h2(request("/a?b=c", "example.com:8080"), false);
        assert_eq!(req.uri(), "http://example.com:8080/a?b=c");
        assert!(req.headers().get(header::HOST).is_none());
        assert_eq!(req.version(), http::Version::HTTP_2);
        assert_eq!(to_h2(request("/", "example.com"), true).uri(), "https://example.com/");
    }

    #[test]
    fn h2_rewrite_is_idempotent_and_keeps_te_trailers_only() {
        let mut req = request("/x", "a.example");
        req.headers_mut().insert(header::TE, HeaderValue::from_static("trailers"));
        let once = to_h2(req, false);
        let twice = to_h2(once, false);
        assert_eq!(twice.uri(), "http://a.example/x");
        assert_eq!(twice.headers()[header::TE], "trailers");
        let mut gzip = request("/x", "a.example");
        gzip.headers_mut().insert(header::TE, HeaderValue::from_static("gzip"));
        assert!(to_h2(gzip, false).headers().get(header::TE).is_none());
    }
}
