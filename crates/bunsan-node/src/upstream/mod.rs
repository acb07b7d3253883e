//! Upstream connections: bunsan's own keep-alive pool over hyper's `client::conn`.
//!
//! HTTP/1.1: each server keeps a lock-free queue of idle connections. A request leases
//! one (or opens a new one), and the response body hands it back once the exchange has
//! ended cleanly; anything else (an error, a client that went away mid-body) drops it,
//! which closes it, so a connection is never reused in an unknown state.
//!
//! HTTP/2 (h2c, h2): one multiplexed connection per server carries every request; it
//! is replaced when it closes (GOAWAY, error) and shared again.

mod connect;
mod sender;

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bunsan_config::UpstreamProtocol;
use crossbeam_queue::ArrayQueue;

pub(crate) use connect::{connect, connect_tcp, Dial};
pub use sender::Sender;

/// Why no connection to a server could be had. Nothing reached the server in any of
/// these cases, so the request may always go to another server.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The connection was not ready within the pool's `connect_timeout`.
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
    /// The PROXY protocol header could not be written.
    #[error("sending the PROXY protocol header to {addr} failed: {source}")]
    ProxyHeader {
        /// The server's address.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// No TLS server name: `upstream_tls.server_name` is unset and the server's address
    /// has no usable host part.
    #[error("no TLS server name for {addr} (address {name:?}); set upstream_tls.server_name")]
    ServerName {
        /// The server's address.
        addr: SocketAddr,
        /// The address as written.
        name: String,
    },
    /// The TLS handshake failed (certificate not trusted, name mismatch, …).
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        /// The server's address.
        addr: SocketAddr,
        /// The TLS error.
        source: io::Error,
    },
    /// The server negotiated another protocol than the pool's `upstream`.
    #[error("{addr} negotiated ALPN protocol {got:?}, not the pool's upstream protocol")]
    Alpn {
        /// The server's address.
        addr: SocketAddr,
        /// What it chose.
        got: String,
    },
    /// The HTTP client handshake failed.
    #[error("HTTP handshake with {addr} failed: {source}")]
    Handshake {
        /// The server's address.
        addr: SocketAddr,
        /// hyper's error.
        source: hyper::Error,
    },
}

/// Idle keep-alive connections to one server, and its shared HTTP/2 connection.
#[derive(Debug)]
pub(crate) struct IdlePool {
    queue: Option<ArrayQueue<Idle>>,
    idle_timeout: Duration,
    shared: Mutex<Option<Sender>>,
    /// Held while a shared connection is being opened, so that a burst of requests
    /// at a cold start waits for one connection instead of each opening its own.
    opening: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Idle {
    sender: Sender,
    since: Instant,
}

impl IdlePool {
    /// A pool keeping at most `max_idle` HTTP/1.1 connections (0 disables reuse), each
    /// for at most `idle_timeout`.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        let queue = (max_idle > 0).then(|| ArrayQueue::new(max_idle));
        Self { queue, idle_timeout, shared: Mutex::new(None), opening: tokio::sync::Mutex::new(()) }
    }

    /// Returns a connection after a clean exchange. Full pool or closed connection:
    /// it is dropped (and so closed). A shared connection stays shared; this handle on
    /// it is simply dropped.
    pub fn put(&self, sender: Sender) {
        if sender.is_closed() || sender.is_shared() {
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

    /// A handle on the shared HTTP/2 connection, if it is still open.
    fn take_shared(&self) -> Option<Sender> {
        let mut slot = self.shared.lock().ok()?;
        match slot.as_ref() {
            Some(sender) if !sender.is_closed() => sender.share(),
            _ => {
                *slot = None;
                None
            }
        }
    }

    /// Makes `sender` the connection shared by later requests (when it is HTTP/2).
    fn set_shared(&self, sender: &Sender) {
        if let (Some(shared), Ok(mut slot)) = (sender.share(), self.shared.lock()) {
            *slot = Some(shared);
        }
    }

    /// Closes connections idle past the timeout, and forgets a closed shared one. Runs
    /// periodically off the request path.
    pub fn reap(&self) {
        drop(self.take_shared());
        let Some(queue) = &self.queue else { return };
        for _ in 0..queue.len() {
            let Some(idle) = queue.pop() else { break };
            if !idle.sender.is_closed() && idle.since.elapsed() < self.idle_timeout {
                let _full = queue.push(idle);
            }
        }
    }

    /// Closes every idle connection and forgets the shared one (after a reload changed
    /// how connections to the server are made).
    pub fn clear(&self) {
        if let Ok(mut slot) = self.shared.lock() {
            *slot = None;
        }
        while self.queue.as_ref().and_then(ArrayQueue::pop).is_some() {}
    }

    /// Idle connections held now (a shared HTTP/2 connection counts as one).
    pub fn len(&self) -> usize {
        let shared = self.shared.lock().map_or(0, |slot| usize::from(slot.is_some()));
        self.queue.as_ref().map_or(0, ArrayQueue::len) + shared
    }
}

/// A connection ready to carry one request, and whether it was reused from the pool.
pub(crate) struct Lease {
    pub sender: Sender,
    pub reused: bool,
}

/// Leases a connection to the server `dial` describes: the shared HTTP/2 one or an idle
/// pooled HTTP/1.1 one when there is one still alive, else a new one.
pub(crate) async fn lease(idle: &IdlePool, dial: Dial<'_>) -> Result<Lease, ConnectError> {
    if let Some(sender) = idle.take_shared() {
        return Ok(Lease { sender, reused: true });
    }
    if dial.settings.upstream != UpstreamProtocol::Http1 {
        return lease_shared(idle, dial).await;
    }
    while let Some(mut sender) = idle.take() {
        // A returned connection becomes ready as soon as its task has seen the end of the
        // previous exchange; a dead one answers with an error and is dropped.
        if sender.ready().await.is_ok() {
            return Ok(Lease { sender, reused: true });
        }
    }
    let sender = connect(dial).await?;
    Ok(Lease { sender, reused: false })
}

/// The shared HTTP/2 connection, opened by one request while the others wait for it.
/// Waiting counts against the connect timeout, so a server that cannot be reached costs
/// each request at most that long.
async fn lease_shared(idle: &IdlePool, dial: Dial<'_>) -> Result<Lease, ConnectError> {
    let (addr, timeout) = (dial.addr, dial.settings.connect_timeout);
    let started = tokio::time::Instant::now();
    let _opening = tokio::time::timeout(timeout, idle.opening.lock())
        .await
        .map_err(|_| ConnectError::Timeout { addr, timeout })?;
    if let Some(sender) = idle.take_shared() {
        return Ok(Lease { sender, reused: true });
    }
    let left = timeout.saturating_sub(started.elapsed());
    let sender = tokio::time::timeout(left, connect(dial))
        .await
        .map_err(|_| ConnectError::Timeout { addr, timeout })??;
    idle.set_shared(&sender);
    Ok(Lease { sender, reused: false })
}
