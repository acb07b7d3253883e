//! A small HTTP/1.1 client for control and scrape requests: pooled connections, one
//! timeout over the whole exchange, and a bound on the body read.

use std::error::Error as _;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What came back.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The body (at most the caller's limit).
    pub body: Bytes,
}

/// Why no answer came back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Connecting or exchanging failed; the message has the whole cause chain.
    #[error("{0}")]
    Exchange(String),
    /// No complete answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The body was longer than the limit, or broke off.
    #[error("unreadable body: {0}")]
    Body(String),
}

/// The client; cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client with its own connection pool.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // Idle connections are dropped well before a typical server's keep-alive limit,
        // so a request rarely races the server closing the connection.
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .build(connector);
        Self { inner }
    }

    /// Sends `request` and reads at most `limit` body bytes, all within `timeout`.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
        limit: usize,
    ) -> Result<Answer, HttpError> {
        let exchange = async {
            let response = self.inner.request(request).await.map_err(|e| HttpError::Exchange(chain(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| HttpError::Body(e.to_string()))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_elapsed| HttpError::Timeout(timeout))?
    }
}

/// An error with its causes, e.g. `client error (Connect): tcp connect error: Connection refused`.
fn chain(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
