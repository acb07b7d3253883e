//! The one place that decides a server's effective state.
//!
//! Inputs: an operator's pin, on this node or at the control plane; the administrative
//! state (from config, or set by an operator without a pin); active health checks;
//! passive detection (ejection); the control plane's reports. The rule:
//!
//! 1. a pin wins over everything until it is released — this node's first, then one
//!    made at the control plane (seed 001 claim 5);
//! 2. `maint` (administrative) holds whatever the checks say;
//! 3. a server ejected by passive detection is `down`; so is one found down by health
//!    checks — or, in a pool without health checks, reported down by the control plane
//!    (pin > health > report);
//! 4. otherwise the administrative state applies (`ready` or `drain`).
//!
//! Every change is logged, counted, applied to the server's atomic state, and published
//! as a new topology snapshot with the pool's selector rebuilt.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bunsan_core::ServerState;

use crate::server::{Control, Server};
use crate::topology::Topology;

/// Why a state change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// No pool of that name.
    #[error("no pool named {0:?}")]
    UnknownPool(String),
    /// No server of that name in the pool.
    #[error("no server named {server:?} in pool {pool:?}")]
    UnknownServer {
        /// The pool.
        pool: String,
        /// The server name asked for.
        server: String,
    },
    /// Operators set `ready`, `drain` or `maint`; `down` belongs to health checks.
    #[error("state {0} cannot be set by an operator (use ready, drain or maint)")]
    NotSettable(ServerState),
}

/// Owns every write to server states and the topology snapshot.
#[derive(Debug)]
pub struct StateBoard {
    topology: ArcSwap<Topology>,
    /// Serialises writers so that two changes never rebuild from the same old snapshot.
    writer: Mutex<()>,
}

/// A change to one of a server's state inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// An operator sets the administrative state (`ready`, `drain`, `maint`).
    Set(ServerState),
    /// An operator pins the state until released.
    Pin(ServerState),
    /// An operator releases a pin.
    Release,
    /// Active health checks: up (`true`) or down.
    Health(bool),
    /// Passive detection ejects (`true`) or re-admits the server.
    Eject(bool),
    /// The control plane's row for the server: a pin made there, a reported up/down
    /// (`Some(true)` = down), and a pinned capacity (`None` = the configured one).
    Control {
        /// A pin made at the control plane.
        pin: Option<ServerState>,
        /// Reported down (`Some(true)`), up (`Some(false)`), or nothing fresh.
        reported_down: Option<bool>,
        /// A capacity pinned at the control plane.
        capacity: Option<u32>,
    },
    /// A reload changed the server's configured capacity, state or health checking.
    Reload,
}

impl StateBoard {
    /// A board over the first topology.
    pub fn new(topology: Topology) -> Self {
        Self { topology: ArcSwap::from_pointee(topology), writer: Mutex::new(()) }
    }

    /// The current snapshot (cheap; for the request path).
    pub fn topology(&self) -> arc_swap::Guard<Arc<Topology>> {
        self.topology.load()
    }

    /// Applies `command` to `pool`/`server` (by name) and returns the new effective state.
    pub fn apply(&self, pool: &str, server: &str, command: Command) -> Result<ServerState, StateError> {
        let snapshot = self.topology.load();
        let (index, found) = snapshot.pool(pool).ok_or_else(|| StateError::UnknownPool(pool.to_owned()))?;
        let position = found.servers.iter().position(|s| s.name == server);
        let unknown = || StateError::UnknownServer { pool: pool.to_owned(), server: server.to_owned() };
        self.apply_at(index, position.ok_or_else(unknown)?, command)
    }

    /// Applies `command` to `server` of the pool called `pool`, if the current topology
    /// still holds that very server: a verdict about a server that a reload removed or
    /// replaced since the caller looked (health checks, passive detection) is dropped.
    pub fn apply_to(
        &self,
        pool: &str,
        server: &Arc<Server>,
        command: Command,
    ) -> Result<ServerState, StateError> {
        let snapshot = self.topology.load();
        let (index, found) = snapshot.pool(pool).ok_or_else(|| StateError::UnknownPool(pool.to_owned()))?;
        let position = found.servers.iter().position(|s| Arc::ptr_eq(s, server));
        let unknown = || StateError::UnknownServer { pool: pool.to_owned(), server: server.name.clone() };
        self.apply_at(index, position.ok_or_else(unknown)?, command)
    }

