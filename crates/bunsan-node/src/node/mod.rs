//! A running node: its listeners, admin API and background tasks, their reload and
//! their shutdown.

mod background;
mod listeners;
mod reload;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bunsan_config::{AffinityMode, Config};
use bunsan_proto::admin::{PoolDetail, ReloadSummary};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access_log::AccessLog;
use crate::admin::{self, AdminContext};
use crate::connections::ConnectionTable;
use crate::error::NodeError;
use crate::listener::{bind, Shared};
use crate::state::StateBoard;
use crate::topology::Topology;
use listeners::Listeners;

/// The name under which the admin API's socket is handed to a new process (listener
/// names cannot contain brackets, so it never clashes with one).
pub const ADMIN_SOCKET: &str = "[admin]";

/// A started node. Dropping it does not stop it; call [`Node::shutdown`].
#[derive(Debug)]
pub struct Node {
    inner: Arc<Inner>,
}

/// A cheap handle on a running node, for whoever reloads it or hands it over (the admin
/// API, signal handlers, the upgrade socket).
#[derive(Debug, Clone)]
pub struct NodeHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    board: Arc<StateBoard>,
    admin: Option<(SocketAddr, Arc<TcpListener>)>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Parent of every accept loop's token (listeners and admin); a child of `shutdown`.
    accepting: CancellationToken,
    /// See [`Shared::draining`].
    draining: CancellationToken,
    connections: Arc<ConnectionTable>,
    /// The access log (retargeted by reloads).
    access_log: Arc<AccessLog>,
    /// Every listener's counters, by name.
    listener_counters: Arc<crate::metrics::ListenerRegistry>,
    /// Connection slots over all listeners (`[node] max_connections`; fixed at start).
    node_slots: Arc<tokio::sync::Semaphore>,
    config_path: Option<PathBuf>,
    /// What reloads change; the lock serialises them.
    running: tokio::sync::Mutex<Running>,
    /// The listeners' bound addresses, readable without waiting for a reload.
    addrs: Mutex<Vec<(String, SocketAddr)>>,
}

/// The parts of a node that a reload replaces.
#[derive(Debug)]
struct Running {
    config: Config,
    session_key: Option<Arc<bunsan_core::SessionKey>>,
    listeners: Listeners,
    background: background::Background,
}

/// How a node starts, beyond its config.
#[derive(Debug, Default)]
pub struct StartOptions {
    /// The config file, which [`NodeHandle::reload`] reads again.
    pub config_path: Option<PathBuf>,
    /// Listening sockets taken over from an older process, by listener name (and
    /// [`ADMIN_SOCKET`]); each is used if its address fits the config, else closed.
    pub inherited: HashMap<String, std::net::TcpListener>,
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished within the deadline.
    Completely,
    /// The deadline passed with this many connections still open (they are dropped).
    Abandoned(usize),
}

impl Node {
    /// Binds every listener and the admin API, then starts serving. Must run inside a
    /// tokio runtime. Fails without serving anything if any socket or TLS file fails.
    pub async fn start(config: &Config) -> Result<Self, NodeError> {
        Self::start_with(config, StartOptions::default()).await
    }

    /// Like [`Node::start`], knowing its config file and adopting inherited sockets.
    pub async fn start_with(config: &Config, mut options: StartOptions) -> Result<Self, NodeError> {
        let session_key = session_key(config)?;
        let board = Arc::new(StateBoard::new(Topology::from_config(config, session_key.clone())?));
        let bound = listeners::bind_all(config, &mut options.inherited)?;
        let admin = match &config.admin {
            Some(admin) => Some(bind_admin(admin.listen, options.inherited.remove(ADMIN_SOCKET))?),
            None => None,
        };
        let shutdown = CancellationToken::new();
        let inner = Arc::new(Inner {
            board: board.clone(),
            admin: admin.clone(),
            tracker: TaskTracker::new(),
            accepting: shutdown.child_token(),
            draining: CancellationToken::new(),
            shutdown,
            connections: Arc::new(ConnectionTable::default()),
            access_log: Arc::new(AccessLog::new(config.node.access_log.clone())),
            listener_counters: Arc::default(),
            node_slots: Arc::new(tokio::sync::Semaphore::new(config.node.max_connections)),
            config_path: options.config_path,
            running: tokio::sync::Mutex::new(Running {
                config: config.clone(),
                session_key,
                listeners: Listeners::default(),
                background: background::Background::default(),
            }),
            addrs: Mutex::default(),
        });
        let mut running = inner.running.lock().await;
        running.listeners = Listeners::start(bound, &inner.shared(), &inner.accepting);
        inner.publish_addrs(&running.listeners);
        running.background = background::Background::start(config, &board, &inner.shutdown);
        drop(running);
        if let (Some((_, socket)), Some(settings)) = (admin, &config.admin) {
            inner.serve_admin(socket, settings.token.clone());
        }
        tokio::spawn(background::housekeeping(board, inner.shutdown.clone()));
        Ok(Self { inner })
    }

