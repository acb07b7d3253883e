//! The layer-4 relay: pick a server, connect (moving on to the next server when a
//! connect fails), then copy bytes both ways until both directions have closed.
//!
//! Half-close is honoured: when one side finishes sending, the relay shuts down its
//! write half towards the other side and keeps copying the opposite direction.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::io::copy_bidirectional;
use tokio::net::TcpStream;

use crate::http::key::ip_key;
use crate::server::InFlight;
use crate::state::StateBoard;
use crate::topology::Pool;
use crate::upstream::connect_tcp;

/// Relays one accepted client connection for listener `listener`.
pub async fn relay(mut client: TcpStream, peer: SocketAddr, listener: usize, board: Arc<StateBoard>) {
    let Some(pool) = board.topology().pool_for_listener(listener).cloned() else { return };
    let Some((mut upstream, in_flight)) = connect_any(&pool, peer).await else {
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

/// Connects to a server of `pool`, trying each eligible server at most once.
async fn connect_any(pool: &Pool, peer: SocketAddr) -> Option<(TcpStream, InFlight)> {
    let key = Some(ip_key(peer.ip()));
    let mut tried = Vec::new();
    while let Some(index) = pool.pick(key, &tried) {
        let in_flight = pool.servers[index].begin();
        let server = in_flight.server();
        match connect_tcp(server.addr, pool.settings.connect_timeout).await {
            Ok(stream) => {
                server.counters.connections_opened.fetch_add(1, Relaxed);
                server.counters.requests_total.fetch_add(1, Relaxed);
                return Some((stream, in_flight));
            }
            Err(error) => {
                server.counters.connect_errors.fetch_add(1, Relaxed);
                tracing::warn!(pool = %pool.name, server = %server.name, %error, "upstream connect failed");
                tried.push(index);
            }
        }
    }
    pool.counters.no_server.fetch_add(1, Relaxed);
    None
}
