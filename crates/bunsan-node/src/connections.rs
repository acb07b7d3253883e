//! The connection table (seed 002): which server each client connection is associated
//! with right now.
//!
//! A client connection registers once when it opens and leaves when it closes; every
//! request (or TCP relay) records the server it went to with plain atomic stores on the
//! connection's own [`Link`], so the request path takes no shared lock. When a request
//! fails over, the association is re-pointed to the second server — the client's entry
//! stays, re-associated rather than deleted — and the failover is counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// No server yet.
const NONE: u32 = u32::MAX;
/// Shards of the registry; connections open and close often, so spread the locks.
const SHARDS: usize = 16;

/// One client connection's current association.
#[derive(Debug)]
pub struct Link {
    /// The listener it came in on.
    pub listener: usize,
    /// The client's address.
    pub client: SocketAddr,
    /// When it was accepted.
    pub since: Instant,
    pool: AtomicU32,
    server: AtomicU32,
    /// Requests (or, for TCP, 1) it has sent.
    pub requests: AtomicU64,
    /// Times one of its requests moved to another server after a failure.
    pub failovers: AtomicU64,
}

impl Link {
    /// A fresh link for a connection from `client` on `listener`.
    pub fn new(listener: usize, client: SocketAddr) -> Self {
        Self {
            listener,
            client,
            since: Instant::now(),
            pool: AtomicU32::new(NONE),
            server: AtomicU32::new(NONE),
            requests: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
        }
    }

    /// Associates the connection with server `server` of pool `pool`.
    pub fn associate(&self, pool: usize, server: usize) {
        self.pool.store(pool as u32, Relaxed);
        self.server.store(server as u32, Relaxed);
    }

    /// The current association (pool index, server index), if any.
    pub fn association(&self) -> Option<(usize, usize)> {
        let (pool, server) = (self.pool.load(Relaxed), self.server.load(Relaxed));
        (pool != NONE && server != NONE).then_some((pool as usize, server as usize))
    }
}

/// Every open client connection.
#[derive(Debug)]
pub struct ConnectionTable {
    shards: Vec<Mutex<HashMap<u64, Weak<Link>>>>,
    next_id: AtomicU64,
}

impl Default for ConnectionTable {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), next_id: AtomicU64::new(1) }
    }
}

/// Keeps a connection in the table; dropping it removes the connection.
#[derive(Debug)]
pub struct Registration {
    table: Arc<ConnectionTable>,
    id: u64,
    /// The connection's link.
    pub link: Arc<Link>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.shard(self.id).remove(&self.id);
    }
}

/// One connection as the admin API lists it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its id in the table.
    pub id: u64,
    /// Its link.
    pub link: Arc<Link>,
}

impl ConnectionTable {
    /// Adds a connection.
    pub fn register(self: &Arc<Self>, link: Link) -> Registration {
        let id = self.next_id.fetch_add(1, Relaxed);
        let link = Arc::new(link);
        self.shard(id).insert(id, Arc::downgrade(&link));
        Registration { table: self.clone(), id, link }
    }

    fn shard(&self, id: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<Link>>> {
        let shard = &self.shards[(id as usize) % SHARDS];
        shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        (0..SHARDS as u64).map(|i| self.shard(i).len()).sum()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Connections per (pool, server) association, and how many have none yet.
    pub fn counts(&self) -> (HashMap<(usize, usize), usize>, usize) {
        let mut counts = HashMap::new();
        let mut unassociated = 0;
        self.for_each(|_, link| match link.association() {
            Some(key) => *counts.entry(key).or_default() += 1,
            None => unassociated += 1,
        });
        (counts, unassociated)
    }

    /// Up to `n` connections, oldest first.
    pub fn sample(&self, n: usize) -> Vec<Entry> {
        let mut all = Vec::new();
        self.for_each(|id, link| all.push(Entry { id, link: link.clone() }));
        all.sort_by_key(|e| e.link.since);
        all.truncate(n);
        all
    }

    fn for_each(&self, mut f: impl FnMut(u64, &Arc<Link>)) {
        for i in 0..SHARDS as u64 {
            let links: Vec<(u64, Arc<Link>)> =
                self.shard(i).iter().filter_map(|(id, weak)| Some((*id, weak.upgrade()?))).collect();
            for (id, link) in &links {
                f(*id, link);
            }
        }
    }
}

/// How long a connection has been open.
pub fn age(link: &Link) -> Duration {
    link.since.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_register_reassociate_and_leave() {
        let table = Arc::new(ConnectionTable::default());
        let client: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let a = table.register(Link::new(0, client));
        let b = table.register(Link::new(0, client));
        a.link.associate(0, 1);
        b.link.associate(0, 1);
        let (counts, none) = table.counts();
        assert_eq!((counts[&(0, 1)], none), (2, 0));
        // Failover: the entry stays and points at the second server.
        a.link.associate(0, 2);
        let (counts, _) = table.counts();
        assert_eq!((counts[&(0, 1)], counts[&(0, 2)]), (1, 1));
        assert_eq!(table.sample(10).len(), 2);
        drop(a);
        assert_eq!(table.len(), 1);
        drop(b);
        assert!(table.is_empty());
    }
}
