//! The layer-4 relay: pick a server, connect (moving on to the next server when a
//! connect fails), then copy bytes both ways until both directions have closed.
//!
//! Half-close is honoured: when one side finishes sending, the relay shuts down its
//! write half towards the other side and keeps copying the opposite direction. With
//! `client-ip` affinity a client keeps its server across connections; its session's idle
//! clock runs from the close of its last connection.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use http::HeaderMap;
use tokio::io::copy_bidirectional;
use tokio::net::TcpStream;

use crate::affinity::Decision;
use crate::http::key::ip_key;
use crate::server::InFlight;
use crate::session::ClientSessions;
use crate::state::StateBoard;
use crate::topology::Pool;
use crate::upstream::{connect_tcp, Sender};

/// Relays one accepted client connection for listener `listener`.
pub async fn relay(mut client: TcpStream, peer: SocketAddr, listener: usize, board: Arc<StateBoard>) {
    let Some(pool) = board.topology().pool_for_listener(listener).cloned() else { return };
    // Lives as long as the relay: dropping it detaches the client's session.
    let sessions = ClientSessions::new();
    let Some((mut upstream, in_flight)) = connect_any(&pool, peer, &sessions).await else {
        tracing::warn!(pool = %pool.name, client = %peer, "no server could take the TCP connection");
        return;
    };
    let counters = &in_flight.server().counters;
    match copy_bidirectional(&mut client, &mut upstream).await {
        Ok((to_server, to_client)) => {
            counters.bytes_to_server.fetch_add(to_server, Relaxed);
            counters.bytes_to_client.fetch_add(to_client, Relaxed);
        }
        Err(error) => tracing::debug!(client = %peer, %error, "TCP relay ended with an error"),
    }
}

/// Connects to the client's session server if it has one, else to a server the balancer
/// picks, trying each eligible server at most once.
async fn connect_any(
    pool: &Pool,
    peer: SocketAddr,
    sessions: &ClientSessions<u32, Sender>,
) -> Option<(TcpStream, InFlight)> {
    let mut tried = Vec::new();
    let affinity = pool.affinity.as_ref();
    let decision =
        affinity.map(|a| a.resolve(&pool.name, &pool.servers, &HeaderMap::new(), peer.ip(), sessions));
    if let (Some(Decision::Continue { key, server }), Some(affinity)) = (decision, affinity) {
        if let Some(connected) = connect_to(pool, server).await {
            return Some(connected);
        }
        affinity.table.invalidate(&key);
        tried.push(server);
    }
    let key = Some(ip_key(peer.ip()));
    while let Some(index) = pool.pick(key, &tried) {
        if let Some(connected) = connect_to(pool, index).await {
            if let Some(affinity) = affinity {
                let name = &pool.servers[index].name;
                affinity.start(&pool.name, index, name, peer.ip(), false, sessions);
            }
            return Some(connected);
        }
        tried.push(index);
    }
    pool.counters.no_server.fetch_add(1, Relaxed);
    None
}

/// Connects to server `index` of `pool`, counting the outcome.
async fn connect_to(pool: &Pool, index: usize) -> Option<(TcpStream, InFlight)> {
    let in_flight = pool.servers.get(index)?.begin();
    let server = in_flight.server();
    match connect_tcp(server.addr, pool.settings.connect_timeout).await {
        Ok(stream) => {
            server.counters.connections_opened.fetch_add(1, Relaxed);
            server.counters.requests_total.fetch_add(1, Relaxed);
            Some((stream, in_flight))
        }
        Err(error) => {
            server.counters.connect_errors.fetch_add(1, Relaxed);
            tracing::warn!(pool = %pool.name, server = %server.name, %error, "upstream connect failed");
            None
        }
    }
}
