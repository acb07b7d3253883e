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
    /// Where `load` comes from: `control` (the control plane's fresh report plus this
    /// node's in-flight count) or `node` (this node's in-flight count alone).
    #[serde(default = "node_source")]
    pub load_source: String,
    /// Milliseconds since the control plane's report arrived, when it is the source.
    #[serde(default)]
    pub load_age_ms: Option<u64>,
    /// Requests (or TCP connections) in flight now.
    pub in_flight: u64,
    /// Requests (or TCP connections) forwarded since start.
    pub requests_total: u64,
}

fn node_source() -> String {
    "node".to_owned()
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

/// `GET /v1/sessions`: session counts per pool and server, and a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionsReport {
    /// One entry per pool with affinity.
    pub pools: Vec<PoolSessions>,
    /// Some live sessions, for a look at what they are like.
    pub sample: Vec<SessionInfo>,
}

/// Sessions of one pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSessions {
    /// The pool.
    pub pool: String,
    /// Its affinity mode: `cookie`, `header` or `client-ip`.
    pub mode: String,
    /// Live sessions.
    pub active: usize,
    /// Live sessions per server (servers without sessions are left out).
    pub servers: Vec<ServerSessions>,
}

/// Live sessions on one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSessions {
    /// The server.
    pub server: String,
    /// How many sessions are bound to it.
    pub sessions: usize,
}

/// One live session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Its id: 32 hex characters (for `client-ip` sessions, the client's address as IPv6).
    pub id: String,
    /// Its pool.
    pub pool: String,
    /// The server it is bound to.
    pub server: String,
    /// Seconds since it started here.
    pub age_seconds: f64,
    /// Client connections carrying it now.
    pub client_connections: u32,
    /// Seconds since its last client connection closed; `None` while one is open.
    pub idle_seconds: Option<f64>,
}

/// `GET /v1/connections`: the connection table (seed 002) — which server each client
/// connection is associated with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionsReport {
    /// Open client connections.
    pub total: usize,
    /// Of those, connections not associated with a server yet.
    pub unassociated: usize,
    /// Connections per server they are associated with.
    pub servers: Vec<ServerConnections>,
    /// The oldest connections.
    pub sample: Vec<ConnectionInfo>,
}

/// Client connections associated with one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerConnections {
    /// The pool.
    pub pool: String,
    /// The server.
    pub server: String,
    /// How many client connections are associated with it.
    pub connections: usize,
}

/// One client connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// Its id in the table.
    pub id: u64,
    /// The client's address.
    pub client: String,
    /// The listener it came in on.
    pub listener: String,
    /// The pool and server it is associated with, if any.
    pub pool: Option<String>,
    /// See `pool`.
    pub server: Option<String>,
    /// Seconds since it was accepted.
    pub age_seconds: f64,
    /// Requests it has sent (1 for a TCP relay).
    pub requests: u64,
    /// Times a request of it moved to another server after a failure.
    pub failovers: u64,
}

/// `POST /v1/reload`: what a reload changed. Names are `POOL` for pools, `POOL/SERVER`
/// for servers and `NAME` for listeners.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadSummary {
    /// Pools that did not exist before.
    pub pools_added: Vec<String>,
    /// Pools that are gone.
    pub pools_removed: Vec<String>,
    /// Pools whose settings or server list changed.
    pub pools_changed: Vec<String>,
    /// Servers that did not exist before (or whose address changed: a new server).
    pub servers_added: Vec<String>,
    /// Servers that are gone (or were replaced by one at a new address).
    pub servers_removed: Vec<String>,
    /// Servers kept (state, counters and connections carried over) whose configured
    /// capacity or state changed.
    pub servers_changed: Vec<String>,
    /// Listeners that did not exist before.
    pub listeners_added: Vec<String>,
    /// Listeners that are gone (their open connections finish normally).
    pub listeners_removed: Vec<String>,
    /// Listeners whose address, protocol, TLS or pool changed.
    pub listeners_changed: Vec<String>,
    /// Changes that cannot take effect without a restart (`[admin]`, `workers`, …).
    pub needs_restart: Vec<String>,
}

impl ReloadSummary {
    /// Whether the reload changed nothing at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}
