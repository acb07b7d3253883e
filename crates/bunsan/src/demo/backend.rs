//! Demo backends: small real HTTP servers that answer after a fixed latency, so the
//! demo's balancing is visible without any other software.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Starts a backend called `name` on an ephemeral loopback port and returns its address.
pub async fn start(name: &'static str, latency: Duration) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(serve(stream, name, latency));
        }
    });
    Ok(addr)
}

async fn serve(stream: tokio::net::TcpStream, name: &'static str, latency: Duration) {
    let service = service_fn(move |req| answer(req, name, latency));
    if let Err(error) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
        tracing::debug!(backend = name, %error, "demo backend connection ended with an error");
    }
}

async fn answer(
    req: Request<Incoming>,
    name: &'static str,
    latency: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/healthz" {
        tokio::time::sleep(latency).await;
    }
    let body = format!("hello from {name} (you asked for {})\n", req.uri().path());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert("x-backend", http::HeaderValue::from_static(name));
    Ok(response)
}
