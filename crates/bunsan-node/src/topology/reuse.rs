//! Building the topology of a reloaded config from the running one, so that what did not
//! change carries over: servers (state inputs, counters, pooled connections), session
//! tables, pool counters and retry budgets.
//!
//! A server is kept when its pool name, its name and its address are unchanged. A pool's
//! session table is kept only when its affinity settings and its whole server list
//! (names, addresses, order) are unchanged and the signing key is the same: sessions
//! refer to servers by position and identifiers are signed with the key, so any other
//! change starts a fresh table (clients then start new sessions).

use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use bunsan_config::{Config, PoolConfig, ServerConfig};
use bunsan_core::{Selector, SessionKey};
use bunsan_proto::admin::ReloadSummary;

use super::{routes, sessions_per_pool, Pool, PoolSettings, Topology};
use crate::affinity::Affinity;
use crate::error::NodeError;
use crate::retry::RetryBudget;
use crate::server::Server;
use crate::state::Reconfigure;
use crate::upstream::IdlePool;

/// The running topology and the config it was built from.
#[derive(Debug, Clone, Copy)]
pub struct Reuser<'a> {
    /// The running topology.
    pub old: &'a Topology,
    /// The config it came from.
    pub old_config: &'a Config,
    /// Whether the session-signing key is the one the running tables were signed with.
    pub same_key: bool,
}

/// A new topology and what the reload changes.
#[derive(Debug)]
pub struct Reused {
    /// The new snapshot (selectors to be rebuilt once `reconfigure` is applied).
    pub topology: Topology,
    /// Kept servers whose configured inputs changed, with their pool's name.
    pub reconfigure: Vec<(String, Arc<Server>, Reconfigure)>,
    /// The pools and servers added, removed and changed.
    pub summary: ReloadSummary,
}

