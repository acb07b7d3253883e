//! Responses the node writes itself: the error statuses of ARCHITECTURE §4, in plain
//! text that names the pool (never a server's name or address).

use http::{header, HeaderValue, Response, StatusCode};

use super::body::ResponseBody;

/// Which error the node answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalError {
    /// No server of the pool may take new work: `503`.
    NoServer,
    /// Every server tried failed (connect failure, broken response): `502`.
    UpstreamFailed,
    /// The server did not answer within the pool's `response_timeout`: `504`.
    Timeout,
    /// The request cannot be forwarded as it is: `400`, and the connection is closed.
    BadRequest(&'static str),
    /// A method the node does not forward (`CONNECT`): `405`, and the connection is closed.
    NotAllowed(&'static str),
    /// The request target is longer than the listener's `uri_bytes`: `414`, closed.
    UriTooLong,
    /// The body is larger than the pool's `max_body`: `413`, closed.
    BodyTooLarge,
}

impl LocalError {
    /// The status code sent to the client.
    pub fn status(self) -> StatusCode {
        match self {
            Self::NoServer => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamFailed => StatusCode::BAD_GATEWAY,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    fn message(self, pool: &str) -> String {
        match self {
            Self::NoServer => format!("no server available in pool {pool}"),
            Self::UpstreamFailed => format!("no server in pool {pool} could complete the request"),
            Self::Timeout => format!("the server in pool {pool} did not answer in time"),
            Self::BadRequest(why) => format!("bad request: {why}"),
            Self::NotAllowed(why) => format!("method not allowed: {why}"),
            Self::UriTooLong => "the request target is too long".to_owned(),
            Self::BodyTooLarge => format!("the request body is larger than pool {pool} accepts"),
        }
    }
}

/// Builds the response for `error` in `pool`.
pub fn respond(error: LocalError, pool: &str) -> Response<ResponseBody> {
    let status = error.status();
    let body = format!("{} {}\n", status, error.message(pool));
    let mut response = Response::new(ResponseBody::local(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The connection may hold unread bytes of a message the node did not take: close it.
    if !matches!(error, LocalError::NoServer | LocalError::UpstreamFailed | LocalError::Timeout) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn no_server_names_the_pool() {
        let response = respond(LocalError::NoServer, "app");
        assert_eq!(response.status(), 503);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"503 Service Unavailable no server available in pool app\n");
    }
}
