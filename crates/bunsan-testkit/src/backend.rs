//! A real HTTP backend on an ephemeral loopback port that records what it sees. It
//! speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c), or, started with TLS, both
//! over TLS with ALPN.
//!
//! Routes: `/sleep/MS` answers after MS milliseconds; `/bytes/N` streams N bytes;
//! `/echo` streams the request body back; `/status/CODE` answers with that status;
//! `/trailers` answers `ok` followed by gRPC-style trailers (`grpc-status: 0`);
//! a WebSocket upgrade on any path is accepted and echoes every message; anything else
//! answers with the backend's name. Every response carries `x-backend: NAME`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::SelfSigned;
use tokio::task::{AbortHandle, JoinSet};

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The method.
    pub method: Method,
    /// The request target as received (origin-form expected).
    pub uri: String,
    /// The HTTP version.
    pub version: http::Version,
    /// All headers.
    pub headers: HeaderMap,
}

#[derive(Debug, Default)]
struct Shared {
    hits: AtomicU64,
    seen: Mutex<Vec<Seen>>,
    connections: AtomicU64,
}

/// A running backend; stops (closing every connection) when dropped or [`Backend::stop`]ped.
#[derive(Debug)]
pub struct Backend {
    /// Its name, sent back in `x-backend`.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: AbortHandle,
}

pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

impl Backend {
    /// Starts a backend on an ephemeral port.
    pub async fn start(name: &str) -> Self {
        Self::start_on(name, "127.0.0.1:0".parse().expect("literal address")).await
    }

    /// Starts a backend on `addr` (e.g. the address of one that was stopped).
    pub async fn start_on(name: &str, addr: SocketAddr) -> Self {
        Self::start_with(name, addr, None).await
    }

    /// Starts a backend that speaks TLS with `cert` (ALPN `h2`, `http/1.1`).
    pub async fn start_tls(name: &str, cert: &SelfSigned) -> Self {
        let addr = "127.0.0.1:0".parse().expect("literal address");
        Self::start_with(name, addr, Some(tls_acceptor(cert))).await
    }

    /// Starts a TLS backend that also requires clients to present a certificate signed
    /// by (or equal to) `client_ca`.
    pub async fn start_mtls(name: &str, cert: &SelfSigned, client_ca: &SelfSigned) -> Self {
        let addr = "127.0.0.1:0".parse().expect("literal address");
        Self::start_with(name, addr, Some(tls_acceptor_verifying(cert, Some(client_ca)))).await
    }

    async fn start_with(name: &str, addr: SocketAddr, tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind(addr).await.expect("backend binds");
        let addr = listener.local_addr().expect("bound address");
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept(listener, tls, name.to_owned(), shared.clone())).abort_handle();
        Self { name: name.to_owned(), addr, shared, task }
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(SeqCst)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops listening and drops every open connection at once, like a killed server.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Owns every connection task, so aborting it closes them all.
async fn accept(listener: TcpListener, tls: Option<TlsAcceptor>, name: String, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        shared.connections.fetch_add(1, SeqCst);
        let (name, shared, tls) = (name.clone(), shared.clone(), tls.clone());
        connections.spawn(async move {
            match tls {
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        serve(stream, name, shared).await;
                    }
                }
                None => serve(stream, name, shared).await,
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn serve<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: I, name: String, shared: Arc<Shared>) {
    let service = service_fn(move |req| handle(req, name.clone(), shared.clone()));
    let builder = auto::Builder::new(TokioExecutor::new());
    let _ = builder.serve_connection_with_upgrades(TokioIo::new(io), service).await;
}

fn tls_acceptor(cert: &SelfSigned) -> TlsAcceptor {
    tls_acceptor_verifying(cert, None)
}

fn tls_acceptor_verifying(cert: &SelfSigned, client_ca: Option<&SelfSigned>) -> TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    let key =
        rustls_pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("test key parses");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("default versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.cert_der.clone()).expect("the client CA parses");
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config =
        builder.with_single_cert(vec![cert.cert_der.clone()], key).expect("test certificate and key match");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

async fn handle(
    req: Request<Incoming>,
    name: String,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    shared.hits.fetch_add(1, SeqCst);
    if let Ok(mut seen) = shared.seen.lock() {
        seen.push(Seen {
            method: req.method().clone(),
            uri: req.uri().to_string(),
            version: req.version(),
            headers: req.headers().clone(),
        });
    }
    let mut response = route(req, &name).await;
    response.headers_mut().insert("x-backend", name.parse().expect("backend names are header-safe"));
    Ok(response)
}

async fn route(req: Request<Incoming>, name: &str) -> Response<Body> {
    if crate::websocket::is_upgrade(&req) {
        return crate::websocket::accept_echo(req);
    }
    let path = req.uri().path().to_owned();
    if path == "/trailers" {
        return Response::new(with_trailers(name));
    }
    let arg = |prefix: &str| path.strip_prefix(prefix).and_then(|rest| rest.parse::<u64>().ok());
    if let Some(ms) = arg("/sleep/") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(n) = arg("/bytes/") {
        return Response::new(bytes_body(n));
    }
    if let Some(code) = arg("/status/") {
        let mut response = Response::new(full(name.to_owned()));
        *response.status_mut() = StatusCode::from_u16(code as u16).unwrap_or(StatusCode::IM_A_TEAPOT);
        return response;
    }
    if path == "/echo" {
        return Response::new(req.into_body().boxed());
    }
    Response::new(full(name.to_owned()))
}

/// `ok`, then trailers naming the backend, as a gRPC server ends a call.
fn with_trailers(name: &str) -> Body {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    trailers.insert("x-trailer-from", name.parse().expect("backend names are header-safe"));
    let frames =
        [Ok::<_, hyper::Error>(Frame::data(Bytes::from_static(b"ok"))), Ok(Frame::trailers(trailers))];
    http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

fn full(text: String) -> Body {
    Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed()
}

/// `n` bytes of a repeating pattern, in 64 KiB frames, without holding them all.
fn bytes_body(n: u64) -> Body {
    PatternBody::new(n).boxed()
}

/// The byte at offset `i` of every pattern body (and of [`pattern`]).
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// A body of `remaining` pattern bytes, produced frame by frame.
struct PatternBody {
    sent: u64,
    remaining: u64,
    chunk: Bytes,
}

impl PatternBody {
    const CHUNK: u64 = 64 * 1024;

    fn new(n: u64) -> Self {
        // Frames start at any phase of the 251-byte period; one extra period lets every
        // frame be a slice of the same buffer.
        let chunk = (0..Self::CHUNK + 251).map(pattern_byte).collect::<Vec<u8>>();
        Self { sent: 0, remaining: n, chunk: Bytes::from(chunk) }
    }
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if self.remaining == 0 {
            return std::task::Poll::Ready(None);
        }
        let len = Self::CHUNK.min(self.remaining) as usize;
        let phase = (self.sent % 251) as usize;
        let frame = self.chunk.slice(phase..phase + len);
        self.sent += len as u64;
        self.remaining -= len as u64;
        std::task::Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}
