//! The state manager proper: the table, the registrations, the assignments, and the
//! channel every change-mode watcher listens on. HTTP handlers call into it; it knows
//! nothing of HTTP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bunsan_proto::control::{
    AgentRegistration, Assignment, Event, Pin, RegisteredAgent, RegisteredSubscriber, Registry, Report,
    ServerKey, Subscription, Table as TableView, TableServer,
};
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::assign::Assigner;
use crate::error::RequestError;
use crate::names::check_name;
use crate::store::{Change, Persisted, RemoteChange, Store};
use crate::table::Table;
use crate::validate;

/// A table as pushed to change-mode watchers: serialized once, however many watch it.
#[derive(Debug)]
pub struct Published {
    /// Its version.
    pub version: u64,
    /// `Event::Table` as one line of compact JSON, without the newline.
    pub line: Bytes,
    /// `Event::Changes` from the previous published version, when there is one: what a
    /// watcher that holds that version is sent instead of the whole table (one server
    /// going down should not cost every subscriber the whole table).
    pub changes: Option<(u64, Bytes)>,
    /// The rows, to compute the next publication's changes from.
    rows: Vec<TableServer>,
}

/// What the lock protects.
#[derive(Debug)]
struct Inner {
    persisted: Persisted,
    table: Table,
    assigner: Assigner,
    /// Open watch streams per subscriber id.
    connected: HashMap<String, usize>,
    /// When each agent's servers last reported.
    last_report: HashMap<String, Instant>,
}

/// The state manager. Shared by every connection and the maintenance loop.
#[derive(Debug)]
pub struct Manager {
    inner: Mutex<Inner>,
    /// Serializes changes to the durable state, so the store sees them in order and a
    /// change is applied only after it was saved.
    persist: tokio::sync::Mutex<()>,
    store: Store,
    published: watch::Sender<Arc<Published>>,
}

impl Manager {
    /// A manager over what `store` held at start.
    pub fn new(persisted: Persisted, store: Store, report_ttl: std::time::Duration) -> Self {
        let mut table = Table::starting_at(report_ttl, initial_version());
        table.rebuild(&persisted);
        let first = publication(&table, Instant::now(), None);
        let inner = Inner {
            persisted,
            table,
            assigner: Assigner::default(),
            connected: HashMap::new(),
            last_report: HashMap::new(),
        };
        let (published, _) = watch::channel(Arc::new(first));
        Self { inner: Mutex::new(inner), persist: tokio::sync::Mutex::new(()), store, published }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves `Inner` consistent, so a panicked holder harms nothing.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store, for the maintenance loop's [`Store::next_remote`].
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Pushes the table to change-mode watchers if `changed`.
    fn publish_if(&self, changed: bool, inner: &Inner) {
        if changed {
            let previous = self.published.borrow().clone();
            let next = publication(&inner.table, Instant::now(), Some(&previous));
            self.published.send_replace(Arc::new(next));
        }
    }

    /// Saves the change `make` builds from the current durable state, then applies it.
    /// Returns whether it changed anything (nothing is written if not). `make` runs in
    /// this change's turn, so what it read cannot change under it.
    async fn change(&self, make: impl FnOnce(&Persisted) -> Change) -> Result<bool, RequestError> {
        let _turn = self.persist.lock().await;
        let mut next = self.lock().persisted.clone();
        let change = make(&next);
        if !next.apply(&change) {
            return Ok(false);
        }
        self.store.save(&change, &next).await?;
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.persisted = next;
        let changed = inner.table.rebuild(&inner.persisted);
        self.publish_if(changed, inner);
        Ok(true)
    }

    /// `POST /v1/agents`.
    pub async fn register_agent(&self, registration: AgentRegistration) -> Result<(), RequestError> {
        validate::agent(&registration).map_err(RequestError::Invalid)?;
        let name = registration.agent.clone();
        let servers = registration.servers.len();
        if self.change(|_| Change::Agent(registration)).await? {
            tracing::info!(agent = %name, servers, "agent registered");
        }
        Ok(())
    }

    /// `POST /v1/reports`: all or nothing.
    pub async fn report(&self, reports: Vec<Report>) -> Result<usize, RequestError> {
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            inner.table.check_reports(&reports).map_err(|e| RequestError::Invalid(e.to_string()))?;
            let now = Instant::now();
            let (changed, agents) = inner.table.apply_reports(&reports, now);
            inner.last_report.extend(agents.into_iter().map(|agent| (agent, now)));
            self.publish_if(changed, inner);
        }
        if let Err(error) = self.store.share_reports(&reports).await {
            tracing::warn!(%error, "cannot share reports with other control instances");
        }
        Ok(reports.len())
    }

