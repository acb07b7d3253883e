//! The load table: every known server (registered by an agent, or pinned), its latest
//! report and its pin, and the row subscribers see, with a version that moves whenever
//! a row does.
//!
//! Pure bookkeeping: the caller passes the time, so tests need no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bunsan_core::ServerState;
use bunsan_proto::control::{Health, Report, Source, Table as TableView, TableServer};
use tokio::time::Instant;

use crate::store::Persisted;
use crate::validate;

/// A server's identity: `(pool, server)`.
pub type Key = (String, String);

/// An operator's pin, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PinSpec {
    /// The state to show.
    pub state: ServerState,
    /// The load to show instead of the reported one.
    pub load: Option<f64>,
    /// The capacity subscribers should use.
    pub capacity: Option<u32>,
}

/// The latest report for one server.
#[derive(Debug, Clone, Copy)]
struct Sample {
    load: f64,
    health: Health,
    at: Instant,
    /// Cleared by [`Table::expire`] once the report is older than the TTL; rows read this
    /// flag rather than the clock so that content and version always change together.
    fresh: bool,
}

/// Everything known about one server.
#[derive(Debug, Clone, Default)]
struct Entry {
    /// Its address, from the agent that registered it.
    addr: Option<String>,
    /// The agent that registered it; `None` for a server only an operator pinned.
    agent: Option<String>,
    report: Option<Sample>,
    pin: Option<PinSpec>,
}

/// What a subscriber acts on: a row without its address and age.
#[derive(Debug, Clone, Copy, PartialEq)]
struct View {
    state: Option<ServerState>,
    load: Option<f64>,
    capacity: Option<u32>,
    source: Source,
}

impl Entry {
    fn fresh_report(&self) -> Option<&Sample> {
        self.report.as_ref().filter(|s| s.fresh)
    }

    fn view(&self) -> View {
        let report = self.fresh_report();
        match (self.pin, report) {
            (Some(pin), report) => View {
                state: Some(pin.state),
                load: pin.load.or(report.map(|r| r.load)),
                capacity: pin.capacity,
                source: Source::Pin,
            },
            (None, Some(report)) => View {
                state: Some(if report.health == Health::Down {
                    ServerState::Down
                } else {
                    ServerState::Ready
                }),
                load: Some(report.load),
                capacity: None,
                source: Source::Agent,
            },
            (None, None) => View { state: None, load: None, capacity: None, source: Source::None },
        }
    }

    fn row(&self, (pool, server): &Key, now: Instant) -> TableServer {
        let view = self.view();
        TableServer {
            pool: pool.clone(),
            server: server.clone(),
            addr: self.addr.clone(),
            state: view.state.map(|s| s.as_str().to_owned()),
            load: view.load,
            capacity: view.capacity,
            pinned: self.pin.is_some(),
            source: view.source,
            age_ms: self.report.map(|r| millis(now.saturating_duration_since(r.at))),
        }
    }
}

/// One entry of a report batch that cannot be accepted; the whole batch is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportError {
    /// Its position in the array.
    pub index: usize,
    /// `pool/server`, when the entry got far enough to name one.
    pub key: Option<String>,
    /// What is wrong.
    pub why: String,
}

impl std::fmt::Display for ReportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(key) => write!(f, "report {} ({key}): {}", self.index, self.why),
            None => write!(f, "report {}: {}", self.index, self.why),
        }
    }
}

impl std::error::Error for ReportError {}

/// A ready server of a pool, as the assigner weighs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadyServer {
    /// Its name.
    pub name: String,
    /// Its load (0 when a pin says ready but nothing measured it).
    pub load: f64,
    /// The pinned capacity, else 1.
    pub capacity: u32,
}

/// The load table.
#[derive(Debug)]
pub struct Table {
    entries: BTreeMap<Key, Entry>,
    ttl: Duration,
    version: u64,
}

