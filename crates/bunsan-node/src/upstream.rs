//! Upstream connections: bunsan's own keep-alive pool over hyper's `client::conn::http1`.
//!
//! Each server keeps a lock-free queue of idle connections. A request leases one (or
//! opens a new one), and the response body hands it back once the exchange has ended
//! cleanly; anything else (an error, a client that went away mid-body) drops it, which
//! closes it, so a connection is never reused in an unknown state.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::http::body::ForwardBody;

/// The sending half of one upstream HTTP/1.1 connection.
pub(crate) type Sender = http1::SendRequest<ForwardBody>;

/// Why no connection to a server could be had. Nothing reached the server in any of
/// these cases, so the request may always go to another server.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connect did not finish within the pool's `connect_timeout`.
    #[error("connect to {addr} timed out after {timeout:?}")]
    Timeout {
        /// The server's address.
        addr: SocketAddr,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The TCP connect failed (refused, unreachable, …).
    #[error("connect to {addr} failed: {source}")]
    Io {
        /// The server's address.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// The HTTP/1 client handshake failed.
    #[error("HTTP handshake with {addr} failed: {source}")]
    Handshake {
        /// The server's address.
        addr: SocketAddr,
        /// hyper's error.
        source: hyper::Error,
    },
}

/// Idle keep-alive connections to one server.
#[derive(Debug)]
pub(crate) struct IdlePool {
    queue: Option<ArrayQueue<Idle>>,
    idle_timeout: Duration,
}

#[derive(Debug)]
struct Idle {
    sender: Sender,
    since: Instant,
}

impl IdlePool {
    /// A pool keeping at most `max_idle` connections (0 disables reuse), each for at
    /// most `idle_timeout`.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        let queue = (max_idle > 0).then(|| ArrayQueue::new(max_idle));
        Self { queue, idle_timeout }
    }

    /// Returns a connection after a clean exchange. Full pool or closed connection:
    /// it is dropped (and so closed).
    pub fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        if let Some(queue) = &self.queue {
            let _full = queue.push(Idle { sender, since: Instant::now() });
        }
    }

    /// Takes a usable idle connection, dropping expired or closed ones on the way.
    fn take(&self) -> Option<Sender> {
        let queue = self.queue.as_ref()?;
        while let Some(idle) = queue.pop() {
            if !idle.sender.is_closed() && idle.since.elapsed() < self.idle_timeout {
                return Some(idle.sender);
            }
        }
        None
    }

    /// Closes connections idle past the timeout. Runs periodically off the request path.
    pub fn reap(&self) {
        let Some(queue) = &self.queue else { return };
        for _ in 0..queue.len() {
            let Some(idle) = queue.pop() else { break };
            if !idle.sender.is_closed() && idle.since.elapsed() < self.idle_timeout {
                let _full = queue.push(idle);
            }
        }
    }

    /// Idle connections held now.
    pub fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, ArrayQueue::len)
    }
}

/// A connection ready to carry one request, and whether it was reused from the pool.
pub(crate) struct Lease {
    pub sender: Sender,
    pub reused: bool,
}

/// Leases a connection to `addr`: an idle pooled one when there is one that is still
/// alive, else a new one.
pub(crate) async fn lease(
    idle: &IdlePool,
    addr: SocketAddr,
    connect_timeout: Duration,
) -> Result<Lease, ConnectError> {
    while let Some(mut sender) = idle.take() {
        // A returned connection becomes ready as soon as its task has seen the end of the
        // previous exchange; a dead one answers with an error and is dropped.
        if sender.ready().await.is_ok() {
            return Ok(Lease { sender, reused: true });
        }
    }
    let sender = connect(addr, connect_timeout).await?;
    Ok(Lease { sender, reused: false })
}

/// Opens a new HTTP/1.1 connection and drives it on its own task.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, ConnectError> {
    let stream = connect_tcp(addr, timeout).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Opens a TCP connection with `TCP_NODELAY` set.
pub(crate) async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout { addr, timeout })?
        .map_err(|source| ConnectError::Io { addr, source })?;
    // Latency matters more than packet count for a proxy; a failure here is harmless.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