    /// `POST /v1/subscribers`. The same name and kind get the same id back, so a
    /// restarted node keeps its assignments.
    pub async fn subscribe(&self, subscription: Subscription) -> Result<String, RequestError> {
        validate::subscription(&subscription).map_err(RequestError::Invalid)?;
        let (name, delivery) = (subscription.name.clone(), subscription.delivery);
        let mut id = String::new();
        self.change(|persisted| {
            let known =
                persisted.subscribers.iter().find(|(_, s)| s.name == name && s.kind == subscription.kind);
            id = known.map_or_else(|| fresh_id(persisted), |(id, _)| id.clone());
            Change::Subscriber { id: id.clone(), subscription }
        })
        .await?;
        tracing::info!(subscriber = %name, %id, ?delivery, "subscriber registered");
        Ok(id)
    }

    /// The subscription of `id`, or the 400 that tells the caller to register.
    pub fn subscription(&self, id: &str) -> Result<Subscription, RequestError> {
        self.lock().persisted.subscribers.get(id).cloned().ok_or_else(|| {
            RequestError::invalid(format!("unknown subscriber {id:?}: register first (POST /v1/subscribers)"))
        })
    }

    /// `PUT /v1/pins/{pool}/{server}`.
    pub async fn pin(&self, pool: &str, server: &str, pin: Pin) -> Result<TableServer, RequestError> {
        check_key(pool, server)?;
        validate::pin(&pin).map_err(RequestError::Invalid)?;
        let state = pin.state.clone();
        let change = Change::Pin { pool: pool.to_owned(), server: server.to_owned(), pin: Some(pin) };
        self.change(|_| change).await?;
        tracing::info!(pool, server, %state, "operator pinned a server");
        Ok(self.row(pool, server))
    }

    /// `DELETE /v1/pins/{pool}/{server}`.
    pub async fn unpin(&self, pool: &str, server: &str) -> Result<TableServer, RequestError> {
        check_key(pool, server)?;
        let change = Change::Pin { pool: pool.to_owned(), server: server.to_owned(), pin: None };
        if !self.change(|_| change).await? {
            return Err(RequestError::NotFound(format!("{pool}/{server} is not pinned")));
        }
        tracing::info!(pool, server, "operator released a pin");
        Ok(self.row(pool, server))
    }

    fn row(&self, pool: &str, server: &str) -> TableServer {
        self.lock().table.row(pool, server, Instant::now())
    }

    /// `GET /v1/state`: the table as of now (reports that just went stale included).
    pub fn table(&self) -> TableView {
        let mut guard = self.lock();
        let now = Instant::now();
        let changed = guard.table.expire(now);
        self.publish_if(changed, &guard);
        guard.table.snapshot(now)
    }

    /// Lets stale reports go; the maintenance loop calls it a few times a second.
    pub fn expire(&self) {
        let mut guard = self.lock();
        let changed = guard.table.expire(Instant::now());
        self.publish_if(changed, &guard);
    }

    /// The current version.
    pub fn version(&self) -> u64 {
        self.published.borrow().version
    }

    /// A receiver that wakes on every new version.
    pub fn watch(&self) -> watch::Receiver<Arc<Published>> {
        self.published.subscribe()
    }

    /// Counts an open watch stream of `id` until the guard is dropped.
    pub fn connect(self: &Arc<Self>, id: Option<&str>) -> Connected {
        if let Some(id) = id {
            *self.lock().connected.entry(id.to_owned()).or_default() += 1;
        }
        Connected { manager: self.clone(), id: id.map(str::to_owned) }
    }

    /// `GET /v1/assign/{pool}`.
    pub fn assign(&self, pool: &str, subscriber: &str) -> Result<Assignment, RequestError> {
        check_name("pool", pool).map_err(RequestError::Invalid)?;
        self.subscription(subscriber)?;
        let mut guard = self.lock();
        let inner = &mut *guard;
        if !inner.table.has_pool(pool) {
            return Err(RequestError::invalid(format!("unknown pool {pool:?}: no agent registered it")));
        }
        let ready = inner.table.ready_servers(pool);
        let server = inner.assigner.assign(pool, subscriber, &ready);
        Ok(Assignment { pool: pool.to_owned(), server })
    }

