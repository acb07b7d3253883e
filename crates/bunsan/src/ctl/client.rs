//! A minimal HTTP/1.1 client for bunsan's JSON APIs (admin, control; plain HTTP, usually on loopback).

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use bunsan_proto::admin::ErrorBody;

/// Where an API is and how to authenticate.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: Uri,
    authority: String,
    token: Option<String>,
}

impl ApiClient {
    /// A client for the API at `url` (`http://HOST:PORT`).
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<Self> {
        let base: Uri = url.parse().with_context(|| format!("invalid URL {url:?}"))?;
        if base.scheme_str() != Some("http") {
            bail!("URL {url:?} must start with http://");
        }
        let authority = base.authority().context("URL has no host")?.to_string();
        Ok(Self { base, authority, token })
    }

    /// Sends a request and returns the body of a 2xx response; anything else is an error
    /// carrying the API's message.
    pub async fn call(&self, method: Method, path: &str, body: Option<String>) -> anyhow::Result<Bytes> {
        let (status, bytes) = self.send(method, path, body).await?;
        if status.is_success() {
            return Ok(bytes);
        }
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        bail!("{status}: {message}")
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let response = sender.send_request(request).await.context("request failed")?;
        let status = response.status();
        let bytes = response.into_body().collect().await.context("response broke off")?.to_bytes();
        Ok((status, bytes))
    }
}