    /// Publishes `topology` in place of the current one (a reload), first applying each
    /// kept server's new configured inputs, so the same rule decides its state. Every
    /// pool's selector is rebuilt over the resulting states.
    pub fn replace(&self, topology: Topology, reconfigure: &[(String, Arc<Server>, Reconfigure)]) {
        let _writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (pool, server, change) in reconfigure {
            let state = reconfigure_server(server, change);
            publish_state(pool, server, state, Command::Reload);
        }
        let pools = topology.pools.iter().map(|p| Arc::new(p.rebuilt())).collect();
        self.topology.store(Arc::new(Topology { pools, listeners: topology.listeners }));
    }

    /// Applies `command` to server `server` of pool `pool` (indices into the topology).
    pub fn apply_at(&self, pool: usize, server: usize, command: Command) -> Result<ServerState, StateError> {
        if let Command::Set(s) | Command::Pin(s) = command {
            if s == ServerState::Down {
                return Err(StateError::NotSettable(s));
            }
        }
        let _writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let snapshot = self.topology.load_full();
        let found = snapshot.pools.get(pool).ok_or_else(|| StateError::UnknownPool(format!("#{pool}")))?;
        let target = found.servers.get(server).ok_or_else(|| StateError::UnknownServer {
            pool: found.name.clone(),
            server: format!("#{server}"),
        })?;
        let (state, capacity_changed) = update_control(target, command);
        if publish_state(&found.name, target, state, command) || capacity_changed {
            self.topology.store(Arc::new(snapshot.with_pool(pool, found.rebuilt())));
        }
        Ok(state)
    }
}

/// A kept server's inputs from a new config; `None` where the config did not change, so
/// an operator's unpinned setting survives a reload that did not touch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconfigure {
    /// A new configured capacity.
    pub capacity: Option<u32>,
    /// A new configured (administrative) state.
    pub admin: Option<ServerState>,
    /// Whether its pool now runs active health checks.
    pub checked: bool,
}

/// Sets a kept server's configured inputs; returns its effective state. A capacity pinned
/// at the control plane (the current capacity differs from the configured one) stays.
fn reconfigure_server(server: &Server, change: &Reconfigure) -> ServerState {
    let mut control = server.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(capacity) = change.capacity {
        if server.capacity() == control.configured_capacity {
            server.set_capacity(capacity);
        }
        control.configured_capacity = capacity.max(1);
    }
    if let Some(admin) = change.admin {
        control.admin = admin;
    }
    control.health_down = change.checked.then(|| control.health_down.unwrap_or(false));
    effective(&control)
}

/// Changes the server's control inputs; returns the resulting effective state and whether
/// its capacity changed (which, like a state change, needs the selector rebuilt).
fn update_control(server: &Server, command: Command) -> (ServerState, bool) {
    let mut control = server.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut capacity_changed = false;
    match command {
        Command::Set(state) => control.admin = state,
        Command::Pin(state) => control.pin = Some(state),
        Command::Release => control.pin = None,
        Command::Health(up) => control.health_down = Some(!up),
        Command::Eject(ejected) => control.ejected = ejected,
        Command::Reload => {}
        Command::Control { pin, reported_down, capacity } => {
            control.control_pin = pin;
            control.reported_down = reported_down;
            let capacity = capacity.unwrap_or(control.configured_capacity);
            capacity_changed = capacity != server.capacity();
            server.set_capacity(capacity);
        }
    }
    (effective(&control), capacity_changed)
}

/// The rule of the module doc.
fn effective(control: &Control) -> ServerState {
    if let Some(pinned) = control.pin.or(control.control_pin) {
        return pinned;
    }
    let down = control.ejected || control.health_down.or(control.reported_down).unwrap_or(false);
    match control.admin {
        ServerState::Maint => ServerState::Maint,
        _ if down => ServerState::Down,
        admin => admin,
    }
}

