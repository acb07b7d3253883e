//! Server states and what each one admits.

use std::fmt;
use std::str::FromStr;

/// The state of one server, as the balancers see it.
///
/// The node decides the *effective* state from several sources (an operator's pin,
/// health checks, agent reports); this type is only the outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerState {
    /// Takes new work.
    Ready,
    /// Finishes what it has (in-flight requests, existing sessions) but takes no new work.
    Drain,
    /// Taken out by an operator for maintenance: takes nothing.
    Maint,
    /// Found dead by a health check or a report: takes nothing.
    Down,
}

impl ServerState {
    /// Every state, in the order operators usually read them.
    pub const ALL: [ServerState; 4] = [Self::Ready, Self::Drain, Self::Maint, Self::Down];

    /// Whether a balancer may choose this server for new work.
    pub fn takes_new_work(self) -> bool {
        self == Self::Ready
    }

    /// Whether work already bound to this server (a session, a pinned connection) may
    /// continue there.
    pub fn takes_bound_work(self) -> bool {
        matches!(self, Self::Ready | Self::Drain)
    }

    /// The lowercase name used in config, API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Drain => "drain",
            Self::Maint => "maint",
            Self::Down => "down",
        }
    }

    /// A compact encoding for storing a state in an atomic.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Ready => 0,
            Self::Drain => 1,
            Self::Maint => 2,
            Self::Down => 3,
        }
    }

    /// The inverse of [`ServerState::to_u8`]; unknown values read as `Down`, the safe side.
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Ready,
            1 => Self::Drain,
            2 => Self::Maint,
            _ => Self::Down,
        }
    }
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of `ready`, `drain`, `maint`, `down`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown server state {0:?} (valid: ready, drain, maint, down)")]
pub struct UnknownState(pub String);

impl FromStr for ServerState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for state in ServerState::ALL {
            assert_eq!(state.as_str().parse::<ServerState>(), Ok(state));
            assert_eq!(ServerState::from_u8(state.to_u8()), state);
        }
        assert!("Ready".parse::<ServerState>().is_err());
        assert_eq!(ServerState::from_u8(200), ServerState::Down);
    }

    #[test]
    fn only_ready_takes_new_work_and_drain_keeps_bound_work() {
        assert!(ServerState::Ready.takes_new_work());
        assert!(!ServerState::Drain.takes_new_work());
        assert!(ServerState::Drain.takes_bound_work());
        assert!(!ServerState::Maint.takes_bound_work());
        assert!(!ServerState::Down.takes_bound_work());
    }
}
