//! Clients for tests: HTTP/1.1, h2c with prior knowledge, and TLS with a chosen ALPN,
//! each over one real connection that can carry several requests.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A complete response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The protocol the response came over.
    pub version: Version,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Any error a test client can meet.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One client connection.
pub struct Client {
    sender: Sender,
    authority: String,
    /// The ALPN protocol the server chose (TLS only).
    pub alpn: Option<Vec<u8>>,
}

impl Client {
    /// An HTTP/1.1 connection to `addr`.
    pub async fn http1(addr: SocketAddr) -> Result<Self, Error> {
        let stream = TcpStream::connect(addr).await?;
        Self::over(stream, addr, false, None).await
    }

    /// An HTTP/2 connection with prior knowledge (h2c) to `addr`.
    pub async fn h2c(addr: SocketAddr) -> Result<Self, Error> {
        let stream = TcpStream::connect(addr).await?;
        Self::over(stream, addr, true, None).await
    }

    /// A TLS connection to `addr` for `localhost`, trusting `ca`, offering `alpn`; speaks
    /// HTTP/2 if the server chose `h2`, else HTTP/1.1.
    pub async fn tls(addr: SocketAddr, ca: &CertificateDer<'static>, alpn: &[&str]) -> Result<Self, Error> {
        Self::tls_after(addr, &[], ca, alpn).await
    }

    /// Like [`Client::tls`], but first sends `preamble` in clear (e.g. a PROXY header).
    pub async fn tls_after(
        addr: SocketAddr,
        preamble: &[u8],
        ca: &CertificateDer<'static>,
        alpn: &[&str],
    ) -> Result<Self, Error> {
        Self::tls_to(addr, preamble, "localhost", ca, alpn).await
    }

    /// Like [`Client::tls_after`], asking for (SNI) and verifying `server_name`; an IP
    /// address sends no SNI.
    pub async fn tls_to(
        addr: SocketAddr,
        preamble: &[u8],
        server_name: &str,
        ca: &CertificateDer<'static>,
        alpn: &[&str],
    ) -> Result<Self, Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.write_all(preamble).await?;
        let tls = connector.connect(ServerName::try_from(server_name.to_owned())?, tcp).await?;
        let chosen = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let h2 = chosen.as_deref() == Some(b"h2");
        Self::over(tls, addr, h2, chosen).await
    }

    async fn over<I>(io: I, addr: SocketAddr, h2: bool, alpn: Option<Vec<u8>>) -> Result<Self, Error>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        let sender = if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = http1::handshake(io).await?;
            tokio::spawn(conn);
            Sender::H1(sender)
        };
        Ok(Self { sender, authority: addr.to_string(), alpn })
    }

    /// Sends a request (a `Host`/authority is added when missing) and reads the whole reply.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, Error> {
        let (parts, body) = self.stream(req).await?.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply { status: parts.status, version: parts.version, headers: parts.headers, body })
    }

    /// Sends a request and returns the response as soon as its head arrives, for bodies
    /// that stream (watch streams, slow downloads).
    pub async fn stream(&mut self, mut req: Request<Full<Bytes>>) -> Result<http::Response<Incoming>, Error> {
        let response = match &mut self.sender {
            Sender::H1(sender) => {
                if !req.headers().contains_key(http::header::HOST) {
                    req.headers_mut().insert(http::header::HOST, self.authority.parse()?);
                }
                sender.ready().await?;
                sender.send_request(req).await?
            }
            Sender::H2(sender) => {
                *req.uri_mut() = format!("http://{}{}", self.authority, req.uri()).parse()?;
                sender.ready().await?;
                sender.send_request(req).await?
            }
        };
        Ok(response)
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<Reply, Error> {
        self.send(Request::get(path).body(Full::new(Bytes::new()))?).await
    }
}

/// `GET path` over a fresh HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Reply, Error> {
    Client::http1(addr).await?.get(path).await
}
