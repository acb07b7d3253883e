//! The one place that decides a server's effective state.
//!
//! Inputs: the administrative state (from config, or set by an operator without a pin)
//! and an operator's pin. Rule: a pin wins over everything until released; otherwise
//! the administrative state applies. (Health checks and control-plane reports will join
//! here, below pins.) Every change is logged, applied to the server's atomic state, and
//! published as a new topology snapshot with the pool's selector rebuilt.

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

/// What an operator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Set the administrative state; the next change from another source may apply on top.
    Set(ServerState),
    /// Pin the state until released.
    Pin(ServerState),
    /// Release a pin.
    Release,
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

    /// Applies an operator's command to `pool`/`server` and returns the new effective state.
    pub fn apply(&self, pool: &str, server: &str, command: Command) -> Result<ServerState, StateError> {
        if let Command::Set(s) | Command::Pin(s) = command {
            if s == ServerState::Down {
                return Err(StateError::NotSettable(s));
            }
        }
        let _writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let snapshot = self.topology.load_full();
        let (index, found) = snapshot.pool(pool).ok_or_else(|| StateError::UnknownPool(pool.to_owned()))?;
        let target = found
            .server(server)
            .ok_or_else(|| StateError::UnknownServer { pool: pool.to_owned(), server: server.to_owned() })?;
        let state = update_control(target, command);
        if publish_state(pool, target, state) {
            self.topology.store(Arc::new(snapshot.with_pool(index, found.rebuilt())));
        }
        Ok(state)
    }
}

/// Changes the server's control inputs and returns the resulting effective state.
fn update_control(server: &Server, command: Command) -> ServerState {
    let mut control = server.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match command {
        Command::Set(state) => control.admin = state,
        Command::Pin(state) => control.pin = Some(state),
        Command::Release => control.pin = None,
    }
    effective(&control)
}

/// The rule: a pin, else the administrative state.
fn effective(control: &Control) -> ServerState {
    control.pin.unwrap_or(control.admin)
}

/// Stores a new effective state; returns whether it changed.
fn publish_state(pool: &str, server: &Server, state: ServerState) -> bool {
    let old = server.state();
    if old == state {
        return false;
    }
    server.set_effective_state(state);
    tracing::info!(pool, server = %server.name, from = %old, to = %state, "server state changed");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

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
