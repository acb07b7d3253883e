//! Upstream connections private to one client connection.
//!
//! A pool with `send_proxy` starts every server connection with a PROXY protocol header
//! naming the client, so such a connection may only ever carry that client's requests:
//! each client connection keeps its own, and it closes with the client connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bunsan_config::ProxyVersion;
use bunsan_proto::proxy_header::{ProxyHeader, Version};

use crate::server::Server;
use crate::upstream::Sender;

/// A client connection's own upstream connection (at most one, to the server it last
/// used).
#[derive(Debug, Default)]
pub struct PrivateConn {
    slot: Mutex<Option<(Arc<Server>, Sender)>>,
}

impl PrivateConn {
    /// The parked connection, if it goes to `server` and is still open. An HTTP/2 one
    /// stays parked (it is shared by this client's concurrent requests).
    pub(crate) fn take(&self, server: &Arc<Server>) -> Option<Sender> {
        let mut slot = self.slot.lock().ok()?;
        let (parked_for, sender) = slot.as_ref()?;
        if !Arc::ptr_eq(parked_for, server) || sender.is_closed() {
            *slot = None;
            return None;
        }
        match sender.share() {
            Some(shared) => Some(shared),
            None => slot.take().map(|(_, sender)| sender),
        }
    }

    /// Parks `sender`, a connection to `server`, replacing (and so closing) any other.
    pub(crate) fn put(&self, server: &Arc<Server>, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some((server.clone(), sender));
        }
    }
}

/// The PROXY protocol header naming `client` (and the node's `local` end it connected
/// to) that starts every connection to a server of a `send_proxy` pool.
pub(crate) fn proxy_header(version: ProxyVersion, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let version = match version {
        ProxyVersion::V1 => Version::V1,
        ProxyVersion::V2 => Version::V2,
    };
    ProxyHeader::tcp(client, local).encode(version)
}
