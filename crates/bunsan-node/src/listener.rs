//! Listening sockets and their accept loops.
//!
//! All sockets are bound before the node reports itself started, so a port conflict
//! fails the start instead of surfacing later. Accept loops stop on shutdown, or alone
//! when a reload removes or restarts their listener (the socket may outlive its loop);
//! the connections they started are tracked so shutdown can wait for them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bunsan_config::{ListenerConfig, Protocol};
use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connections::{ConnectionTable, Link};
use crate::error::NodeError;
use crate::http::{serve_connection, HttpContext};
use crate::state::StateBoard;

/// Backlog of not-yet-accepted connections per listening socket.
const BACKLOG: i32 = 4096;
/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after an accept error that is not about one connection (e.g. out of file
/// descriptors), so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// A bound listener, ready to accept.
pub struct Bound {
    /// Its stable id (see [`crate::topology::ListenerRoute`]).
    pub index: usize,
    /// Its name.
    pub name: String,
    /// The address actually bound (port 0 resolved).
    pub addr: SocketAddr,
    protocol: Protocol,
    socket: Arc<TcpListener>,
    tls: Option<TlsAcceptor>,
    /// Cancelled to stop this listener's accept loop (a child of the node's shutdown).
    pub stop: CancellationToken,
}

/// Binds the listener with id `index` and loads its TLS files.
pub fn bind_listener(index: usize, config: &ListenerConfig) -> Result<Bound, NodeError> {
    let tls = config.tls.as_ref().map(|files| crate::tls::acceptor(&config.name, files)).transpose()?;
    let socket = bind(config.listen, &format!("listener {}", config.name))?;
    adopt(index, config, Arc::new(socket), tls)
}

/// The listener with id `index` on an already bound `socket` (kept across a reload, or
/// taken over from an older process), with `tls` loaded from its files.
pub fn adopt(
    index: usize,
    config: &ListenerConfig,
    socket: Arc<TcpListener>,
    tls: Option<TlsAcceptor>,
) -> Result<Bound, NodeError> {
    let addr = socket.local_addr().map_err(|source| NodeError::Bind {
        what: format!("listener {}", config.name),
        addr: config.listen,
        source,
    })?;
    let (name, protocol, stop) = (config.name.clone(), config.protocol, CancellationToken::new());
    Ok(Bound { index, name, addr, protocol, socket, tls, stop })
}

impl Bound {
    /// The listening socket, shared with whoever keeps it across reloads.
    pub fn socket(&self) -> &Arc<TcpListener> {
        &self.socket
    }
}

/// Binds a TCP listening socket with `SO_REUSEADDR`, so a restarted node can bind
/// while old connections linger in TIME_WAIT.
pub fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, NodeError> {
    let fail = |source| NodeError::Bind { what: what.to_owned(), addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(BACKLOG).map_err(fail)?;
    TcpListener::from_std(socket.into()).map_err(fail)
}

/// What every accept loop shares.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Topology and state.
    pub board: Arc<StateBoard>,
    /// Every open client connection.
    pub connections: Arc<ConnectionTable>,
    /// Tracks connection tasks, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// Where finished HTTP requests are recorded.
    pub access_log: Arc<crate::access_log::AccessLog>,
    /// Cancelled when the node hands its sockets to a new process: HTTP/1.1 responses
    /// then carry `Connection: close`, so keep-alive clients move over between requests.
    pub draining: CancellationToken,
}

/// Accepts connections until shutdown, handing each to its protocol's handler.
pub async fn accept_loop(bound: Bound, shared: Shared) {
    let Shared { board, connections, tracker, shutdown, draining, access_log } = shared;
    let tls = bound.tls.is_some();
    let context = HttpContext::new(bound.index, board.clone(), connections.clone(), access_log, tls);
    let http = Arc::new(context.draining(draining));
    loop {
        let accepted = tokio::select! {
            () = bound.stop.cancelled() => break,
            accepted = bound.socket.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(listener = %bound.name, %error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        // Latency matters more than packet count for a proxy; a failure here is harmless.
        let _ = stream.set_nodelay(true);
        match bound.protocol {
            Protocol::Tcp => {
                let entry = connections.register(Link::new(bound.index, peer));
                tracker.spawn(crate::tcp::relay(stream, peer, entry, board.clone()))
            }
            Protocol::Http => {
                tracker.spawn(serve_http(stream, peer, bound.tls.clone(), http.clone(), shutdown.clone()))
            }
        };
    }
    tracing::debug!(listener = %bound.name, "stopped accepting");
}

/// Serves one HTTP client connection, after the TLS handshake when the listener has TLS.
async fn serve_http(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    ctx: Arc<HttpContext>,
    shutdown: CancellationToken,
) {
    // Only a socket without an address (already closed) fails here; its serve fails too.
    let local = stream.local_addr().unwrap_or(peer);
    let Some(acceptor) = tls else {
        return serve_connection(stream, peer, local, ctx, shutdown).await;
    };
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => serve_connection(tls_stream, peer, local, ctx, shutdown).await,
        Ok(Err(error)) => tracing::debug!(client = %peer, %error, "TLS handshake failed"),
        Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
    }
}
