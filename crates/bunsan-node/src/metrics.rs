//! Prometheus metrics, read from the live atomics at scrape time.
//!
//! The request path only increments atomics; nothing here takes a lock a request would
//! wait on. On each scrape the collector walks the current topology and encodes the
//! counters through `prometheus-client`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::affinity::Affinity;
use crate::server::Server;
use crate::state::StateBoard;
use crate::topology::Pool;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// A fixed-bucket histogram of atomics (prometheus-client's own takes a lock per observation).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation, in seconds.
    pub fn observe(&self, secs: f64) {
        if let Some(i) = BUCKETS.iter().position(|&bound| secs <= bound) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((secs * 1e6) as u64, Relaxed);
    }

    /// Cumulative `(upper bound, count)` pairs, the sum in seconds, and the count.
    fn snapshot(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let mut cumulative = 0;
        let mut buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, n)| {
                cumulative += n.load(Relaxed);
                (bound, cumulative)
            })
            .collect();
        let count = self.count.load(Relaxed);
        buckets.push((f64::INFINITY, count));
        (buckets, self.sum_micros.load(Relaxed) as f64 / 1e6, count)
    }
}

/// Counters that belong to one listener.
#[derive(Debug)]
pub struct ListenerCounters {
    /// The listener's name (the `listener` label).
    pub name: String,
    /// Connections closed because their PROXY header was missing, malformed or late.
    pub proxy_header_errors: AtomicU64,
    /// Connections closed at once because their address had `max_connections_per_client`.
    pub refused_per_client: AtomicU64,
}

impl ListenerCounters {
    /// Zeroed counters for listener `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            proxy_header_errors: AtomicU64::new(0),
            refused_per_client: AtomicU64::new(0),
        }
    }
}

/// Every listener's counters, by name. A listener keeps its counters across reloads (and
/// a listener added by a reload shows up at the next scrape).
#[derive(Debug, Default)]
pub struct ListenerRegistry {
    by_name: std::sync::Mutex<Vec<Arc<ListenerCounters>>>,
}

impl ListenerRegistry {
    /// The counters of listener `name`, created on first use.
    pub fn counters(&self, name: &str) -> Arc<ListenerCounters> {
        let Ok(mut all) = self.by_name.lock() else { return Arc::new(ListenerCounters::new(name)) };
        if let Some(found) = all.iter().find(|c| c.name == name) {
            return found.clone();
        }
        let counters = Arc::new(ListenerCounters::new(name));
        all.push(counters.clone());
        counters
    }

    fn all(&self) -> Vec<Arc<ListenerCounters>> {
        self.by_name.lock().map(|all| all.clone()).unwrap_or_default()
    }
}

/// A registry whose only collector reads the node's topology and listener counters.
pub fn registry(board: Arc<StateBoard>, listeners: Arc<ListenerRegistry>) -> Registry {
    let mut registry = Registry::with_prefix("bunsan");
    registry.register_collector(Box::new(NodeCollector { board, listeners }));
    registry
}

/// Renders the registry in the Prometheus/OpenMetrics text format.
pub fn render(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

#[derive(Debug)]
struct NodeCollector {
    board: Arc<StateBoard>,
    listeners: Arc<ListenerRegistry>,
}

type Labels<'a> = [(&'static str, &'a str)];

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let topology = self.board.topology();
        encode_server_counters(&mut encoder, &topology.pools)?;
        encode_server_gauges(&mut encoder, &topology.pools)?;
        encode_latency(&mut encoder, &topology.pools)?;
        encode_pool_counters(&mut encoder, &topology.pools)?;
        encode_sessions(&mut encoder, &topology.pools)?;
        encode_listener_counters(&mut encoder, &self.listeners.all())?;
        let help = "Times a quiet HTTP/1.1 client connection gave up its buffers (parked).";
        let family =
            encoder.encode_descriptor("client_connections_parked", help, None, MetricType::Counter)?;
        ConstCounter::new(crate::memory::parked()).encode(family)
    }
}

/// One listener counter family: name, help, and how to read it.
type ListenerCounter = (&'static str, &'static str, fn(&ListenerCounters) -> u64);

