//! Read-only views of the topology in the admin API's types.

use std::sync::atomic::Ordering::Relaxed;

use bunsan_proto::admin::{PoolDetail, PoolSummary, ServerStatus};

use crate::server::Server;
use crate::topology::Pool;

/// A pool as `GET /v1/pools` lists it.
pub fn pool_summary(pool: &Pool) -> PoolSummary {
    let sum = |read: fn(&Server) -> u64| pool.servers.iter().map(|s| read(s)).sum();
    PoolSummary {
        name: pool.name.clone(),
        algorithm: pool.settings.algorithm.to_string(),
        servers: pool.servers.len(),
        ready: pool.servers.iter().filter(|s| s.state().takes_new_work()).count(),
        in_flight: sum(|s| s.counters.in_flight.load(Relaxed)),
        requests_total: sum(|s| s.counters.requests_total.load(Relaxed)),
    }
}

/// A pool with all its servers.
pub fn pool_detail(pool: &Pool) -> PoolDetail {
    PoolDetail {
        name: pool.name.clone(),
        algorithm: pool.settings.algorithm.to_string(),
        servers: pool.servers.iter().map(|s| server_status(s)).collect(),
    }
}

/// One server's live status.
pub fn server_status(server: &Server) -> ServerStatus {
    let load = server.load();
    let capacity = server.capacity();
    ServerStatus {
        name: server.name.clone(),
        addr: server.addr_text.clone(),
        state: server.state().to_string(),
        pinned: server.pinned(),
        capacity,
        load,
        relative_load: load / f64::from(capacity.max(1)),
        in_flight: server.counters.in_flight.load(Relaxed),
        requests_total: server.counters.requests_total.load(Relaxed),
    }
}
