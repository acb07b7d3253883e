//! The node's topology: pools, their servers and built balancers, as one immutable
//! snapshot swapped atomically.
//!
//! A snapshot is cheap to replace: servers are shared (`Arc`) between snapshots, so a
//! state change only rebuilds the affected pool's selector, and counters and pooled
//! connections carry over.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bunsan_config::{
    Config, HashKey, HealthConfig, OutlierConfig, PoolConfig, ProxyVersion, RetryConfig, UpstreamProtocol,
};
use bunsan_core::{Algorithm, PickContext, Selector, SessionKey};

use crate::affinity::Affinity;
use crate::error::NodeError;
use crate::retry::RetryBudget;
use crate::server::Server;
use crate::upstream::IdlePool;

mod reuse;
pub use reuse::{Reused, Reuser};

/// Everything the request path reads, as of one moment.
#[derive(Debug)]
pub struct Topology {
    /// Pools in config order.
    pub pools: Vec<Arc<Pool>>,
    /// Each listener and the pool it feeds.
    pub listeners: Vec<ListenerRoute>,
}

/// A listener as the request path sees it. Connections hold the listener's `id`, which
/// stays the same across reloads (config indices shift when listeners come and go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerRoute {
    /// The listener's stable id.
    pub id: usize,
    /// Its name.
    pub name: String,
    /// The index of its pool in `pools`.
    pub pool: usize,
}

impl Topology {
    /// Builds the first snapshot from a validated config (listener ids = config order);
    /// `session_key` signs session identifiers of pools with cookie or header affinity.
    pub fn from_config(config: &Config, session_key: Option<Arc<SessionKey>>) -> Result<Self, NodeError> {
        let per_pool = sessions_per_pool(config);
        let build = |(i, p)| Pool::from_config(i, p, session_key.clone(), per_pool).map(Arc::new);
        let pools: Vec<Arc<Pool>> = config.pools.iter().enumerate().map(build).collect::<Result<_, _>>()?;
        let ids: Vec<usize> = (0..config.listeners.len()).collect();
        let listeners = routes(config, &pools, &ids)?;
        Ok(Self { pools, listeners })
    }

    /// The pool that the listener with id `id` feeds.
    pub fn pool_for_listener(&self, id: usize) -> Option<&Arc<Pool>> {
        self.listeners.iter().find(|l| l.id == id).and_then(|l| self.pools.get(l.pool))
    }

    /// The name of the listener with id `id`, if it still exists.
    pub fn listener_name(&self, id: usize) -> Option<&str> {
        self.listeners.iter().find(|l| l.id == id).map(|l| l.name.as_str())
    }

    /// The pool called `name`, with its index.
    pub fn pool(&self, name: &str) -> Option<(usize, &Arc<Pool>)> {
        self.pools.iter().enumerate().find(|(_, p)| p.name == name)
    }

    /// A copy of this snapshot with pool `index` replaced.
    pub fn with_pool(&self, index: usize, pool: Pool) -> Self {
        let mut pools = self.pools.clone();
        if let Some(slot) = pools.get_mut(index) {
            *slot = Arc::new(pool);
        }
        Self { pools, listeners: self.listeners.clone() }
    }
}

/// The session table size of each pool with affinity: `max_sessions` shared evenly.
fn sessions_per_pool(config: &Config) -> usize {
    let sticky = config.pools.iter().filter(|p| p.affinity.is_some()).count().max(1);
    (config.node.max_sessions / sticky).max(1)
}

/// The route of each listener of `config`, whose ids are `ids` (same order).
fn routes(config: &Config, pools: &[Arc<Pool>], ids: &[usize]) -> Result<Vec<ListenerRoute>, NodeError> {
    config
        .listeners
        .iter()
        .zip(ids)
        .map(|(l, &id)| {
            let pool = pools
                .iter()
                .position(|p| p.name == l.pool)
                .ok_or_else(|| NodeError::UnknownPool { listener: l.name.clone(), pool: l.pool.clone() })?;
            Ok(ListenerRoute { id, name: l.name.clone(), pool })
        })
        .collect()
}

/// Per-pool settings the request path needs.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// The balancing algorithm.
    pub algorithm: Algorithm,
    /// Where Maglev takes its key from.
    pub hash_key: Option<HashKey>,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Time from the request being sent to the response head, per attempt.
    pub response_timeout: Duration,
    /// Passive detection, if on.
    pub outlier: Option<OutlierConfig>,
    /// Replay rules.
    pub retry: RetryConfig,
    /// Active health checks, if any.
    pub health: Option<HealthConfig>,
    /// The protocol spoken to the servers.
    pub upstream: UpstreamProtocol,
    /// TLS to the servers, if on.
    pub upstream_tls: Option<Arc<crate::tls::UpstreamTls>>,
    /// The PROXY protocol header that starts every connection to a server, if any.
    pub send_proxy: Option<ProxyVersion>,
    /// The largest request body forwarded.
    pub max_body: Option<u64>,
    /// The largest response head a server may send.
    pub response_header_bytes: u64,
}