fn encode_listener_counters(
    encoder: &mut DescriptorEncoder,
    listeners: &[Arc<ListenerCounters>],
) -> fmt::Result {
    let families: [ListenerCounter; 2] = [
        (
            "proxy_header_errors",
            "Connections closed because their PROXY header was missing, malformed or late.",
            |l| l.proxy_header_errors.load(Relaxed),
        ),
        (
            "connections_refused_per_client",
            "Connections closed because their address had max_connections_per_client.",
            |l| l.refused_per_client.load(Relaxed),
        ),
    ];
    for (name, help, read) in families {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for listener in listeners {
            let labels: &Labels = &[("listener", &listener.name)];
            ConstCounter::new(read(listener)).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// One server counter family: name, help, and how to read it.
type ServerCounter = (&'static str, &'static str, fn(&Server) -> u64);

const SERVER_COUNTERS: [ServerCounter; 12] = [
    ("server_state_changes", "Changes of a server's effective state.", |s| {
        s.counters.state_changes.load(Relaxed)
    }),
    ("server_ejections", "Times passive detection ejected a server.", |s| s.counters.ejections.load(Relaxed)),
    ("retries_elsewhere", "Requests that failed on a server and were replayed on another.", |s| {
        s.counters.retried_elsewhere.load(Relaxed)
    }),
    ("upstream_connect_errors", "Failed connection attempts to a server.", |s| {
        s.counters.connect_errors.load(Relaxed)
    }),
    ("upstream_connections_opened", "Connections opened to a server.", |s| {
        s.counters.connections_opened.load(Relaxed)
    }),
    ("upstream_connections_reused", "Requests sent over a pooled connection.", |s| {
        s.counters.connections_reused.load(Relaxed)
    }),
    ("upstream_errors", "Requests that failed after reaching a server.", |s| {
        s.counters.upstream_errors.load(Relaxed)
    }),
    ("upstream_timeouts", "Responses that did not arrive within response_timeout.", |s| {
        s.counters.timeouts.load(Relaxed)
    }),
    ("tcp_bytes_to_server", "Bytes relayed from clients to a server (TCP listeners).", |s| {
        s.counters.bytes_to_server.load(Relaxed)
    }),
    ("tcp_bytes_to_client", "Bytes relayed from a server to clients (TCP listeners).", |s| {
        s.counters.bytes_to_client.load(Relaxed)
    }),
    ("health_checks", "Active health checks run against a server.", |s| s.health.checks()),
    ("health_check_failures", "Active health checks a server failed.", |s| s.health.failures()),
];

fn encode_server_counters(encoder: &mut DescriptorEncoder, pools: &[Arc<Pool>]) -> fmt::Result {
    let help = "Requests (HTTP) answered by a server, by status class.";
    let mut family = encoder.encode_descriptor("requests", help, None, MetricType::Counter)?;
    for (pool, server) in servers(pools) {
        for (class, n) in CLASSES.iter().zip(&server.counters.responses_by_class) {
            let labels: &Labels = &[("pool", &pool.name), ("server", &server.name), ("class", class)];
            ConstCounter::new(n.load(Relaxed)).encode(family.encode_family(&labels)?)?;
        }
    }
    for (name, help, read) in SERVER_COUNTERS {
        per_server(encoder, (name, help, MetricType::Counter), pools, |s| ConstCounter::new(read(s)))?;
    }
    Ok(())
}

/// One family of `kind` with a `pool, server` labelled value per server.
fn per_server<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    pools: &[Arc<Pool>],
    value: impl Fn(&Server) -> M,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (pool, server) in servers(pools) {
        let labels: &Labels = &[("pool", &pool.name), ("server", &server.name)];
        value(server).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn encode_server_gauges(encoder: &mut DescriptorEncoder, pools: &[Arc<Pool>]) -> fmt::Result {
    let help = "Requests (HTTP) or connections (TCP) in flight on a server.";
    per_server(encoder, ("in_flight", help, MetricType::Gauge), pools, |s| {
        ConstGauge::new(s.counters.in_flight.load(Relaxed) as i64)
    })?;
    let help = "1 for a server's effective state, 0 for the others.";
    let mut family = encoder.encode_descriptor("server_state", help, None, MetricType::Gauge)?;
    for (pool, server) in servers(pools) {
        for state in bunsan_core::ServerState::ALL {
            let labels: &Labels =
                &[("pool", &pool.name), ("server", &server.name), ("state", state.as_str())];
            let value = i64::from(server.state() == state);
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
    }
    let help = "Idle keep-alive connections pooled for a server.";
    per_server(encoder, ("upstream_idle_connections", help, MetricType::Gauge), pools, |s| {
        ConstGauge::new(s.idle.len() as i64)
    })
}

fn encode_latency(encoder: &mut DescriptorEncoder, pools: &[Arc<Pool>]) -> fmt::Result {
    let help = "Time from sending a request to receiving the response head.";
    let mut family = encoder.encode_descriptor("response_head_seconds", help, None, MetricType::Histogram)?;
    for (pool, server) in servers(pools) {
        let labels: &Labels = &[("pool", &pool.name), ("server", &server.name)];
        let (buckets, sum, count) = server.counters.latency.snapshot();
        family
            .encode_family(&labels)?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)?;
    }
    Ok(())
}

fn encode_pool_counters(encoder: &mut DescriptorEncoder, pools: &[Arc<Pool>]) -> fmt::Result {
    let help = "Retries refused because the pool's retry budget was spent.";
    let mut family = encoder.encode_descriptor("retry_budget_exhausted", help, None, MetricType::Counter)?;
    for pool in pools {
        let labels: &Labels = &[("pool", &pool.name)];
        ConstCounter::new(pool.budget.exhausted.load(Relaxed)).encode(family.encode_family(&labels)?)?;
    }
    let help = "Responses the node answered itself, by status code.";
    let mut family = encoder.encode_descriptor("local_responses", help, None, MetricType::Counter)?;
    for pool in pools {
        let c = &pool.counters;
        let codes = [
            ("400", &c.bad_requests),
            ("502", &c.upstream_failed),
            ("503", &c.no_server),
            ("504", &c.timeouts),
        ];
        for (code, n) in codes {
            let labels: &Labels = &[("pool", &pool.name), ("code", code)];
            ConstCounter::new(n.load(Relaxed)).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// One per-pool session counter family: name, help, and how to read it.
type SessionCounter = (&'static str, &'static str, fn(&Affinity) -> u64);

const SESSION_COUNTERS: [SessionCounter; 9] = [
    ("sessions_moved", "Sessions re-bound to another server because theirs failed or left.", |a| {
        a.counters.sessions_moved.load(Relaxed)
    }),
    ("sessions_created", "Sessions started here.", |a| a.table.counters().created.load(Relaxed)),
    ("sessions_adopted", "Sessions another node issued, continued here.", |a| {
        a.table.counters().adopted.load(Relaxed)
    }),
    (
        "sessions_expired_idle",
        "Sessions ended because their clients were gone longer than idle_timeout.",
        |a| a.table.counters().expired_idle.load(Relaxed),
    ),
    ("sessions_expired_lifetime", "Sessions ended by max_lifetime.", |a| {
        a.table.counters().expired_lifetime.load(Relaxed)
    }),
    ("sessions_ended", "Sessions ended early: server unavailable, or by an operator.", |a| {
        a.table.counters().invalidated.load(Relaxed)
    }),
    ("session_identifiers_invalid", "Forged, tampered, truncated or expired identifiers seen.", |a| {
        a.counters.invalid_identifiers.load(Relaxed)
    }),
    ("session_requests", "Requests that continued a session.", |a| a.counters.session_requests.load(Relaxed)),
    ("session_connection_reuses", "Session requests sent over the session's own upstream connection.", |a| {
        a.counters.session_connection_reuses.load(Relaxed)
    }),
];

fn encode_sessions(encoder: &mut DescriptorEncoder, pools: &[Arc<Pool>]) -> fmt::Result {
    let sticky = || pools.iter().filter_map(|p| Some((p.name.as_str(), p.affinity.as_deref()?)));
    let help = "Live sessions.";
    let mut family = encoder.encode_descriptor("sessions_active", help, None, MetricType::Gauge)?;
    for (pool, affinity) in sticky() {
        let labels: &Labels = &[("pool", pool)];
        ConstGauge::new(affinity.table.len_live() as i64).encode(family.encode_family(&labels)?)?;
    }
    for (name, help, read) in SESSION_COUNTERS {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (pool, affinity) in sticky() {
            let labels: &Labels = &[("pool", pool)];
            ConstCounter::new(read(affinity)).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

fn servers(pools: &[Arc<Pool>]) -> impl Iterator<Item = (&Pool, &Server)> {
    pools.iter().flat_map(|pool| pool.servers.iter().map(move |server| (pool.as_ref(), server.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_with_an_infinite_bucket() {
        let h = LatencyHistogram::default();
        h.observe(0.0004);
        h.observe(0.003);
        h.observe(100.0);
        let (buckets, sum, count) = h.snapshot();
        assert_eq!(count, 3);
        assert_eq!(buckets[0], (0.0005, 1));
        assert_eq!(buckets[3], (0.005, 2));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 3)));
        assert!((sum - 100.0034).abs() < 1e-6);
    }
}
