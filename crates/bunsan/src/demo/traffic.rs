//! The demo's built-in traffic: a few keep-alive clients sending GETs back to back.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Starts `clients` tasks that request `/` from `target` until the process ends.
pub fn start(target: SocketAddr, clients: usize) {
    for id in 0..clients {
        tokio::spawn(client(target, id));
    }
}

async fn client(target: SocketAddr, id: usize) {
    loop {
        if let Err(error) = session(target, id).await {
            tracing::debug!(client = id, %error, "demo traffic: reconnecting");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One keep-alive connection, used until it fails.
async fn session(target: SocketAddr, id: usize) -> anyhow::Result<()> {
    let stream = TcpStream::connect(target).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    loop {
        sender.ready().await?;
        let request = Request::get(format!("/demo/{id}"))
            .header(http::header::HOST, target.to_string())
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        response.into_body().collect().await?;
    }
}