    /// `GET /v1/registry`.
    pub fn registry(&self) -> Registry {
        let inner = self.lock();
        let now = Instant::now();
        let agents = inner
            .persisted
            .agents
            .values()
            .map(|a| RegisteredAgent {
                agent: a.agent.clone(),
                method: a.method.clone(),
                servers: a.servers.clone(),
                last_report_ms: inner.last_report.get(&a.agent).map(|at| millis_since(*at, now)),
            })
            .collect();
        let subscribers = inner
            .persisted
            .subscribers
            .iter()
            .map(|(id, s)| RegisteredSubscriber {
                id: id.clone(),
                name: s.name.clone(),
                kind: s.kind.clone(),
                delivery: s.delivery,
                connected: inner.connected.get(id).is_some_and(|n| *n > 0),
            })
            .collect();
        Registry { agents, subscribers }
    }

    /// Applies what another control instance changed. Takes the change turn, so a local
    /// change in flight is not saved over by a copy from before the remote one.
    pub async fn apply_remote(&self, change: RemoteChange) {
        let _turn = self.persist.lock().await;
        let change = self.store.settle(change);
        let mut guard = self.lock();
        let inner = &mut *guard;
        let changed = match change {
            RemoteChange::Persisted(persisted) => {
                inner.persisted = persisted;
                inner.table.rebuild(&inner.persisted)
            }
            RemoteChange::Reports(reports) => {
                // Checked one by one: a registration that changed meanwhile spoils only
                // its own servers' reports, not the whole batch.
                let mut known = Vec::with_capacity(reports.len());
                for report in reports {
                    match inner.table.check_reports(std::slice::from_ref(&report)) {
                        Ok(()) => known.push(report),
                        Err(error) => {
                            tracing::warn!(%error, "ignoring a report shared by another control instance")
                        }
                    }
                }
                let now = Instant::now();
                let (changed, agents) = inner.table.apply_reports(&known, now);
                inner.last_report.extend(agents.into_iter().map(|agent| (agent, now)));
                changed
            }
        };
        self.publish_if(changed, inner);
    }
}

/// An open watch stream, counted in the registry while it lives.
#[derive(Debug)]
pub struct Connected {
    manager: Arc<Manager>,
    id: Option<String>,
}

impl Drop for Connected {
    fn drop(&mut self) {
        let Some(id) = &self.id else { return };
        let mut inner = self.manager.lock();
        if let Some(n) = inner.connected.get_mut(id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.connected.remove(id);
            }
        }
    }
}

/// Serializes one table event as a line.
pub fn event_line(event: &Event) -> Bytes {
    // Plain data with finite numbers cannot fail to serialize; an empty line would only
    // be skipped by the reader.
    Bytes::from(serde_json::to_vec(event).unwrap_or_default())
}

fn publication(table: &Table, now: Instant, previous: Option<&Published>) -> Published {
    let view = table.snapshot(now);
    let line = event_line(&Event::Table(view.clone()));
    let changes = previous.map(|p| (p.version, event_line(&changes_between(p, &view))));
    Published { version: view.version, line, changes, rows: view.servers }
}

/// The rows of `next` that are new or differ from `previous` (ages aside: they move all
/// the time), and the rows that left.
fn changes_between(previous: &Published, next: &TableView) -> Event {
    let key = |r: &TableServer| (r.pool.clone(), r.server.clone());
    let before: HashMap<(String, String), &TableServer> = previous.rows.iter().map(|r| (key(r), r)).collect();
    let same = |a: &TableServer, b: &TableServer| {
        TableServer { age_ms: None, ..a.clone() } == TableServer { age_ms: None, ..b.clone() }
    };
    let servers =
        next.servers.iter().filter(|r| !before.get(&key(r)).is_some_and(|b| same(b, r))).cloned().collect();
    let now: std::collections::HashSet<(String, String)> = next.servers.iter().map(key).collect();
    let removed = previous
        .rows
        .iter()
        .filter(|r| !now.contains(&key(r)))
        .map(|r| ServerKey { pool: r.pool.clone(), server: r.server.clone() })
        .collect();
    Event::Changes { version: next.version, from: previous.version, servers, removed }
}

