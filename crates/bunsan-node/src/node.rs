//! A running node: its listeners, admin API and background tasks, and their shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bunsan_config::{AffinityMode, Config};
use bunsan_proto::admin::PoolDetail;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminContext};
use crate::connections::ConnectionTable;
use crate::error::NodeError;
use crate::health::{Target, Transition};
use crate::listener::{accept_loop, bind, bind_listener, Shared};
use crate::state::Command;
use crate::state::StateBoard;
use crate::topology::Topology;

/// How often idle upstream connections and sessions past their timeouts are ended.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// A started node. Dropping it does not stop it; call [`Node::shutdown`].
#[derive(Debug)]
pub struct Node {
    board: Arc<StateBoard>,
    listeners: Vec<(String, SocketAddr)>,
    admin: Option<SocketAddr>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
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
        let board = Arc::new(StateBoard::new(Topology::from_config(config, session_key(config)?)?));
        let bound = config
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| bind_listener(i, l))
            .collect::<Result<Vec<_>, _>>()?;
        let admin = match &config.admin {
            Some(admin) => {
                let (socket, addr) = bind_admin(admin.listen)?;
                Some((socket, addr, admin.token.clone()))
            }
            None => None,
        };
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let connections = Arc::new(ConnectionTable::default());
        let shared = Shared {
            board: board.clone(),
            connections: connections.clone(),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
        };
        let listeners = bound.iter().map(|b| (b.name.clone(), b.addr)).collect();
        let listener_counters = bound.iter().map(|b| b.counters.clone()).collect();
        for b in bound {
            tracing::info!(listener = %b.name, addr = %b.addr, "listening");
            tokio::spawn(accept_loop(b, shared.clone()));
        }
        let listener_names = config.listeners.iter().map(|l| l.name.clone()).collect();
        let admin_addr = admin.map(|(socket, addr, token)| {
            let ctx = AdminContext {
                registry: crate::metrics::registry(board.clone(), listener_counters),
                board: board.clone(),
                token,
                connections,
                listeners: listener_names,
            };
            tokio::spawn(admin::serve(socket, Arc::new(ctx), tracker.clone(), shutdown.clone()));
            addr
        });
        start_health_checks(&board, &shutdown);
        if let Some(control) = &config.control {
            crate::control::spawn(control.clone(), board.clone(), shutdown.clone());
        }
        tokio::spawn(housekeeping(board.clone(), shutdown.clone()));
        Ok(Self { board, listeners, admin: admin_addr, tracker, shutdown })
    }

    /// The bound address of each listener, by name (port 0 resolved).
    pub fn listener_addrs(&self) -> &[(String, SocketAddr)] {
        &self.listeners
    }

    /// The admin API's bound address, if it has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Every pool with its servers' live status, as the admin API shows them.
    pub fn pools(&self) -> Vec<PoolDetail> {
        self.board.topology().pools.iter().map(|p| admin::view::pool_detail(p)).collect()
    }

    /// Stops accepting at once, lets connections finish their in-flight work for up to
    /// `deadline`, and reports whether they all did.
    pub async fn shutdown(self, deadline: Duration) -> Drained {
        self.shutdown.cancel();
        self.tracker.close();
        match tokio::time::timeout(deadline, self.tracker.wait()).await {
            Ok(()) => Drained::Completely,
            Err(_) => Drained::Abandoned(self.tracker.len()),
        }
    }
}

/// Binds the admin API's socket and learns its actual address.
fn bind_admin(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), NodeError> {
    let socket = bind(addr, "admin API")?;
    let bound =
        socket.local_addr().map_err(|source| NodeError::Bind { what: "admin API".into(), addr, source })?;
    tracing::info!(addr = %bound, "admin API listening");
    Ok((socket, bound))
}

/// Once a second: closes pooled upstream connections idle too long, ends sessions whose
/// clients have been gone longer than `idle_timeout` (or that outlived `max_lifetime`),
/// closing their connections, and re-admits servers whose ejection is over.
async fn housekeeping(board: Arc<StateBoard>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let topology = board.topology();
        for pool in &topology.pools {
            for server in &pool.servers {
                server.idle.reap();
            }
            if let Some(affinity) = &pool.affinity {
                affinity.table.sweep();
            }
            crate::outlier::readmit_due(&board, pool);
        }
    }
}

/// Starts active health checks for every pool that has them; their verdicts go to the
/// state board like every other input.
fn start_health_checks(board: &Arc<StateBoard>, shutdown: &CancellationToken) {
    for pool in &board.topology().pools {
        let Some(config) = pool.settings.health.clone() else { continue };
        let targets = pool.servers.iter().enumerate().map(|(index, server)| {
            let mut target = Target::new(
                pool.name.clone(),
                server.name.clone(),
                index,
                server.addr,
                server.addr_text.clone(),
            );
            target.counters = server.health.clone();
            target
        });
        let (board, pool_index) = (board.clone(), pool.index);
        let report = move |target: &Target, transition: Transition, _why: &str| {
            let up = transition == Transition::Up;
            if let Err(error) = board.apply_at(pool_index, target.index, Command::Health(up)) {
                tracing::warn!(pool = %target.pool, server = %target.server, %error, "cannot record a health check result");
            }
        };
        crate::health::spawn(targets.collect(), config, report, shutdown.clone());
    }
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