impl PoolSettings {
    /// The settings of `config`; fails only when its upstream TLS files do not load.
    pub fn from_config(config: &PoolConfig) -> Result<Self, NodeError> {
        let upstream_tls = config
            .upstream_tls
            .as_ref()
            .map(|tls| crate::tls::UpstreamTls::load(&config.name, tls, config.upstream))
            .transpose()?
            .map(Arc::new);
        Ok(Self {
            algorithm: config.algorithm,
            hash_key: config.hash_key.clone(),
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            outlier: config.outlier.clone(),
            retry: config.retry.clone(),
            health: config.health.clone(),
            upstream: config.upstream,
            upstream_tls,
            send_proxy: config.send_proxy,
            max_body: config.max_body,
            response_header_bytes: config.response_header_bytes,
        })
    }
}

/// Seed 001's representative name: servers doing the same job, and the selector that
/// chooses among them.
#[derive(Debug)]
pub struct Pool {
    /// The pool's name.
    pub name: String,
    /// Its index in the topology (config order).
    pub index: usize,
    /// Its settings.
    pub settings: PoolSettings,
    /// Its servers, in config order (selector indices refer to this order).
    pub servers: Vec<Arc<Server>>,
    /// The balancer, built over `servers` as they were when this snapshot was made.
    pub selector: Selector,
    /// Counters that belong to the pool rather than one server.
    pub counters: Arc<PoolCounters>,
    /// Session affinity (seed 000), if the pool has it.
    pub affinity: Option<Arc<Affinity>>,
    /// How many retries the pool may still make.
    pub budget: Arc<RetryBudget>,
    /// The server the control plane assigned this node ([0051]), `u32::MAX` for none.
    assigned: Arc<AtomicU32>,
}

/// Responses the node answered itself for a pool, by status.
#[derive(Debug, Default)]
pub struct PoolCounters {
    /// `503`: no server available.
    pub no_server: AtomicU64,
    /// `502`: every server tried failed.
    pub upstream_failed: AtomicU64,
    /// `504`: the response did not come in time.
    pub timeouts: AtomicU64,
    /// `400`: a request the node refused to forward.
    pub bad_requests: AtomicU64,
}

impl Pool {
    fn from_config(
        index: usize,
        config: &PoolConfig,
        key: Option<Arc<SessionKey>>,
        max_sessions: usize,
    ) -> Result<Self, NodeError> {
        let servers: Vec<Arc<Server>> = config
            .servers
            .iter()
            .map(|s| {
                let idle = IdlePool::new(config.max_idle_per_server, config.idle_timeout);
                Arc::new(Server::new(s, idle, config.health.is_some()))
            })
            .collect();
        let settings = PoolSettings::from_config(config)?;
        let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        let affinity = config
            .affinity
            .as_ref()
            .map(|a| Arc::new(Affinity::new(a, &config.name, &names, key, max_sessions)));
        let selector = Selector::build(settings.algorithm, &servers);
        let budget = Arc::new(RetryBudget::new(&config.retry));
        let name = config.name.clone();
        let assigned = Arc::new(AtomicU32::new(u32::MAX));
        Ok(Self {
            name,
            index,
            settings,
            servers,
            selector,
            counters: Arc::default(),
            affinity,
            budget,
            assigned,
        })
    }

    /// The same pool with its selector rebuilt over the servers' current states; counters
    /// and sessions carry over.
    pub fn rebuilt(&self) -> Self {
        Self {
            name: self.name.clone(),
            index: self.index,
            settings: self.settings.clone(),
            servers: self.servers.clone(),
            selector: Selector::build(self.settings.algorithm, &self.servers),
            counters: self.counters.clone(),
            affinity: self.affinity.clone(),
            budget: self.budget.clone(),
            assigned: self.assigned.clone(),
        }
    }

    /// The server called `name`.
    pub fn server(&self, name: &str) -> Option<&Arc<Server>> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// Records the server the control plane assigned (`None`: let the balancer choose).
    pub fn set_assigned(&self, server: Option<usize>) {
        self.assigned.store(server.map_or(u32::MAX, |s| s as u32), Relaxed);
    }

    /// Picks a server for new work, never one in `tried`: the control plane's assignment
    /// while it may take new work, else the balancer's choice.
    pub fn choose(&self, key: Option<u64>, tried: &[usize]) -> Option<usize> {
        let assigned = self.assigned.load(Relaxed) as usize;
        let usable =
            |i: usize| !tried.contains(&i) && self.servers.get(i).is_some_and(|s| s.state().takes_new_work());
        if usable(assigned) {
            return Some(assigned);
        }
        self.pick(key, tried)
    }

    /// Picks a server for new work, never one in `tried`.
    pub fn pick(&self, key: Option<u64>, tried: &[usize]) -> Option<usize> {
        let mut rng = fastrand::Rng::new();
        let mut ctx = PickContext::new(&mut rng).with_key(key).excluding(tried);
        self.selector.pick(&self.servers, &mut ctx)
    }
}