/// A random subscriber id not yet taken.
fn fresh_id(persisted: &Persisted) -> String {
    loop {
        let id = format!("{:016x}", fastrand::u64(..));
        if !persisted.subscribers.contains_key(&id) {
            return id;
        }
    }
}

/// Versions start at the wall clock in microseconds, so a restarted instance continues
/// above the versions its subscribers saw before rather than below them (which would
/// make them ignore its tables as older).
fn initial_version() -> u64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_micros()).unwrap_or(1).max(1)
}

fn check_key(pool: &str, server: &str) -> Result<(), RequestError> {
    check_name("pool", pool).and_then(|()| check_name("server", server)).map_err(RequestError::Invalid)
}

fn millis_since(at: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreLocation;
    use bunsan_proto::control::{Health, Source, Watched};
    use std::time::Duration;

    const TTL: Duration = Duration::from_secs(5);

    async fn manager(dir: &std::path::Path) -> Manager {
        let store = Store::open(&StoreLocation::File(dir.join("s.json")), TTL).await.unwrap();
        let manager = Manager::new(Persisted::default(), store, TTL);
        let servers = vec![Watched { pool: "app".into(), server: "h1".into(), addr: "10.0.0.1:80".into() }];
        let agent = AgentRegistration { agent: "a1".into(), method: "sockets".into(), servers };
        manager.register_agent(agent).await.unwrap();
        manager
    }

    fn up(load: f64) -> Vec<Report> {
        vec![Report { pool: "app".into(), server: "h1".into(), load, state: Health::Up }]
    }

    #[tokio::test(start_paused = true)]
    async fn reports_go_stale_after_the_ttl_on_a_paused_clock() {
        let dir = tempfile::tempdir().unwrap();
        let manager = manager(dir.path()).await;
        manager.report(up(3.0)).await.unwrap();
        let fresh = manager.version();
        tokio::time::advance(TTL - Duration::from_millis(1)).await;
        manager.expire();
        assert_eq!(manager.version(), fresh);
        tokio::time::advance(Duration::from_millis(1)).await;
        manager.expire();
        assert_eq!(manager.version(), fresh + 1);
        let row = manager.table().servers.remove(0);
        assert_eq!((row.source, row.age_ms), (Source::None, Some(5000)));
    }

    #[tokio::test]
    async fn a_watcher_that_fell_behind_sees_only_the_newest_table() {
        let dir = tempfile::tempdir().unwrap();
        let manager = manager(dir.path()).await;
        let mut rx = manager.watch();
        rx.borrow_and_update();
        for load in 1..=20 {
            manager.report(up(f64::from(load))).await.unwrap();
        }
        assert!(rx.has_changed().unwrap());
        let newest = rx.borrow_and_update().clone();
        assert_eq!(newest.version, manager.version());
        assert!(!rx.has_changed().unwrap(), "one wake-up, not twenty");
        let line = String::from_utf8(newest.line.to_vec()).unwrap();
        assert!(line.contains("\"load\":20.0") && !line.contains('\n'), "{line}");
    }

    #[tokio::test]
    async fn changes_from_another_instance_are_applied_and_published() {
        let dir = tempfile::tempdir().unwrap();
        let manager = manager(dir.path()).await;
        let before = manager.version();
        manager.apply_remote(RemoteChange::Reports(up(7.0))).await;
        assert_eq!(manager.version(), before + 1);
        let unknown = Report { server: "h9".into(), ..up(1.0).remove(0) };
        manager.apply_remote(RemoteChange::Reports(vec![unknown])).await;
        assert_eq!(manager.version(), before + 1, "an unknown server is ignored");
        manager.apply_remote(RemoteChange::Persisted(Persisted::default())).await;
        assert!(manager.table().servers.is_empty());
    }

    #[tokio::test]
    async fn watch_streams_are_counted_while_open() {
        let dir = tempfile::tempdir().unwrap();
        let manager = Arc::new(manager(dir.path()).await);
        let subscription = Subscription {
            name: "n1".into(),
            kind: "node".into(),
            delivery: Default::default(),
            interval_ms: None,
        };
        let id = manager.subscribe(subscription).await.unwrap();
        let connected = |m: &Manager| m.registry().subscribers[0].connected;
        let guard = manager.connect(Some(&id));
        let second = manager.connect(Some(&id));
        drop(guard);
        assert!(connected(&manager));
        drop(second);
        assert!(!connected(&manager));
    }
}