impl Table {
    /// An empty table at version 1 whose reports count for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self::starting_at(ttl, 1)
    }

    /// An empty table at `version`.
    pub fn starting_at(ttl: Duration, version: u64) -> Self {
        Self { entries: BTreeMap::new(), ttl, version }
    }

    /// The current version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Makes the catalogue match the registrations and pins in `persisted`, keeping the
    /// reports of servers still registered. Returns whether any row changed.
    pub fn rebuild(&mut self, persisted: &Persisted) -> bool {
        let mut entries: BTreeMap<Key, Entry> = BTreeMap::new();
        for registration in persisted.agents.values() {
            for watched in &registration.servers {
                let entry = entries.entry((watched.pool.clone(), watched.server.clone())).or_default();
                entry.addr = Some(watched.addr.clone());
                entry.agent = Some(registration.agent.clone());
            }
        }
        for (pool, servers) in &persisted.pins {
            for (server, pin) in servers {
                // Persisted pins were checked on the way in (request or store load).
                if let Ok(spec) = validate::pin(pin) {
                    entries.entry((pool.clone(), server.clone())).or_default().pin = Some(spec);
                }
            }
        }
        for (key, entry) in entries.iter_mut().filter(|(_, e)| e.agent.is_some()) {
            entry.report = self.entries.get(key).and_then(|e| e.report);
        }
        let changed = !same_rows(&self.entries, &entries);
        self.entries = entries;
        self.bump_if(changed)
    }

    /// Checks every entry of a batch against the catalogue, naming the first bad one.
    pub fn check_reports(&self, reports: &[Report]) -> Result<(), ReportError> {
        for (index, report) in reports.iter().enumerate() {
            let key = format!("{}/{}", report.pool, report.server);
            let fail = |why: String| ReportError { index, key: Some(key.clone()), why };
            let registered = self
                .entries
                .get(&(report.pool.clone(), report.server.clone()))
                .is_some_and(|e| e.agent.is_some());
            if !registered {
                return Err(fail(format!("unknown server: no agent registered {key}")));
            }
            validate::load(report.load).map_err(fail)?;
        }
        Ok(())
    }

    /// Records a batch that [`Table::check_reports`] accepted. Returns whether any row
    /// changed, and the agents whose servers reported.
    pub fn apply_reports(&mut self, reports: &[Report], now: Instant) -> (bool, BTreeSet<String>) {
        let mut changed = false;
        let mut agents = BTreeSet::new();
        for report in reports {
            let Some(entry) = self.entries.get_mut(&(report.pool.clone(), report.server.clone())) else {
                continue;
            };
            let before = entry.view();
            entry.report = Some(Sample { load: report.load, health: report.state, at: now, fresh: true });
            changed |= entry.view() != before;
            agents.extend(entry.agent.clone());
        }
        (self.bump_if(changed), agents)
    }

    /// Lets reports older than the TTL go stale. Returns whether any row changed.
    pub fn expire(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for entry in self.entries.values_mut() {
            let Some(at) = entry.fresh_report().map(|s| s.at) else { continue };
            if now.saturating_duration_since(at) < self.ttl {
                continue;
            }
            let before = entry.view();
            if let Some(sample) = &mut entry.report {
                sample.fresh = false;
            }
            changed |= entry.view() != before;
        }
        self.bump_if(changed)
    }

    /// The whole table as subscribers see it.
    pub fn snapshot(&self, now: Instant) -> TableView {
        TableView {
            version: self.version,
            servers: self.entries.iter().map(|(key, entry)| entry.row(key, now)).collect(),
        }
    }

    /// One row; a server the table does not know shows as an empty row.
    pub fn row(&self, pool: &str, server: &str, now: Instant) -> TableServer {
        let key = (pool.to_owned(), server.to_owned());
        self.entries.get(&key).cloned().unwrap_or_default().row(&key, now)
    }

    /// Whether any server of `pool` is known.
    pub fn has_pool(&self, pool: &str) -> bool {
        self.pool_entries(pool).next().is_some()
    }

    /// The servers of `pool` whose state is `ready`.
    pub fn ready_servers(&self, pool: &str) -> Vec<ReadyServer> {
        self.pool_entries(pool)
            .filter_map(|((_, server), entry)| {
                let view = entry.view();
                (view.state == Some(ServerState::Ready)).then(|| ReadyServer {
                    name: server.clone(),
                    load: view.load.unwrap_or(0.0),
                    capacity: view.capacity.unwrap_or(1),
                })
            })
            .collect()
    }

    fn pool_entries<'a>(&'a self, pool: &'a str) -> impl Iterator<Item = (&'a Key, &'a Entry)> + 'a {
        self.entries.range((pool.to_owned(), String::new())..).take_while(move |((p, _), _)| p == pool)
    }

    fn bump_if(&mut self, changed: bool) -> bool {
        if changed {
            self.version += 1;
        }
        changed
    }
}