    /// A handle for reloading or handing over this node from elsewhere.
    pub fn handle(&self) -> NodeHandle {
        NodeHandle { inner: self.inner.clone() }
    }

    /// The bound address of each listener, by name (port 0 resolved).
    pub fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.handle().listener_addrs()
    }

    /// The admin API's bound address, if it has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.inner.admin.as_ref().map(|(addr, _)| *addr)
    }

    /// Every pool with its servers' live status, as the admin API shows them.
    pub fn pools(&self) -> Vec<PoolDetail> {
        self.inner.board.topology().pools.iter().map(|p| admin::view::pool_detail(p)).collect()
    }

    /// Re-reads the config file and applies it; see [`NodeHandle::reload`].
    pub async fn reload(&self) -> Result<ReloadSummary, NodeError> {
        self.handle().reload().await
    }

    /// Stops accepting at once, lets connections finish their in-flight work for up to
    /// `deadline`, and reports whether they all did.
    pub async fn shutdown(self, deadline: Duration) -> Drained {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        match tokio::time::timeout(deadline, self.inner.tracker.wait()).await {
            Ok(()) => Drained::Completely,
            Err(_) => Drained::Abandoned(self.inner.tracker.len()),
        }
    }

    /// After another process took the sockets over: stops accepting, asks HTTP/1.1
    /// clients to close after their next response for `grace` (so none is cut between
    /// two requests), then shuts down like [`Node::shutdown`].
    pub async fn hand_over(self, grace: Duration, deadline: Duration) -> Drained {
        self.inner.accepting.cancel();
        self.inner.draining.cancel();
        tokio::time::sleep(grace).await;
        self.shutdown(deadline).await
    }
}

impl NodeHandle {
    /// The bound address of each listener, by name (port 0 resolved).
    pub fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.inner.addrs.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Every listening socket (listeners by name, and [`ADMIN_SOCKET`]), to hand to a
    /// new process.
    pub async fn sockets(&self) -> Vec<(String, Arc<TcpListener>)> {
        let running = self.inner.running.lock().await;
        let mut sockets = running.listeners.sockets();
        if let Some((_, admin)) = &self.inner.admin {
            sockets.push((ADMIN_SOCKET.to_owned(), admin.clone()));
        }
        sockets
    }
}

impl Inner {
    fn shared(&self) -> Shared {
        Shared {
            board: self.board.clone(),
            connections: self.connections.clone(),
            tracker: self.tracker.clone(),
            shutdown: self.shutdown.clone(),
            draining: self.draining.clone(),
            access_log: self.access_log.clone(),
            listener_counters: self.listener_counters.clone(),
            node_slots: self.node_slots.clone(),
        }
    }

    fn publish_addrs(&self, listeners: &Listeners) {
        if let Ok(mut addrs) = self.addrs.lock() {
            *addrs = listeners.addrs();
        }
    }

    fn serve_admin(self: &Arc<Self>, socket: Arc<TcpListener>, token: Option<bunsan_config::Secret>) {
        let ctx = AdminContext {
            registry: crate::metrics::registry(self.board.clone(), self.listener_counters.clone()),
            board: self.board.clone(),
            token,
            connections: self.connections.clone(),
            node: Some(NodeHandle { inner: self.clone() }),
        };
        let (tracker, stop, shutdown) = (self.tracker.clone(), self.accepting.clone(), self.shutdown.clone());
        tokio::spawn(admin::serve(socket, Arc::new(ctx), tracker, stop, shutdown));
    }
}

/// The admin API's socket: the inherited one if its address fits, else a new one.
fn bind_admin(
    addr: SocketAddr,
    inherited: Option<std::net::TcpListener>,
) -> Result<(SocketAddr, Arc<TcpListener>), NodeError> {
    let fail = |source| NodeError::Bind { what: "admin API".into(), addr, source };
    let socket = match inherited.map(listeners::adoptable(addr)).transpose()?.flatten() {
        Some(socket) => socket,
        None => bind(addr, "admin API")?,
    };
    let bound = socket.local_addr().map_err(fail)?;
    tracing::info!(addr = %bound, "admin API listening");
    Ok((bound, Arc::new(socket)))
}

/// The key that signs session identifiers, loaded (or created) only when some pool
/// issues identifiers.
fn session_key(config: &Config) -> Result<Option<Arc<bunsan_core::SessionKey>>, NodeError> {
    let signs =
        config.pools.iter().filter_map(|p| p.affinity.as_ref()).any(|a| a.mode != AffinityMode::ClientIp);
    if !signs {
        return Ok(None);
    }
    crate::session_key::load(&config.node.session_key).map(|key| Some(Arc::new(key)))
}

/// Checks what a config needs beyond its own validation (certificate and key files load
/// and match) without binding anything; `bunsan check` runs it.
pub fn preflight(config: &Config) -> Result<(), NodeError> {
    Topology::from_config(config, None)?;
    for listener in &config.listeners {
        if let Some(files) = &listener.tls {
            crate::tls::acceptor(&listener.name, files)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
