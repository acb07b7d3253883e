//! One backend server as the node sees it: identity, effective state, and the live
//! counters the balancers and metrics read.
//!
//! Everything on the request path is an atomic; the operator's and health checks'
//! inputs behind [`Server::control`] are touched only by the state module.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bunsan_config::ServerConfig;
use bunsan_core::{Candidate, ServerState};

use crate::health::HealthCounters;
use crate::metrics::LatencyHistogram;
use crate::upstream::IdlePool;

/// A backend server shared by every snapshot that contains it, so counters and pooled
/// connections survive state changes.
#[derive(Debug)]
pub struct Server {
    /// Name, unique in its pool.
    pub name: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// The address as the operator wrote it.
    pub addr_text: String,
    capacity: AtomicU32,
    state: AtomicU8,
    reported_load_bits: AtomicU64,
    /// When the reported load arrived ([`crate::clock`] ms); 0 = no report.
    reported_at_ms: AtomicU64,
    /// Inputs to the effective state; written only by [`crate::state`].
    pub(crate) control: Mutex<Control>,
    /// Live counters.
    pub counters: Counters,
    /// Idle keep-alive connections to this server.
    pub(crate) idle: IdlePool,
    /// Active health check counters (zero when the pool has no checks).
    pub health: Arc<HealthCounters>,
}

/// What decides a server's effective state (see [`crate::state`] for the rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Control {
    /// The administrative state: from config, or set by an operator without a pin.
    pub admin: ServerState,
    /// An operator's pin: holds over everything until released.
    pub pin: Option<ServerState>,
    /// Active health checks: down (`fall` failed checks in a row) or not; `None` when the
    /// pool has no checks, and reports from the control plane decide instead.
    pub health_down: Option<bool>,
    /// Passive detection ejected the server (consecutive failures of real traffic).
    pub ejected: bool,
    /// An operator's pin made at the control plane (seed 001 claim 5).
    pub control_pin: Option<ServerState>,
    /// The control plane's latest fresh report: down or not; `None` when there is none.
    pub reported_down: Option<bool>,
    /// The capacity from the config (a control-plane pin may override it for a while).
    pub configured_capacity: u32,
}

impl Server {
    /// A server as configured, in its configured state; `checked` says whether its pool
    /// runs active health checks.
    pub(crate) fn new(config: &ServerConfig, idle: IdlePool, checked: bool) -> Self {
        Self {
            name: config.name.clone(),
            addr: config.addr,
            addr_text: config.addr_text.clone(),
            capacity: AtomicU32::new(config.capacity.max(1)),
            state: AtomicU8::new(config.state.to_u8()),
            reported_load_bits: AtomicU64::new(0),
            reported_at_ms: AtomicU64::new(0),
            control: Mutex::new(Control {
                admin: config.state,
                pin: None,
                health_down: checked.then_some(false),
                ejected: false,
                control_pin: None,
                reported_down: None,
                configured_capacity: config.capacity.max(1),
            }),
            counters: Counters::default(),
            idle,
            health: Arc::default(),
        }
    }

    /// The effective state.
    pub fn state(&self) -> ServerState {
        ServerState::from_u8(self.state.load(Relaxed))
    }

    pub(crate) fn set_effective_state(&self, state: ServerState) {
        self.state.store(state.to_u8(), Relaxed);
    }

    /// Seed 001's ratio.
    pub fn capacity(&self) -> u32 {
        self.capacity.load(Relaxed)
    }

    /// Whether an operator pinned the state.
    pub fn pinned(&self) -> bool {
        self.control.lock().map(|c| c.pin.is_some()).unwrap_or(false)
    }

    /// The load least-load divides by capacity: the load the control plane reported for
    /// the server (from its agent, seed 001), if there is a fresh report, plus the
    /// requests (HTTP) or connections (TCP) this node has in flight on it. The report
    /// says what every node together sends the server; the in-flight count adds what
    /// this node sent since, and alone is the load when there is no report. In-flight
    /// work reacts at once to a slow or saturated server (Little's law: in-flight = rate
    /// × latency), and at low concurrency the capacity-weighted tie-break keeps shares
    /// proportional.
    pub fn load(&self) -> f64 {
        let own = self.counters.in_flight.load(Relaxed) as f64;
        self.reported_load().map_or(own, |reported| reported + own)
    }

    /// The control plane's fresh reported load, if any.
    pub fn reported_load(&self) -> Option<f64> {
        (self.reported_at_ms.load(Relaxed) != 0)
            .then(|| f64::from_bits(self.reported_load_bits.load(Relaxed)))
    }

