//! The node's listeners by name: binding (or adopting inherited sockets) at start, and a
//! reload's changes — new and moved listeners bound first, then every accept loop
//! restarted on its socket with the new settings, removed ones stopped.
//!
//! A listener keeps its socket while its address is unchanged, so a reload never closes
//! a listening socket that stays in the config, and never refuses a connection: while an
//! old accept loop stops and a new one starts, connections wait in the kernel's backlog.
//! Its id (what connections and the topology know it by) is kept while its name is.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bunsan_config::{Config, ListenerConfig};
use bunsan_proto::admin::ReloadSummary;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::NodeError;
use crate::listener::{accept_loop, adopt, bind_listener, Bound, Shared};

/// The running listeners.
#[derive(Debug, Default)]
pub struct Listeners {
    slots: Vec<Slot>,
    next_id: usize,
}

#[derive(Debug)]
struct Slot {
    id: usize,
    config: ListenerConfig,
    addr: SocketAddr,
    socket: Arc<TcpListener>,
    stop: CancellationToken,
}

/// A reload's listeners, bound and loaded but not yet serving.
pub struct Prepared {
    bound: Vec<(ListenerConfig, Bound)>,
    /// The id of each listener of the new config, in config order.
    pub ids: Vec<usize>,
}

/// Binds (or adopts from `inherited`) every listener of `config`; ids = config order.
pub fn bind_all(
    config: &Config,
    inherited: &mut HashMap<String, std::net::TcpListener>,
) -> Result<Vec<(ListenerConfig, Bound)>, NodeError> {
    let mut bound = Vec::with_capacity(config.listeners.len());
    for (id, listener) in config.listeners.iter().enumerate() {
        let socket = inherited.remove(&listener.name).map(adoptable(listener.listen)).transpose()?.flatten();
        let b = match socket {
            Some(socket) => {
                tracing::info!(listener = %listener.name, "adopting the listening socket of the old process");
                adopt(id, listener, Arc::new(socket), tls(listener)?)?
            }
            None => bind_listener(id, listener)?,
        };
        bound.push((listener.clone(), b));
    }
    Ok(bound)
}

/// Turns an inherited socket into a tokio one if it is bound where `want` says (port 0
/// matches any port: the old process's ephemeral port is the one clients know).
pub fn adoptable(
    want: SocketAddr,
) -> impl FnOnce(std::net::TcpListener) -> Result<Option<TcpListener>, NodeError> {
    move |socket| {
        let fail = |source| NodeError::Bind { what: "an inherited socket".into(), addr: want, source };
        let have = socket.local_addr().map_err(fail)?;
        if have.ip() != want.ip() || (want.port() != 0 && want.port() != have.port()) {
            tracing::info!(%have, %want, "not adopting an inherited socket: the address changed");
            return Ok(None);
        }
        socket.set_nonblocking(true).map_err(fail)?;
        TcpListener::from_std(socket).map(Some).map_err(fail)
    }
}

fn tls(config: &ListenerConfig) -> Result<Option<tokio_rustls::TlsAcceptor>, NodeError> {
    config.tls.as_ref().map(|files| crate::tls::acceptor(&config.name, files)).transpose()
}

impl Listeners {
    /// Starts an accept loop for each of `bound`, each stopped by a child of `parent`.
    pub fn start(bound: Vec<(ListenerConfig, Bound)>, shared: &Shared, parent: &CancellationToken) -> Self {
        let mut listeners = Self::default();
        listeners.spawn(bound, shared, parent);
        listeners
    }

    fn spawn(&mut self, bound: Vec<(ListenerConfig, Bound)>, shared: &Shared, parent: &CancellationToken) {
        for (config, mut b) in bound {
            b.stop = parent.child_token();
            tracing::info!(listener = %b.name, addr = %b.addr, "listening");
            self.next_id = self.next_id.max(b.index + 1);
            self.slots.push(Slot {
                id: b.index,
                config,
                addr: b.addr,
                socket: b.socket().clone(),
                stop: b.stop.clone(),
            });
            tokio::spawn(accept_loop(b, shared.clone()));
        }
    }

    /// Every listener's name and bound address.
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        self.slots.iter().map(|s| (s.config.name.clone(), s.addr)).collect()
    }

    /// Every listener's name and socket.
    pub fn sockets(&self) -> Vec<(String, Arc<TcpListener>)> {
        self.slots.iter().map(|s| (s.config.name.clone(), s.socket.clone())).collect()
    }

    /// Binds what `config` adds or moves and loads every listener's TLS files; changes
    /// nothing running, so a failure leaves the node as it was.
    pub fn prepare(&self, config: &Config) -> Result<Prepared, NodeError> {
        let mut next_id = self.next_id;
        let mut bound = Vec::with_capacity(config.listeners.len());
        let mut ids = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            let old = self.slots.iter().find(|s| s.config.name == listener.name);
            let id = old.map_or_else(|| post_increment(&mut next_id), |s| s.id);
            let b = match old.filter(|s| s.config.listen == listener.listen) {
                Some(slot) => adopt(id, listener, slot.socket.clone(), tls(listener)?)?,
                None => bind_listener(id, listener)?,
            };
            ids.push(id);
            bound.push((listener.clone(), b));
        }
        Ok(Prepared { bound, ids })
    }

    /// Stops the accept loops of listeners that `prepared` no longer has (before the new
    /// topology drops their routes).
    pub fn stop_removed(&self, prepared: &Prepared) {
        for slot in self.slots.iter().filter(|s| !prepared.ids.contains(&s.id)) {
            slot.stop.cancel();
        }
    }

    /// Switches to `prepared`: new accept loops on their sockets, the old ones stopped.
    /// Records what was added, removed and changed in `summary`.
    pub fn commit(
        &mut self,
        prepared: Prepared,
        shared: &Shared,
        parent: &CancellationToken,
        summary: &mut ReloadSummary,
    ) {
        for (config, _) in &prepared.bound {
            match self.slots.iter().find(|s| s.config.name == config.name) {
                None => summary.listeners_added.push(config.name.clone()),
                Some(old) if old.config != *config => summary.listeners_changed.push(config.name.clone()),
                Some(_) => {}
            }
        }
        for slot in std::mem::take(&mut self.slots) {
            if !prepared.ids.contains(&slot.id) {
                summary.listeners_removed.push(slot.config.name.clone());
            }
            slot.stop.cancel();
        }
        self.spawn(prepared.bound, shared, parent);
    }
}

fn post_increment(n: &mut usize) -> usize {
    *n += 1;
    *n - 1
}
