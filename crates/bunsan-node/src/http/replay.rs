//! Replay safety: which requests may be sent again to another server after one failed,
//! and the buffered copy that makes it possible.
//!
//! A request may be replayed after it reached a server only if its method is idempotent
//! (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) and its whole body was buffered before the
//! first attempt — at most the pool's `retry.buffer` bytes. A larger body streams through
//! and the request is never replayed; a POST is never replayed once it may have reached a
//! server. (A request that never reached any server may always go elsewhere; that needs
//! no copy, because the request itself comes back unsent.)

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::ForwardBody;
use super::local::LocalError;

/// What is kept to send a request again.
#[derive(Debug, Clone)]
pub struct Replay {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

impl Replay {
    /// A fresh copy of the request.
    pub fn request(&self) -> Request<ForwardBody> {
        let mut req = Request::new(ForwardBody::buffered(self.body.clone(), self.trailers.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Whether a request with `method` may be replayed after reaching a server (RFC 9110
/// §9.2.2 idempotent methods).
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// A request ready to go upstream.
pub struct Prepared {
    /// The request for the first attempt.
    pub request: Request<ForwardBody>,
    /// Fires when a streamed body has been sent completely (the response timeout starts then).
    pub body_sent: Option<tokio::sync::oneshot::Receiver<()>>,
    /// A copy for replays, if the request may be replayed.
    pub replay: Option<Replay>,
    /// For a streamed body: what went wrong on the client's side, if anything.
    pub client_body: Option<std::sync::Arc<super::body::ClientBody>>,
}

/// How a request body is to be handled.
#[derive(Debug, Clone, Copy)]
pub struct BodyRules {
    /// Buffer up to this many bytes so the request can be replayed (`retry.buffer`).
    pub buffer: u64,
    /// Whether the pool replays at all (`retry.attempts > 1`).
    pub replayable: bool,
    /// The largest body forwarded (`max_body`).
    pub max_body: Option<u64>,
}

/// Builds the upstream request from rewritten `parts`, buffering the body (up to
/// `rules.buffer`) when the method allows a replay. Fails if the client's body breaks
/// off (`400`) or is larger than `max_body` (`413`).
pub async fn prepare(
    parts: http::request::Parts,
    body: Incoming,
    rules: BodyRules,
) -> Result<Prepared, LocalError> {
    if !rules.replayable || !idempotent(&parts.method) {
        return Ok(streaming(parts, None, body, rules.max_body));
    }
    let broke = |_| LocalError::BadRequest("the request body broke off");
    match buffer(body, rules.buffer).await.map_err(broke)? {
        Buffered::Whole(data, _) if rules.max_body.is_some_and(|max| data.len() as u64 > max) => {
            Err(LocalError::BodyTooLarge)
        }
        Buffered::Whole(data, trailers) => {
            let replay =
                Replay { method: parts.method, uri: parts.uri, headers: parts.headers, body: data, trailers };
            Ok(Prepared {
                request: replay.request(),
                body_sent: None,
                replay: Some(replay),
                client_body: None,
            })
        }
        Buffered::Prefix(prefix, rest) => Ok(streaming(parts, Some(prefix), rest, rules.max_body)),
    }
}

fn streaming(
    parts: http::request::Parts,
    prefix: Option<Bytes>,
    rest: Incoming,
    limit: Option<u64>,
) -> Prepared {
    let (body, body_sent, client) = ForwardBody::streaming(prefix, rest, limit);
    Prepared { request: Request::from_parts(parts, body), body_sent, replay: None, client_body: Some(client) }
}

/// A body read to its end within the limit, or the part read so far and the rest.
enum Buffered {
    Whole(Bytes, Option<HeaderMap>),
    Prefix(Bytes, Incoming),
}

async fn buffer(mut body: Incoming, limit: u64) -> Result<Buffered, hyper::Error> {
    if body.is_end_stream() {
        return Ok(Buffered::Whole(Bytes::new(), None));
    }
    // A declared length over the limit will not fit: stream from the start.
    if body.size_hint().lower() > limit {
        return Ok(Buffered::Prefix(Bytes::new(), body));
    }
    let mut data = BytesMut::new();
    while let Some(frame) = body.frame().await {
        match frame?.into_data() {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(frame) => return Ok(Buffered::Whole(data.freeze(), frame.into_trailers().ok())),
        }
        if data.len() as u64 > limit {
            return Ok(Buffered::Prefix(data.freeze(), body));
        }
    }
    Ok(Buffered::Whole(data.freeze(), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idempotent_methods_replay() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS, Method::PUT, Method::DELETE, Method::TRACE] {
            assert!(idempotent(&m), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT, Method::from_bytes(b"PURGE").unwrap()] {
            assert!(!idempotent(&m), "{m}");
        }
    }
}