/// Stores a new effective state; returns whether it changed.
fn publish_state(pool: &str, server: &Server, state: ServerState, cause: Command) -> bool {
    let old = server.state();
    if old == state {
        return false;
    }
    server.set_effective_state(state);
    server.counters.state_changes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(pool, server = %server.name, from = %old, to = %state, ?cause, "server state changed");
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    fn board() -> StateBoard {
        let config = bunsan_config::parse(
            r#"
            [[listener]]
            name = "web"
            listen = "127.0.0.1:0"
            pool = "app"
            [[pool]]
            name = "app"
            [[pool.server]]
            name = "a"
            addr = "127.0.0.1:1"
            [[pool.server]]
            name = "b"
            addr = "127.0.0.1:2"
            "#,
            "test.toml".as_ref(),
        )
        .expect("valid test config");
        StateBoard::new(Topology::from_config(&config, None).expect("topology"))
    }

    fn state_of(board: &StateBoard, server: &str) -> ServerState {
        board.topology().pools[0].server(server).map(|s| s.state()).expect("server exists")
    }

    #[test]
    fn pin_overrides_admin_state_until_released() {
        let board = board();
        assert_eq!(board.apply("app", "a", Command::Pin(ServerState::Maint)), Ok(ServerState::Maint));
        assert_eq!(board.apply("app", "a", Command::Set(ServerState::Drain)), Ok(ServerState::Maint));
        assert_eq!(board.apply("app", "a", Command::Release), Ok(ServerState::Drain));
        assert_eq!(state_of(&board, "a"), ServerState::Drain);
    }

    #[test]
    fn a_change_rebuilds_the_selector_so_new_work_avoids_the_server() {
        let board = board();
        board.apply("app", "b", Command::Set(ServerState::Maint)).unwrap();
        let topology = board.topology();
        for _ in 0..100 {
            assert_eq!(topology.pools[0].pick(None, &[]), Some(0));
        }
    }

    #[test]
    fn health_and_ejection_take_a_server_down_below_maint_and_pins() {
        let board = board();
        assert_eq!(board.apply("app", "a", Command::Health(false)), Ok(ServerState::Down));
        assert_eq!(board.apply("app", "a", Command::Eject(true)), Ok(ServerState::Down));
        assert_eq!(board.apply("app", "a", Command::Health(true)), Ok(ServerState::Down), "still ejected");
        assert_eq!(board.apply("app", "a", Command::Set(ServerState::Maint)), Ok(ServerState::Maint));
        assert_eq!(board.apply("app", "a", Command::Set(ServerState::Drain)), Ok(ServerState::Down));
        assert_eq!(board.apply("app", "a", Command::Pin(ServerState::Ready)), Ok(ServerState::Ready));
        assert_eq!(board.apply("app", "a", Command::Release), Ok(ServerState::Down));
        assert_eq!(board.apply("app", "a", Command::Eject(false)), Ok(ServerState::Drain));
        let changes = board.topology().pools[0].servers[0].counters.state_changes.load(Relaxed);
        assert_eq!(changes, 6);
    }

    #[test]
    fn control_pins_beat_health_and_reports_only_count_without_health_checks() {
        let board = board();
        let report = |down| Command::Control { pin: None, reported_down: Some(down), capacity: None };
        assert_eq!(board.apply("app", "a", report(true)), Ok(ServerState::Down), "no health checks here");
        assert_eq!(
            board.apply("app", "a", Command::Health(true)),
            Ok(ServerState::Ready),
            "health beats report"
        );
        let pinned =
            Command::Control { pin: Some(ServerState::Maint), reported_down: None, capacity: Some(3) };
        assert_eq!(board.apply("app", "a", pinned), Ok(ServerState::Maint));
        assert_eq!(board.topology().pools[0].servers[0].capacity(), 3);
        assert_eq!(
            board.apply("app", "a", Command::Pin(ServerState::Drain)),
            Ok(ServerState::Drain),
            "local pin first"
        );
        assert_eq!(board.apply("app", "a", Command::Release), Ok(ServerState::Maint));
        let released = Command::Control { pin: None, reported_down: None, capacity: None };
        assert_eq!(board.apply("app", "a", released), Ok(ServerState::Ready));
        assert_eq!(board.topology().pools[0].servers[0].capacity(), 1, "back to the configured capacity");
    }

    #[test]
    fn unknown_names_and_down_are_refused() {
        let board = board();
        assert_eq!(board.apply("nope", "a", Command::Release), Err(StateError::UnknownPool("nope".into())));
        assert!(matches!(board.apply("app", "zz", Command::Release), Err(StateError::UnknownServer { .. })));
        assert_eq!(
            board.apply("app", "a", Command::Pin(ServerState::Down)),
            Err(StateError::NotSettable(ServerState::Down))
        );
    }
}