/// Whether two catalogues show the same rows (ages aside).
fn same_rows(a: &BTreeMap<Key, Entry>, b: &BTreeMap<Key, Entry>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, ea), (kb, eb))| ka == kb && ea.addr == eb.addr && ea.view() == eb.view())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Change;
    use bunsan_proto::control::{AgentRegistration, Pin, Watched};

    const TTL: Duration = Duration::from_secs(5);

    fn persisted(servers: &[(&str, &str)]) -> Persisted {
        let mut p = Persisted::default();
        let servers = servers
            .iter()
            .map(|(pool, server)| Watched {
                pool: (*pool).into(),
                server: (*server).into(),
                addr: "10.0.0.1:80".into(),
            })
            .collect();
        p.apply(&Change::Agent(AgentRegistration { agent: "a1".into(), method: "sockets".into(), servers }));
        p
    }

    fn report(server: &str, load: f64, state: Health) -> Report {
        Report { pool: "app".into(), server: server.into(), load, state }
    }

    fn table(servers: &[(&str, &str)]) -> Table {
        let mut table = Table::new(TTL);
        table.rebuild(&persisted(servers));
        table
    }

    #[test]
    fn rows_follow_reports_and_are_sorted() {
        let mut t = table(&[("web", "w1"), ("app", "h2"), ("app", "h1")]);
        let now = Instant::now();
        let keys: Vec<_> =
            t.snapshot(now).servers.into_iter().map(|r| format!("{}/{}", r.pool, r.server)).collect();
        assert_eq!(keys, ["app/h1", "app/h2", "web/w1"]);
        let v = t.version();
        assert!(t.apply_reports(&[report("h1", 20.0, Health::Up), report("h2", 3.0, Health::Down)], now).0);
        assert_eq!(t.version(), v + 1);
        let rows = t.snapshot(now).servers;
        assert_eq!(
            (rows[0].state.as_deref(), rows[0].load, rows[0].source),
            (Some("ready"), Some(20.0), Source::Agent)
        );
        assert_eq!(rows[1].state.as_deref(), Some("down"));
        assert_eq!((rows[2].state.as_deref(), rows[2].source, rows[2].age_ms), (None, Source::None, None));
        // The same figures again move nothing.
        assert!(!t.apply_reports(&[report("h1", 20.0, Health::Up)], now).0);
        assert_eq!(t.version(), v + 1);
    }

    #[test]
    fn stale_reports_empty_the_row_and_bump_the_version() {
        let mut t = table(&[("app", "h1")]);
        let start = Instant::now();
        t.apply_reports(&[report("h1", 1.0, Health::Up)], start);
        let v = t.version();
        assert!(!t.expire(start + TTL - Duration::from_millis(1)));
        assert!(t.expire(start + TTL));
        assert_eq!(t.version(), v + 1);
        let row = t.row("app", "h1", start + TTL);
        assert_eq!((row.state, row.load, row.source, row.age_ms), (None, None, Source::None, Some(5000)));
        assert!(!t.expire(start + TTL * 2), "already stale");
    }

    #[test]
    fn pins_override_and_fall_back_to_the_reported_load() {
        let mut p = persisted(&[("app", "h1")]);
        let mut t = Table::new(TTL);
        t.rebuild(&p);
        let now = Instant::now();
        t.apply_reports(&[report("h1", 7.0, Health::Up)], now);
        let pin = Pin { state: "maint".into(), load: None, capacity: Some(3) };
        p.apply(&Change::Pin { pool: "app".into(), server: "h1".into(), pin: Some(pin) });
        assert!(t.rebuild(&p));
        let row = t.row("app", "h1", now);
        assert_eq!((row.state.as_deref(), row.load, row.capacity), (Some("maint"), Some(7.0), Some(3)));
        assert_eq!((row.pinned, row.source), (true, Source::Pin));
        assert!(t.ready_servers("app").is_empty());
    }

    #[test]
    fn a_pin_alone_creates_a_row() {
        let mut p = Persisted::default();
        let pin = Pin { state: "ready".into(), load: Some(4.0), capacity: Some(2) };
        p.apply(&Change::Pin { pool: "db".into(), server: "d1".into(), pin: Some(pin) });
        let mut t = Table::new(TTL);
        assert!(t.rebuild(&p));
        assert!(t.has_pool("db") && !t.has_pool("d"));
        assert_eq!(t.ready_servers("db"), [ReadyServer { name: "d1".into(), load: 4.0, capacity: 2 }]);
        let error = t.check_reports(&[Report {
            pool: "db".into(),
            server: "d1".into(),
            load: 1.0,
            state: Health::Up,
        }]);
        assert!(error.unwrap_err().why.contains("no agent registered db/d1"));
    }

    #[test]
    fn bad_reports_name_the_entry() {
        let t = table(&[("app", "h1")]);
        let error =
            t.check_reports(&[report("h1", 1.0, Health::Up), report("h9", 1.0, Health::Up)]).unwrap_err();
        assert_eq!(error.to_string(), "report 1 (app/h9): unknown server: no agent registered app/h9");
        let error = t.check_reports(&[report("h1", -1.0, Health::Up)]).unwrap_err();
        assert_eq!(error.index, 0);
        assert!(error.why.contains("finite number ≥ 0"), "{error}");
        assert!(t.check_reports(&[report("h1", f64::INFINITY, Health::Up)]).is_err());
    }

    #[test]
    fn rebuild_keeps_reports_and_moves_only_when_rows_do() {
        let mut t = table(&[("app", "h1")]);
        let now = Instant::now();
        t.apply_reports(&[report("h1", 2.0, Health::Up)], now);
        let v = t.version();
        assert!(!t.rebuild(&persisted(&[("app", "h1")])));
        assert_eq!(t.row("app", "h1", now).load, Some(2.0));
        assert!(t.rebuild(&persisted(&[("app", "h2")])));
        assert_eq!(t.version(), v + 1);
        assert!(!t.has_pool("web") && t.row("app", "h1", now).source == Source::None);
    }
}
