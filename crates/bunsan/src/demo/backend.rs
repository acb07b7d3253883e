//! Demo backends: `bunsan backend`'s server run in-process on ephemeral ports, so the
//! demo's balancing is visible without any other software.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::backend_cmd::Backend;

/// Starts a backend called `name` on an ephemeral loopback port and returns its address.
/// It answers after `latency` and offers the same routes as `bunsan backend`.
pub async fn start(name: &'static str, latency: Duration) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(Backend::new(name, latency).serve(listener));
    Ok(addr)
}