impl Reuser<'_> {
    /// Builds the topology of `config` (listener `i` gets id `listener_ids[i]`), reusing
    /// what carries over. Fails, changing nothing, if a pool's upstream TLS files fail.
    pub fn build(
        &self,
        config: &Config,
        key: Option<Arc<SessionKey>>,
        listener_ids: &[usize],
    ) -> Result<Reused, NodeError> {
        let mut summary = ReloadSummary::default();
        let mut reconfigure = Vec::new();
        let per_pool = sessions_per_pool(config);
        let mut pools = Vec::with_capacity(config.pools.len());
        for (index, pool) in config.pools.iter().enumerate() {
            let built = self.pool(index, pool, key.clone(), per_pool, &mut summary, &mut reconfigure)?;
            pools.push(Arc::new(built));
        }
        for old in &self.old_config.pools {
            if config.pool(&old.name).is_none() {
                summary.pools_removed.push(old.name.clone());
                summary
                    .servers_removed
                    .extend(old.servers.iter().map(|s| format!("{}/{}", old.name, s.name)));
            }
        }
        let listeners = routes(config, &pools, listener_ids)?;
        Ok(Reused { topology: Topology { pools, listeners }, reconfigure, summary })
    }

    /// Pool `config`, reusing the running pool of the same name where allowed.
    fn pool(
        &self,
        index: usize,
        config: &PoolConfig,
        key: Option<Arc<SessionKey>>,
        max_sessions: usize,
        summary: &mut ReloadSummary,
        reconfigure: &mut Vec<(String, Arc<Server>, Reconfigure)>,
    ) -> Result<Pool, NodeError> {
        let settings = PoolSettings::from_config(config)?;
        let old = self.old.pool(&config.name).map(|(_, p)| p);
        let old_config = self.old_config.pool(&config.name);
        let (Some(old), Some(old_config)) = (old, old_config) else {
            summary.pools_added.push(config.name.clone());
            summary
                .servers_added
                .extend(config.servers.iter().map(|s| format!("{}/{}", config.name, s.name)));
            return Pool::from_config(index, config, key, max_sessions);
        };
        if old_config != config {
            summary.pools_changed.push(config.name.clone());
        }
        let servers = self.servers(old, old_config, config, summary, reconfigure);
        // Idle connections were opened the old way (protocol, TLS, PROXY header): a kept
        // server must not carry a request over one of them any more.
        if (&old_config.upstream, &old_config.upstream_tls, &old_config.send_proxy)
            != (&config.upstream, &config.upstream_tls, &config.send_proxy)
        {
            servers.iter().for_each(|server| server.idle.clear());
        }
        let same_servers = same_server_list(old_config, config);
        let affinity = match &config.affinity {
            Some(a) if same_servers && self.same_key && old_config.affinity.as_ref() == Some(a) => {
                old.affinity.clone()
            }
            Some(a) => {
                let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
                Some(Arc::new(Affinity::new(a, &config.name, &names, key, max_sessions)))
            }
            None => None,
        };
        let budget = if old_config.retry == config.retry {
            old.budget.clone()
        } else {
            Arc::new(RetryBudget::new(&config.retry))
        };
        let assigned = if same_servers { old.assigned.clone() } else { Arc::new(AtomicU32::new(u32::MAX)) };
        Ok(Pool {
            name: config.name.clone(),
            index,
            selector: Selector::build(settings.algorithm, &servers),
            settings,
            servers,
            counters: old.counters.clone(),
            affinity,
            budget,
            assigned,
        })
    }

    /// The servers of `config`: the running ones where name and address are unchanged,
    /// new ones otherwise.
    fn servers(
        &self,
        old: &Pool,
        old_config: &PoolConfig,
        config: &PoolConfig,
        summary: &mut ReloadSummary,
        reconfigure: &mut Vec<(String, Arc<Server>, Reconfigure)>,
    ) -> Vec<Arc<Server>> {
        let label = |s: &str| format!("{}/{s}", config.name);
        let checked = config.health.is_some();
        let mut servers = Vec::with_capacity(config.servers.len());
        for server in &config.servers {
            let kept = old.server(&server.name).filter(|s| s.addr == server.addr);
            let was = old_config.servers.iter().find(|s| s.name == server.name);
            match (kept, was) {
                (Some(kept), Some(was)) => {
                    let change = reconfiguration(was, server, old_config.health.is_some(), checked);
                    if let Some(change) = change {
                        summary.servers_changed.push(label(&server.name));
                        reconfigure.push((config.name.clone(), kept.clone(), change));
                    }
                    servers.push(kept.clone());
                }
                _ => {
                    if was.is_some() {
                        summary.servers_removed.push(label(&server.name));
                    }
                    summary.servers_added.push(label(&server.name));
                    let idle = IdlePool::new(config.max_idle_per_server, config.idle_timeout);
                    servers.push(Arc::new(Server::new(server, idle, checked)));
                }
            }
        }
        let gone = old_config.servers.iter().filter(|s| !config.servers.iter().any(|n| n.name == s.name));
        summary.servers_removed.extend(gone.map(|s| label(&s.name)));
        servers
    }
}

/// What changed in a kept server's configured inputs, if anything.
fn reconfiguration(
    was: &ServerConfig,
    now: &ServerConfig,
    was_checked: bool,
    checked: bool,
) -> Option<Reconfigure> {
    let capacity = (was.capacity != now.capacity).then_some(now.capacity);
    let admin = (was.state != now.state).then_some(now.state);
    let changed = capacity.is_some() || admin.is_some() || was_checked != checked;
    changed.then_some(Reconfigure { capacity, admin, checked })
}

/// Whether two pools list the same servers at the same addresses in the same order.
fn same_server_list(a: &PoolConfig, b: &PoolConfig) -> bool {
    a.servers.len() == b.servers.len()
        && a.servers.iter().zip(&b.servers).all(|(x, y)| x.name == y.name && x.addr == y.addr)
}
