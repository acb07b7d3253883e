//! Building replies and reading requests: JSON bodies, `{"error": …}`, size limits.

use std::convert::Infallible;

use bunsan_proto::admin::ErrorBody;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::RequestError;

/// Every reply's body: a whole JSON document, or a watch stream.
pub type Body = BoxBody<Bytes, Infallible>;
/// A reply.
pub type Reply = Response<Body>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// `value` as pretty JSON.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    match serde_json::to_vec_pretty(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            with_type(status, full(bytes), "application/json")
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "response could not be encoded".into()),
    }
}

/// `{"error": message}`.
pub fn error(status: StatusCode, message: String) -> Reply {
    let mut bytes = serde_json::to_vec(&ErrorBody { error: message }).unwrap_or_default();
    bytes.push(b'\n');
    with_type(status, full(bytes), "application/json")
}

/// The reply for a refused request.
pub fn refused(why: RequestError) -> Reply {
    let status = match &why {
        RequestError::Invalid(_) => StatusCode::BAD_REQUEST,
        RequestError::NotFound(_) => StatusCode::NOT_FOUND,
        RequestError::Store(store) => {
            tracing::error!(error = %store, "a change could not be saved");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error(status, why.to_string())
}

/// A reply with a `content-type`.
pub fn with_type(status: StatusCode, body: Body, kind: &'static str) -> Reply {
    let mut reply = Response::new(body);
    *reply.status_mut() = status;
    reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    reply
}

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, RequestError> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => {
            Err(RequestError::invalid(format!("request body is larger than {} KiB", limit / 1024)))
        }
        Err(e) => Err(RequestError::invalid(format!("cannot read the request body: {e}"))),
    }
}

/// Reads a JSON body of type `T`.
pub async fn read_json<T: DeserializeOwned>(req: Request<Incoming>, limit: usize) -> Result<T, RequestError> {
    let body = read_body(req, limit).await?;
    serde_json::from_slice(&body).map_err(|e| RequestError::invalid(format!("invalid JSON body: {e}")))
}

/// The value of query parameter `name`, if present (ids and names need no decoding).
pub fn query<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|pair| match pair.split_once('=') {
        Some((key, value)) if key == name => Some(value),
        _ => None,
    })
}
