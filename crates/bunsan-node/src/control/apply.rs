//! Applies the state manager's table to this node: per server, a pin made there, a
//! reported up/down, a pinned capacity (through the state board) and the reported load
//! (an atomic on the server).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bunsan_core::ServerState;
use bunsan_proto::control::{ServerKey, Table, TableServer};

use crate::clock;
use crate::state::{Command, StateBoard};

/// What was last applied to one server, to skip rows that did not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Applied {
    pin: Option<ServerState>,
    reported_down: Option<bool>,
    capacity: Option<u32>,
}

/// The node's copy of the table, applied.
#[derive(Debug)]
pub struct Applier {
    board: Arc<StateBoard>,
    /// (pool index, server index) → what was applied.
    applied: Mutex<HashMap<(usize, usize), Applied>>,
    /// When the state manager was last heard from ([`clock`] ms).
    pub last_heard: AtomicU64,
    stale: AtomicBool,
    /// The version of the table applied last (changes apply only on top of it).
    version: AtomicU64,
}

impl Applier {
    /// An applier for `board`'s topology.
    pub fn new(board: Arc<StateBoard>) -> Self {
        Self {
            board,
            applied: Mutex::default(),
            last_heard: AtomicU64::new(clock::now_ms()),
            stale: AtomicBool::new(false),
            version: AtomicU64::new(0),
        }
    }

    /// The state manager spoke (a table or a heartbeat).
    pub fn heard(&self) {
        self.last_heard.store(clock::now_ms(), Relaxed);
        if self.stale.swap(false, Relaxed) {
            tracing::info!("control plane heard from again");
        }
    }

    /// A new session begins (another control instance may number its tables afresh).
    pub fn new_session(&self) {
        self.heard();
    }

    /// Applies a whole table; servers this node does not know are ignored, servers the
    /// table no longer lists lose what the table had set.
    pub fn apply(&self, table: &Table) {
        self.heard();
        let listed: HashMap<(usize, usize), Applied> = table
            .servers
            .iter()
            .filter_map(|row| Some((self.locate(row)?, row)))
            .map(|(k, r)| (k, self.apply_row(k, r)))
            .collect();
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<(usize, usize)> = applied.keys().filter(|k| !listed.contains_key(k)).copied().collect();
        self.clear(&gone, &mut applied);
        self.update(listed, &mut applied);
        self.version.store(table.version, Relaxed);
    }

    /// Applies the changes from version `from` to `version`; refuses (so the caller
    /// reconnects for a whole table) if this node does not hold `from`.
    pub fn apply_changes(
        &self,
        from: u64,
        version: u64,
        rows: &[TableServer],
        removed: &[ServerKey],
    ) -> bool {
        if self.version.load(Relaxed) != from {
            return false;
        }
        self.heard();
        let changed = rows
            .iter()
            .filter_map(|row| Some((self.locate(row)?, row)))
            .map(|(k, r)| (k, self.apply_row(k, r)))
            .collect();
        let gone: Vec<(usize, usize)> =
            removed.iter().filter_map(|k| self.locate_key(&k.pool, &k.server)).collect();
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        self.clear(&gone, &mut applied);
        self.update(changed, &mut applied);
        self.version.store(version, Relaxed);
        true
    }

    /// Servers the table no longer lists lose what it had set.
    fn clear(&self, gone: &[(usize, usize)], applied: &mut HashMap<(usize, usize), Applied>) {
        for &key in gone {
            self.command(key, Applied { pin: None, reported_down: None, capacity: None }, applied);
            applied.remove(&key);
            self.set_load(key, None);
        }
    }

    /// Sends the state board what differs from what was applied before.
    fn update(
        &self,
        wanted: HashMap<(usize, usize), Applied>,
        applied: &mut HashMap<(usize, usize), Applied>,
    ) {
        for (key, wanted) in wanted {
            if applied.get(&key) != Some(&wanted) {
                self.command(key, wanted, applied);
            }
        }
    }

    /// What `row` asks of server `key`; its load is set at once (an atomic).
    fn apply_row(&self, key: (usize, usize), row: &TableServer) -> Applied {
        self.set_load(key, row.load.filter(|l| l.is_finite() && *l >= 0.0));
        let state = row.state.as_deref().and_then(|s| s.parse::<ServerState>().ok());
        match row.pinned {
            true => Applied { pin: state, reported_down: None, capacity: row.capacity },
            false => {
                Applied { pin: None, reported_down: state.map(|s| s == ServerState::Down), capacity: None }
            }
        }
    }

    fn command(&self, key: (usize, usize), wanted: Applied, applied: &mut HashMap<(usize, usize), Applied>) {
        let command = Command::Control {
            pin: wanted.pin,
            reported_down: wanted.reported_down,
            capacity: wanted.capacity,
        };
        match self.board.apply_at(key.0, key.1, command) {
            Ok(_) => {
                applied.insert(key, wanted);
            }
            Err(error) => tracing::warn!(%error, "cannot apply the control plane's table"),
        }
    }

    fn locate(&self, row: &TableServer) -> Option<(usize, usize)> {
        self.locate_key(&row.pool, &row.server)
    }

    fn locate_key(&self, pool: &str, server: &str) -> Option<(usize, usize)> {
        let topology = self.board.topology();
        let (pool, found) = topology.pool(pool)?;
        let server = found.servers.iter().position(|s| s.name == server)?;
        Some((pool, server))
    }

    fn set_load(&self, (pool, server): (usize, usize), load: Option<f64>) {
        if let Some(server) = self.board.topology().pools.get(pool).and_then(|p| p.servers.get(server)) {
            server.set_reported_load(load);
        }
    }

    /// The state manager has been silent too long: drop reported loads and up/down
    /// reports (the node's own observation takes over), keep pins.
    pub fn go_stale(&self, after: Duration) {
        if self.stale.swap(true, Relaxed) {
            return;
        }
        tracing::warn!(?after, "control plane silent; falling back to this node's own observation");
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<((usize, usize), Applied)> = applied.iter().map(|(k, a)| (*k, *a)).collect();
        for (key, was) in keys {
            self.set_load(key, None);
            self.command(key, Applied { reported_down: None, ..was }, &mut applied);
        }
    }

    /// Requests forwarded by every server so far (pull mode fetches only after traffic).
    pub fn requests_forwarded(&self) -> u64 {
        let topology = self.board.topology();
        topology.pools.iter().flat_map(|p| &p.servers).map(|s| s.counters.requests_total.load(Relaxed)).sum()
    }

    /// The names of the node's pools.
    pub fn pool_names(&self) -> Vec<String> {
        self.board.topology().pools.iter().map(|p| p.name.clone()).collect()
    }

    /// Records the server the state manager assigned this node in `pool`.
    pub fn assigned(&self, pool: &str, server: Option<&str>) {
        let topology = self.board.topology();
        let Some((_, found)) = topology.pool(pool) else { return };
        let index = server.and_then(|name| found.servers.iter().position(|s| s.name == name));
        found.set_assigned(index);
    }
}
