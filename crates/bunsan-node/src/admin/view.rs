//! Read-only views of the topology in the admin API's types.

use std::sync::atomic::Ordering::Relaxed;

use bunsan_core::SessionId;

use bunsan_proto::admin::{
    ConnectionInfo, ConnectionsReport, PoolDetail, PoolSessions, PoolSummary, ServerConnections,
    ServerSessions, ServerStatus, SessionInfo, SessionsReport,
};

use crate::connections::ConnectionTable;

use crate::server::Server;
use crate::topology::{Pool, Topology};

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
        load_source: if server.reported_load().is_some() { "control" } else { "node" }.to_owned(),
        load_age_ms: server.reported_age_ms(),
        in_flight: server.counters.in_flight.load(Relaxed),
        requests_total: server.counters.requests_total.load(Relaxed),
    }
}

/// How many live sessions `GET /v1/sessions` shows as a sample.
const SESSION_SAMPLE: usize = 20;

/// Every pool's sessions, as `GET /v1/sessions` shows them.
pub fn sessions(pools: &[std::sync::Arc<Pool>]) -> SessionsReport {
    let mut report = SessionsReport { pools: Vec::new(), sample: Vec::new() };
    for pool in pools {
        let Some(affinity) = &pool.affinity else { continue };
        let name_of =
            |index: u32| pool.servers.get(index as usize).map_or("?", |s| s.name.as_str()).to_owned();
        let servers = affinity
            .table
            .per_server()
            .into_iter()
            .map(|(index, sessions)| ServerSessions { server: name_of(index), sessions })
            .collect();
        report.pools.push(PoolSessions {
            pool: pool.name.clone(),
            mode: affinity.mode.as_str().to_owned(),
            active: affinity.table.len_live(),
            servers,
        });
        let room = SESSION_SAMPLE.saturating_sub(report.sample.len());
        report.sample.extend(affinity.table.sample(room).into_iter().map(|s| SessionInfo {
            id: SessionId(s.key).to_string(),
            pool: pool.name.clone(),
            server: name_of(s.server),
            age_seconds: s.age.as_secs_f64(),
            client_connections: s.clients,
            idle_seconds: s.idle_for.map(|d| d.as_secs_f64()),
        }));
    }
    report
}

/// How many connections `GET /v1/connections` shows as a sample.
const CONNECTION_SAMPLE: usize = 20;

/// The connection table, as `GET /v1/connections` shows it.
pub fn connections(table: &ConnectionTable, topology: &Topology) -> ConnectionsReport {
    let pools = &topology.pools;
    let name = |pool: usize, server: usize| {
        let pool = pools.get(pool)?;
        Some((pool.name.clone(), pool.servers.get(server)?.name.clone()))
    };
    let (counts, unassociated) = table.counts();
    let mut servers: Vec<ServerConnections> = counts
        .into_iter()
        .filter_map(|((p, s), connections)| {
            let (pool, server) = name(p, s)?;
            Some(ServerConnections { pool, server, connections })
        })
        .collect();
    servers.sort_by(|a, b| (&a.pool, &a.server).cmp(&(&b.pool, &b.server)));
    let sample = table
        .sample(CONNECTION_SAMPLE)
        .into_iter()
        .map(|entry| {
            let link = &entry.link;
            let (pool, server) = link.association().and_then(|(p, s)| name(p, s)).unzip();
            ConnectionInfo {
                id: entry.id,
                client: link.client.to_string(),
                listener: topology.listener_name(link.listener).unwrap_or_default().to_owned(),
                pool,
                server,
                age_seconds: crate::connections::age(link).as_secs_f64(),
                requests: link.requests.load(Relaxed),
                failovers: link.failovers.load(Relaxed),
            }
        })
        .collect();
    ConnectionsReport { total: table.len(), unassociated, servers, sample }
}
