//! The admin API: pools and servers with live load, state changes and pins, and
//! `/metrics`. JSON over HTTP/1.1; a bearer token when configured.

mod routes;
pub mod view;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bunsan_config::Secret;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connections::ConnectionTable;
use crate::state::StateBoard;

/// What the admin handlers share.
#[derive(Debug)]
pub struct AdminContext {
    /// Topology and state.
    pub board: Arc<StateBoard>,
    /// The metrics registry.
    pub registry: Registry,
    /// The bearer token callers must present, if any.
    pub token: Option<Secret>,
    /// Every open client connection.
    pub connections: Arc<ConnectionTable>,
    /// The node, for `POST /v1/reload` (`None`: reloading is not offered).
    pub node: Option<crate::NodeHandle>,
}

/// Serves the admin API on `listener` until `stop` (stop accepting) or `shutdown` (also
/// close the open connections once their request is answered).
pub async fn serve(
    listener: Arc<TcpListener>,
    ctx: Arc<AdminContext>,
    tracker: TaskTracker,
    stop: CancellationToken,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        tracker.spawn(serve_one(stream, peer, ctx.clone(), shutdown.clone()));
    }
}

async fn serve_one(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    ctx: Arc<AdminContext>,
    shutdown: CancellationToken,
) {
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(routes::handle(&ctx, req).await) }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(client = %peer, %error, "admin connection ended with an error");
    }
}
