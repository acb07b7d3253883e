//! Listening sockets and their accept loops.
//!
//! All sockets are bound before the node reports itself started, so a port conflict
//! fails the start instead of surfacing later. Accept loops stop on shutdown, or alone
//! when a reload removes or restarts their listener (the socket may outlive its loop);
//! the connections they started are tracked so shutdown can wait for them. Everything a
//! client could make slow (the PROXY header, the TLS handshake) happens in the
//! connection's own task, never in the accept loop.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bunsan_config::{ListenerConfig, ListenerLimits, Protocol};
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::conn_limits::{PerClient, Slots};
use crate::connections::{ConnectionTable, Link};
use crate::error::NodeError;
use crate::http::{serve_connection, HttpContext};
use crate::metrics::{ListenerCounters, ListenerRegistry};
use crate::proxy_protocol::{self, Ends};
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
    accept_proxy: bool,
    limits: ListenerLimits,
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
    let (name, protocol, accept_proxy) = (config.name.clone(), config.protocol, config.accept_proxy);
    let (stop, limits) = (CancellationToken::new(), config.limits.clone());
    Ok(Bound { index, name, addr, protocol, socket, tls, accept_proxy, limits, stop })
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
    /// Every listener's counters, by name (kept across reloads).
    pub listener_counters: Arc<ListenerRegistry>,
    /// The node's connection slots (`[node] max_connections`).
    pub node_slots: Arc<Semaphore>,
}

/// Accepts connections until shutdown, handing each to a task of its own. Accepting
/// waits while the listener or the node is at its connection limit.
pub async fn accept_loop(bound: Bound, shared: Shared) {
    let (socket, stop, tracker) = (bound.socket.clone(), bound.stop.clone(), shared.tracker.clone());
    let listener = Listener::new(bound, shared);
    loop {
        let slots = tokio::select! {
            () = stop.cancelled() => break,
            slots = Slots::acquire(&listener.slots, &listener.node_slots) => slots,
        };
        let Some(slots) = slots else { break };
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = socket.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(listener = %listener.name, %error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Some(slots) = listener.admit(peer, slots) else { continue };
        // Latency matters more than packet count for a proxy; a failure here is harmless.
        let _ = stream.set_nodelay(true);
        tracker.spawn(listener.clone().serve(stream, peer, slots));
    }
    tracing::debug!(listener = %listener.name, "stopped accepting");
}

/// What every connection of one listener shares.
struct Listener {
    /// Connection slots of this listener (`limits.max_connections`).
    slots: Arc<Semaphore>,
    /// The node's connection slots.
    node_slots: Arc<Semaphore>,
    /// Connections per client address, when limited.
    per_client: Option<Arc<PerClient>>,
    index: usize,
    name: String,
    addr: SocketAddr,
    protocol: Protocol,
    tls: Option<TlsAcceptor>,
    accept_proxy: bool,
    counters: Arc<ListenerCounters>,
    http: Arc<HttpContext>,
    board: Arc<StateBoard>,
    connections: Arc<ConnectionTable>,
    shutdown: CancellationToken,
}

impl Listener {
    fn new(bound: Bound, shared: Shared) -> Arc<Self> {
        let Shared {
            board, connections, shutdown, access_log, draining, listener_counters, node_slots, ..
        } = shared;
        let Bound { index, name, addr, protocol, tls, accept_proxy, limits, .. } = bound;
        let counters = listener_counters.counters(&name);
        let context =
            HttpContext::new(index, board.clone(), connections.clone(), access_log, &limits, tls.is_some());
        let per_client = (limits.max_connections_per_client > 0)
            .then(|| PerClient::new(limits.max_connections_per_client));
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            node_slots,
            per_client,
            index,
            name,
            addr,
            protocol,
            tls,
            accept_proxy,
            counters,
            http: Arc::new(context.draining(draining)),
            board,
            connections,
            shutdown,
        })
    }

    /// The connection's slots, with its address's when addresses are limited; `None`
    /// (the connection is closed, and counted) when its address has no slot left.
    fn admit(&self, peer: SocketAddr, slots: Slots) -> Option<Slots> {
        let Some(per_client) = &self.per_client else { return Some(slots) };
        match per_client.admit(peer.ip()) {
            Some(slot) => Some(slots.with_client(slot)),
            None => {
                self.counters.refused_per_client.fetch_add(1, Relaxed);
                tracing::debug!(listener = %self.name, client = %peer, "too many connections from this address");
                None
            }
        }
    }

    /// Serves one accepted connection, first reading its PROXY header if the listener
    /// takes one. A connection whose header is missing, malformed or late is closed
    /// before anything is forwarded.
    async fn serve(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, _slots: Slots) {
        // A listener on a wildcard address learns the address the client reached here.
        let tcp = Ends { client: peer, local: stream.local_addr().unwrap_or(self.addr) };
        if !self.accept_proxy {
            return self.dispatch(stream, tcp).await;
        }
        // Boxed, like every path but plain HTTP: an async fn's state is as large as its
        // largest branch, and an idle plain connection should not pay for the others.
        Box::pin(self.serve_proxied(stream, tcp)).await
    }

    /// Reads the PROXY header, then serves the connection as its client.
    async fn serve_proxied(&self, stream: TcpStream, tcp: Ends) {
        let peer = tcp.client;
        let accepted = tokio::select! {
            () = self.shutdown.cancelled() => return,
            accepted = proxy_protocol::accept(stream, tcp) => accepted,
        };
        match accepted {
            Ok((stream, ends)) => self.dispatch(stream, ends).await,
            Err(error) => {
                self.counters.proxy_header_errors.fetch_add(1, Relaxed);
                tracing::debug!(listener = %self.name, client = %peer, %error, "PROXY header refused");
            }
        }
    }

    /// Hands the connection to its protocol, `ends.client` being the client everywhere
    /// (forwarding headers, client-ip affinity, the connection table).
    async fn dispatch<S>(&self, stream: S, ends: Ends)
    where
        S: AsyncRead + AsyncWrite + crate::tcp::ClientSocket + Unpin + Send + 'static,
    {
        match self.protocol {
            Protocol::Tcp => {
                let entry = self.connections.register(Link::new(self.index, ends.client));
                Box::pin(crate::tcp::relay(stream, ends, entry, self.board.clone())).await
            }
            Protocol::Http => {
                let (tls, http) = (self.tls.clone(), self.http.clone());
                serve_http(stream, ends, tls, http, self.shutdown.clone()).await
            }
        }
    }
}

/// Serves one HTTP client connection, after the TLS handshake when the listener has TLS.
async fn serve_http<S>(
    stream: S,
    ends: Ends,
    tls: Option<TlsAcceptor>,
    ctx: Arc<HttpContext>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (peer, local) = (ends.client, ends.local);
    let Some(acceptor) = tls else {
        return serve_connection(stream, peer, local, ctx, shutdown).await;
    };
    // Boxed: the handshake's result (a TLS stream, ~2 KiB) would otherwise widen every
    // plain connection's task too.
    Box::pin(serve_tls(stream, peer, local, acceptor, ctx, shutdown)).await
}

/// The TLS handshake, then the connection over TLS.
async fn serve_tls<S>(
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    acceptor: TlsAcceptor,
    ctx: Arc<HttpContext>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = Box::pin(tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)));
    match handshake.await {
        Ok(Ok(tls_stream)) => serve_connection(tls_stream, peer, local, ctx, shutdown).await,
        Ok(Err(error)) => tracing::debug!(client = %peer, %error, "TLS handshake failed"),
        Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
    }
}
