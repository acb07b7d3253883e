//! The admin API's request and response bodies (`/v1/pools`, `/v1/pools/{pool}`,
//! `PUT /v1/pools/{pool}/servers/{server}`, errors).

use serde::{Deserialize, Serialize};

/// One entry of `GET /v1/pools`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSummary {
    /// The pool's name.
    pub name: String,
    /// Its balancing algorithm (`least-load`, …).
    pub algorithm: String,
    /// How many servers it has.
    pub servers: usize,
    /// How many of them take new work (state `ready`).
    pub ready: usize,
    /// Requests (or TCP connections) in flight over all its servers.
    pub in_flight: u64,
    /// Requests (or TCP connections) forwarded since start.
    pub requests_total: u64,
}

/// `GET /v1/pools/{pool}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolDetail {
    /// The pool's name.
    pub name: String,
    /// Its balancing algorithm.
    pub algorithm: String,
    /// Its servers, in config order.
    pub servers: Vec<ServerStatus>,
}

/// One server as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// The server's name, unique in its pool.
    pub name: String,
    /// Its address as configured.
    pub addr: String,
    /// Its effective state: `ready`, `drain`, `maint` or `down`.
    pub state: String,
    /// Whether an operator pinned the state (it holds until released).
    pub pinned: bool,
    /// Seed 001's ratio.
    pub capacity: u32,
    /// The load the balancer sees (see the README: what the node counts as load).
    pub load: f64,
    /// `load / capacity`.
    pub relative_load: f64,
    /// Requests (or TCP connections) in flight now.
    pub in_flight: u64,
    /// Requests (or TCP connections) forwarded since start.
    pub requests_total: u64,
}

/// Body of `PUT /v1/pools/{pool}/servers/{server}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateChange {
    /// `ready`, `drain` or `maint`.
    pub state: String,
    /// Pin the state until `DELETE …/pin`; without a pin the next health or report
    /// transition may change it again.
    #[serde(default)]
    pub pin: bool,
}

/// The body of every admin API error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, in words.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_change_rejects_unknown_fields_and_defaults_pin() {
        let c: StateChange = serde_json::from_str(r#"{"state":"drain"}"#).unwrap();
        assert!(!c.pin);
        assert!(serde_json::from_str::<StateChange>(r#"{"state":"drain","pinned":true}"#).is_err());
        assert!(serde_json::from_str::<StateChange>(r#"{"pin":true}"#).is_err());
    }
}
