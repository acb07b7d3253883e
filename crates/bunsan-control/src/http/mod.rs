//! The HTTP/1.1 server of the control API (see [`bunsan_proto::control`] for the calls).

mod reply;
mod routes;
mod watch;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::manager::Manager;
use crate::settings::Tokens;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What every request handler needs.
#[derive(Debug)]
pub struct Context {
    /// The state manager.
    pub manager: Arc<Manager>,
    /// The roles' tokens.
    pub tokens: Tokens,
    /// The heartbeat period of watch streams.
    pub heartbeat: Duration,
    /// Watch streams and connections end when this is cancelled.
    pub shutdown: CancellationToken,
    /// Tracks connections and watch streams, so shutdown can wait for them.
    pub tracker: TaskTracker,
}

/// Accepts connections until shutdown.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>) {
    loop {
        let (stream, peer) = tokio::select! {
            () = ctx.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "control accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        ctx.tracker.spawn(serve_one(stream, peer, ctx.clone()));
    }
}

async fn serve_one(stream: TcpStream, peer: SocketAddr, ctx: Arc<Context>) {
    let shutdown = ctx.shutdown.clone();
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(routes::handle(&ctx, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(client = %peer, %error, "control connection ended with an error");
    }
}
