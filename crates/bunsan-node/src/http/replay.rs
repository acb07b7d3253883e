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
    /// For a streamed body: set if the client's side of it fails.
    pub client_broke: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// Builds the upstream request from rewritten `parts`, buffering the body (up to `limit`)
/// when the method allows a replay. Fails only if the client's body breaks off.
pub async fn prepare(
    parts: http::request::Parts,
    body: Incoming,
    limit: u64,
    replayable: bool,
) -> Result<Prepared, hyper::Error> {
    if !replayable || !idempotent(&parts.method) {
        return Ok(streaming(parts, None, body));
    }
    match buffer(body, limit).await? {
        Buffered::Whole(data, trailers) => {
            let replay =
                Replay { method: parts.method, uri: parts.uri, headers: parts.headers, body: data, trailers };
            Ok(Prepared {
                request: replay.request(),
                body_sent: None,
                replay: Some(replay),
                client_broke: None,
            })
        }
        Buffered::Prefix(prefix, rest) => Ok(streaming(parts, Some(prefix), rest)),
    }
}

fn streaming(parts: http::request::Parts, prefix: Option<Bytes>, rest: Incoming) -> Prepared {
    let (body, body_sent, broke) = ForwardBody::streaming(prefix, rest);
    Prepared { request: Request::from_parts(parts, body), body_sent, replay: None, client_broke: Some(broke) }
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
