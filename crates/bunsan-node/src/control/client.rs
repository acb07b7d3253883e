//! A small HTTP/1.1 client for the state manager's API (`bunsan_proto::control`).

use bytes::{Buf, Bytes, BytesMut};
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

use bunsan_proto::control::{Assignment, Event, Subscribed, Subscription, Table};

/// The largest single line (one whole table) the node accepts from the stream.
const MAX_LINE: usize = 64 * 1024 * 1024;

/// Why talking to the state manager failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// It could not be reached.
    #[error("cannot reach {url}: {source}")]
    Connect {
        /// The control URL.
        url: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The HTTP exchange broke.
    #[error("HTTP exchange with {url} failed: {source}")]
    Http {
        /// The control URL.
        url: String,
        /// hyper's error.
        source: hyper::Error,
    },
    /// It answered with an error status.
    #[error("{url} answered {status}: {message}")]
    Status {
        /// The control URL.
        url: String,
        /// The status.
        status: StatusCode,
        /// Its `error` message.
        message: String,
    },
    /// It sent changes to a table version this node does not hold; a new watch starts
    /// with a whole table.
    #[error("{url} sent changes from version {from}, which this node does not hold")]
    OutOfStep {
        /// The control URL.
        url: String,
        /// The version the changes applied to.
        from: u64,
    },
    /// It answered something that is not the expected JSON.
    #[error("{url} sent an unreadable answer: {reason}")]
    Malformed {
        /// The control URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

/// A client for one control instance.
#[derive(Debug, Clone)]
pub struct ControlClient {
    url: String,
    authority: String,
    token: Option<String>,
}

impl ControlClient {
    /// A client for `url` (`http://HOST:PORT`, validated by the config).
    pub fn new(url: &str, token: Option<String>) -> Self {
        let authority = url.trim_start_matches("http://").to_owned();
        Self { url: url.to_owned(), authority, token }
    }

    /// The control URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `POST /v1/subscribers` → the subscriber id.
    pub async fn subscribe(&self, subscription: &Subscription) -> Result<String, ControlError> {
        let body = serde_json::to_vec(subscription).map_err(|e| self.malformed(e.to_string()))?;
        let subscribed: Subscribed = self.json(Method::POST, "/v1/subscribers", Bytes::from(body)).await?;
        Ok(subscribed.id)
    }

    /// `GET /v1/state`.
    pub async fn state(&self) -> Result<Table, ControlError> {
        self.json(Method::GET, "/v1/state", Bytes::new()).await
    }

    /// `GET /v1/assign/{pool}?subscriber=ID`.
    pub async fn assign(&self, pool: &str, id: &str) -> Result<Assignment, ControlError> {
        self.json(Method::GET, &format!("/v1/assign/{pool}?subscriber={id}"), Bytes::new()).await
    }

    /// `GET /v1/watch?subscriber=ID`: the stream of events.
    pub async fn watch(&self, id: &str) -> Result<EventStream, ControlError> {
        let body = self.send(Method::GET, &format!("/v1/watch?subscriber={id}"), Bytes::new()).await?;
        Ok(EventStream { body, buffer: BytesMut::new(), url: self.url.clone() })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<T, ControlError> {
        let incoming = self.send(method, path, body).await?;
        let bytes = incoming.collect().await.map_err(|source| self.http(source))?.to_bytes();
        serde_json::from_slice(&bytes).map_err(|e| self.malformed(e.to_string()))
    }

    /// Sends one request on a new connection and returns the body of a 2xx answer.
    async fn send(&self, method: Method, path: &str, body: Bytes) -> Result<Incoming, ControlError> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|source| ControlError::Connect { url: self.url.clone(), source })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| self.http(e))?;
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/x-ndjson, application/json");
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Full::new(body)).map_err(|e| self.malformed(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| self.http(e))?;
        if response.status().is_success() {
            return Ok(response.into_body());
        }
        Err(self.status_error(response).await)
    }

    async fn status_error(&self, response: http::Response<Incoming>) -> ControlError {
        let status = response.status();
        let bytes = response.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let message = serde_json::from_slice::<bunsan_proto::admin::ErrorBody>(&bytes)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        ControlError::Status { url: self.url.clone(), status, message }
    }

    fn http(&self, source: hyper::Error) -> ControlError {
        ControlError::Http { url: self.url.clone(), source }
    }

    fn malformed(&self, reason: String) -> ControlError {
        ControlError::Malformed { url: self.url.clone(), reason }
    }
}

/// The watch stream: JSON lines, one [`Event`] each.
pub struct EventStream {
    body: Incoming,
    buffer: BytesMut,
    url: String,
}

impl EventStream {
    /// The next event; `None` when the state manager ended the stream.
    pub async fn next_event(&mut self) -> Result<Option<Event>, ControlError> {
        loop {
            if let Some(line) = self.take_line() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let event = serde_json::from_slice(&line).map_err(|e| self.malformed(e.to_string()))?;
                return Ok(Some(event));
            }
            if self.buffer.len() > MAX_LINE {
                return Err(self.malformed(format!("a line longer than {MAX_LINE} bytes")));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(frame) => {
                    let frame =
                        frame.map_err(|source| ControlError::Http { url: self.url.clone(), source })?;
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    fn take_line(&mut self) -> Option<Bytes> {
        let end = self.buffer.iter().position(|&b| b == b'\n')?;
        let line = self.buffer.split_to(end).freeze();
        self.buffer.advance(1);
        Some(line)
    }

    fn malformed(&self, reason: String) -> ControlError {
        ControlError::Malformed { url: self.url.clone(), reason }
    }
}