    /// Milliseconds since the reported load arrived, if there is one.
    pub fn reported_age_ms(&self) -> Option<u64> {
        let at = self.reported_at_ms.load(Relaxed);
        (at != 0).then(|| crate::clock::now_ms().saturating_sub(at))
    }

    /// Records the control plane's reported load (`None` drops it).
    pub(crate) fn set_reported_load(&self, load: Option<f64>) {
        match load {
            Some(load) => {
                self.reported_load_bits.store(load.to_bits(), Relaxed);
                self.reported_at_ms.store(crate::clock::now_ms(), Relaxed);
            }
            None => self.reported_at_ms.store(0, Relaxed),
        }
    }

    pub(crate) fn set_capacity(&self, capacity: u32) {
        self.capacity.store(capacity.max(1), Relaxed);
    }

    /// Marks the start of one request or connection attempt; the guard ends it when
    /// dropped. (`requests_total` counts only the ones that reached the server.)
    pub fn begin(self: &std::sync::Arc<Self>) -> InFlight {
        self.counters.in_flight.fetch_add(1, Relaxed);
        InFlight { server: self.clone() }
    }
}

impl Candidate for Server {
    fn id(&self) -> &str {
        &self.name
    }
    fn state(&self) -> ServerState {
        Server::state(self)
    }
    fn capacity(&self) -> u32 {
        Server::capacity(self)
    }
    fn load(&self) -> f64 {
        Server::load(self)
    }
    fn in_flight(&self) -> u64 {
        self.counters.in_flight.load(Relaxed)
    }
    fn latency_ewma(&self) -> f64 {
        self.counters.latency_ewma()
    }
}

/// Counts one unit of in-flight work on a server until dropped.
#[derive(Debug)]
pub struct InFlight {
    server: std::sync::Arc<Server>,
}

impl InFlight {
    /// The server this work runs on.
    pub fn server(&self) -> &std::sync::Arc<Server> {
        &self.server
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.server.counters.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A server's live counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests or TCP connections open now.
    pub in_flight: AtomicU64,
    /// Requests sent, or TCP connections established, since the node started.
    pub requests_total: AtomicU64,
    /// Responses by status class: index 0 = 1xx … 4 = 5xx.
    pub responses_by_class: [AtomicU64; 5],
    /// Failed attempts to open a connection (refused, unreachable, timed out).
    pub connect_errors: AtomicU64,
    /// Upstream connections opened.
    pub connections_opened: AtomicU64,
    /// Requests sent over an already open (pooled) connection.
    pub connections_reused: AtomicU64,
    /// Upstream requests that failed after being sent (reset, bad response).
    pub upstream_errors: AtomicU64,
    /// Responses that did not arrive within the pool's `response_timeout`.
    pub timeouts: AtomicU64,
    /// TCP relay bytes, client to server.
    pub bytes_to_server: AtomicU64,
    /// TCP relay bytes, server to client.
    pub bytes_to_client: AtomicU64,
    /// Time to response head, for `/metrics`.
    pub latency: LatencyHistogram,
    /// Changes of the effective state.
    pub state_changes: AtomicU64,
    /// Failures of real traffic in a row (connect failed, reset, timeout, 5xx); a success
    /// resets it.
    pub consecutive_failures: AtomicU32,
    /// Ejections by passive detection in a row (each doubles the next one's length).
    pub ejections_in_a_row: AtomicU32,
    /// Ejections by passive detection since start.
    pub ejections: AtomicU64,
    /// While ejected: when the ejection ends, in milliseconds on [`crate::clock`]; 0 = not ejected.
    pub ejected_until_ms: AtomicU64,
    /// Requests that failed on this server and were replayed on another one.
    pub retried_elsewhere: AtomicU64,
    latency_ewma_bits: AtomicU64,
}

/// How fast the latency EWMA forgets: the weight of each new sample.
const EWMA_ALPHA: f64 = 0.3;

impl Counters {
    /// Records a response's status.
    pub fn record_status(&self, status: u16) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.responses_by_class[class].fetch_add(1, Relaxed);
    }

    /// Records the time a response head took, into the histogram and the EWMA.
    pub fn record_latency(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        self.latency.observe(secs);
        // Lost updates under contention only drop a sample; an EWMA tolerates that.
        let old = self.latency_ewma();
        let new = if old == 0.0 { secs } else { old + EWMA_ALPHA * (secs - old) };
        self.latency_ewma_bits.store(new.to_bits(), Relaxed);
    }

    /// The latency EWMA in seconds; 0 until the first response.
    pub fn latency_ewma(&self) -> f64 {
        f64::from_bits(self.latency_ewma_bits.load(Relaxed))
    }
}
