//! The HTTP side of the node: serves client connections (HTTP/1.1, h2c with prior
//! knowledge, and either over TLS with ALPN) and forwards each request to a pool.

mod attempt;
pub mod body;
pub mod headers;
pub mod idle;
pub mod key;
pub mod local;
mod log;
pub mod private;
mod proxy;
pub mod replay;
pub mod request_id;
pub mod strict;
pub mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bunsan_config::ListenerLimits;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use self::idle::Activity;
use crate::access_log::AccessLog;
use crate::connections::{ConnectionTable, Link, Registration};
use crate::session::ClientSessions;
use crate::state::StateBoard;
use crate::upstream::Sender;

/// HTTP/2 streams a client may reset before the node accepted them (the "rapid reset"
/// attack, CVE-2023-44487): past this the connection gets GOAWAY.
const H2_MAX_PENDING_RESETS: usize = 20;
/// How long an idle connection being closed may take to acknowledge it.
const IDLE_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Everything a listener's connections share.
#[derive(Debug)]
pub struct HttpContext {
    /// The listener's stable id (selects its pool in the topology; see `ListenerRoute`).
    pub listener: usize,
    /// Topology and state.
    pub board: Arc<StateBoard>,
    /// `"https"` on TLS listeners, else `"http"`.
    pub proto: &'static str,
    /// Every open client connection.
    pub connections: Arc<ConnectionTable>,
    /// Where finished requests are recorded.
    pub access_log: Arc<AccessLog>,
    /// What one client connection may cost.
    pub limits: ListenerLimits,
    builder: auto::Builder<TokioExecutor>,
    /// Once cancelled, responses ask HTTP/1.1 clients to close (the node is handing over).
    draining: CancellationToken,
}

impl HttpContext {
    /// A context for listener `listener`.
    pub fn new(
        listener: usize,
        board: Arc<StateBoard>,
        connections: Arc<ConnectionTable>,
        access_log: Arc<AccessLog>,
        limits: &ListenerLimits,
        tls: bool,
    ) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let head_bytes = usize::try_from(limits.header_bytes).unwrap_or(usize::MAX);
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.head_timeout)
            .max_buf_size(head_bytes)
            .max_headers(limits.header_count);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_streams)
            .max_header_list_size(u32::try_from(limits.header_bytes).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS);
        let proto = if tls { "https" } else { "http" };
        let draining = CancellationToken::new();
        let limits = limits.clone();
        Self { listener, board, proto, connections, access_log, limits, builder, draining }
    }

    /// The same context, whose responses carry `Connection: close` once `draining` is
    /// cancelled.
    pub fn draining(mut self, draining: CancellationToken) -> Self {
        self.draining = draining;
        self
    }
}

/// One client connection: its address, its entry in the connection table, and the
/// sessions its requests carried (detached when the connection ends, which starts their
/// idle clocks; seed 000 claim 4).
#[derive(Debug)]
pub struct ClientConn {
    /// The client's address.
    pub addr: SocketAddr,
    /// The node's address the client connected to.
    pub local: SocketAddr,
    /// Its private upstream connection, for pools that send a PROXY header.
    pub private: Arc<private::PrivateConn>,
    /// Sessions this connection is attached to.
    pub sessions: ClientSessions<u32, Sender>,
    /// Keeps the connection in the table until it closes.
    _registration: Registration,
    /// Its association with a server, in the connection table.
    pub link: Arc<Link>,
}

/// Serves one client connection until it closes; on `shutdown` it finishes the requests
/// in flight and then closes (HTTP/2: GOAWAY; HTTP/1.1: no further keep-alive).
/// `client` is the client's address (from a PROXY header when the listener takes one),
/// `local` the node's end of the connection.
pub async fn serve_connection<I>(
    io: I,
    client: SocketAddr,
    local: SocketAddr,
    ctx: Arc<HttpContext>,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_ctx = ctx.clone();
    let registration = ctx.connections.register(Link::new(ctx.listener, client));
    let link = registration.link.clone();
    let sessions = ClientSessions::new();
    let private = Arc::default();
    let activity = Arc::new(Activity::default());
    let conn_state =
        Arc::new(ClientConn { addr: client, local, private, sessions, _registration: registration, link });
    let service_activity = activity.clone();
    let service = service_fn(move |req| {
        let (ctx, conn) = (service_ctx.clone(), conn_state.clone());
        let active = service_activity.begin();
        async move {
            // Boxed: hyper keeps room for one request future per HTTP/1.1 connection for
            // the connection's whole life, and ours is ~13 KiB; boxed, an idle connection
            // holds a pointer instead.
            let response = Box::pin(proxy::forward(&ctx, &conn, req)).await;
            let mut response = response.map(|body| body.while_active(active));
            // A 101 must keep its `Connection: upgrade`; the tunnel ends on its own.
            if ctx.draining.is_cancelled() && response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                // hyper closes an HTTP/1.1 connection after a response that says so (and
                // drops the header on HTTP/2), so the client's next request goes elsewhere.
                let close = http::HeaderValue::from_static("close");
                response.headers_mut().insert(http::header::CONNECTION, close);
            }
            Ok::<_, Infallible>(response)
        }
    });
    let conn = ctx.builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        () = idle::idle_past(&activity, ctx.limits.idle_timeout) => {
            tracing::debug!(%client, "closing an idle client connection");
            conn.as_mut().graceful_shutdown();
            // HTTP/2's graceful close waits for the client to acknowledge a PING; a client
            // that stays silent does not get to keep the connection that way.
            tokio::time::timeout(IDLE_CLOSE_GRACE, conn).await.unwrap_or(Ok(()))
        }
    };
    if let Err(error) = result {
        tracing::debug!(%client, %error, "client connection ended with an error");
    }
}
