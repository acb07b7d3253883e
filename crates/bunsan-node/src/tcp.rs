//! The layer-4 relay: pick a server, connect (moving on to the next server when a
//! connect fails), then copy bytes both ways until both directions have closed.
//!
//! Half-close is honoured: when one side finishes sending, the relay shuts down its
//! write half towards the other side and keeps copying the opposite direction. With
//! `client-ip` affinity a client keeps its server across connections; its session's idle
//! clock runs from the close of its last connection, and if its server cannot be reached
//! the session moves to the next one. A pool with `send_proxy` gets a PROXY header naming
//! the client before any relayed byte.
//!
//! Bytes move through kernel pipes (`splice`, see [`crate::splice`]) and never enter
//! user space; a process that cannot make pipes (out of descriptors) copies instead.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use tokio::io::{copy_bidirectional, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::affinity::{Affinity, Decision};
use crate::connections::{Link, Registration};
use crate::http::key::ip_key;
use crate::outlier::{self, Verdict};
use crate::proxy_protocol::{self, Ends, Rewind};
use crate::server::InFlight;
use crate::session::ClientSessions;
use crate::splice::Pipes;
use crate::state::StateBoard;
use crate::topology::Pool;
use crate::upstream::{connect_tcp, Sender};

/// A client stream the relay can take down to its socket.
pub trait ClientSocket {
    /// The bytes already read from the client and not yet relayed, and the socket.
    fn into_socket(self) -> (Bytes, TcpStream);
}

impl ClientSocket for TcpStream {
    fn into_socket(self) -> (Bytes, TcpStream) {
        (Bytes::new(), self)
    }
}

impl ClientSocket for Rewind<TcpStream> {
    fn into_socket(self) -> (Bytes, TcpStream) {
        self.into_parts()
    }
}

/// Relays one accepted client connection, whose real ends are `ends`; `entry` is its
/// place in the connection table (it leaves the table when the relay ends).
pub async fn relay(client: impl ClientSocket, ends: Ends, entry: Registration, board: Arc<StateBoard>) {
    let (early, mut client) = client.into_socket();
    let (link, peer) = (&entry.link, ends.client);
    let Some(pool) = board.topology().pool_for_listener(link.listener).cloned() else { return };
    // Lives as long as the relay: dropping it detaches the client's session.
    let sessions = ClientSessions::new();
    let target = Target { pool: &pool, board: &board, link, peer };
    let Some((mut upstream, in_flight)) = target.connect_any(&sessions).await else {
        tracing::warn!(pool = %pool.name, client = %peer, "no server could take the TCP connection");
        return;
    };
    if let Some(version) = pool.settings.send_proxy {
        if let Err(error) = upstream.write_all(&proxy_protocol::encode(&ends, version)).await {
            tracing::debug!(client = %peer, %error, "writing the PROXY header to the server failed");
            return;
        }
    }
    if let Err(error) = upstream.write_all(&early).await {
        tracing::debug!(client = %peer, %error, "relaying the client's first bytes failed");
        return;
    }
    let counters = &in_flight.server().counters;
    counters.bytes_to_server.fetch_add(early.len() as u64, Relaxed);
    let moved = match Pipes::new() {
        Ok(pipes) => pipes.relay(&client, &upstream).await,
        Err(error) => {
            tracing::debug!(client = %peer, %error, "no pipes for a zero-copy relay; copying");
            copy_bidirectional(&mut client, &mut upstream).await
        }
    };
    match moved {
        Ok((to_server, to_client)) => {
            counters.bytes_to_server.fetch_add(to_server, Relaxed);
            counters.bytes_to_client.fetch_add(to_client, Relaxed);
        }
        Err(error) => tracing::debug!(client = %peer, %error, "TCP relay ended with an error"),
    }
}

/// One client connection looking for a server.
struct Target<'a> {
    pool: &'a Pool,
    board: &'a StateBoard,
    link: &'a Link,
    peer: SocketAddr,
}

impl Target<'_> {
    /// Connects to the client's session server if it has one, else to a server the
    /// balancer picks, trying each eligible server at most once.
    async fn connect_any(&self, sessions: &ClientSessions<u32, Sender>) -> Option<(TcpStream, InFlight)> {
        let pool = self.pool;
        let affinity = pool.affinity.as_ref();
        let decision = affinity
            .map(|a| a.resolve(&pool.name, &pool.servers, &HeaderMap::new(), self.peer.ip(), sessions));
        let mut tried = Vec::new();
        let mut moving = None;
        match decision {
            Some(Decision::Continue { key, server, .. }) => match self.connect_to(server).await {
                Some(connected) => return Some(connected),
                None => {
                    tried.push(server);
                    moving = Some(key);
                }
            },
            Some(Decision::Move { key, .. }) => moving = Some(key),
            _ => {}
        }
        let key = Some(ip_key(self.peer.ip()));
        while let Some(index) = pool.choose(key, &tried) {
            if let Some(connected) = self.connect_to(index).await {
                if let Some(affinity) = affinity {
                    self.bind_session(affinity, moving, index, sessions);
                }
                return Some(connected);
            }
            tried.push(index);
        }
        pool.counters.no_server.fetch_add(1, Relaxed);
        None
    }

    /// Moves the client's session to server `index`, or starts one there.
    fn bind_session(
        &self,
        affinity: &Affinity,
        moving: Option<[u8; 16]>,
        index: usize,
        sessions: &ClientSessions<u32, Sender>,
    ) {
        let pool = self.pool;
        let name = &pool.servers[index].name;
        let moved = moving.and_then(|key| affinity.moved(&pool.name, key, None, index, name, false));
        if moved.is_none() {
            affinity.start(&pool.name, index, name, self.peer.ip(), false, sessions);
        }
    }

    /// Connects to server `index`, counting the outcome for metrics, passive detection
    /// and the connection table (a failed server re-points the client's entry).
    async fn connect_to(&self, index: usize) -> Option<(TcpStream, InFlight)> {
        let pool = self.pool;
        let in_flight = pool.servers.get(index)?.begin();
        let server = in_flight.server();
        if self.link.association().is_some() {
            self.link.failovers.fetch_add(1, Relaxed);
        }
        self.link.associate(pool.index, index);
        match connect_tcp(server.addr, pool.settings.connect_timeout).await {
            Ok(stream) => {
                server.counters.connections_opened.fetch_add(1, Relaxed);
                server.counters.requests_total.fetch_add(1, Relaxed);
                self.link.requests.fetch_add(1, Relaxed);
                outlier::record(self.board, pool, index, Verdict::Healthy);
                Some((stream, in_flight))
            }
            Err(error) => {
                server.counters.connect_errors.fetch_add(1, Relaxed);
                tracing::warn!(pool = %pool.name, server = %server.name, %error, "upstream connect failed");
                outlier::record(self.board, pool, index, Verdict::Failed);
                None
            }
        }
    }
}
