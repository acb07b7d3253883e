//! Where pins and registrations outlive the process.
//!
//! [`Store`] is the seam: a JSON file ([`FileStore`]) for one control instance, or etcd
//! ([`EtcdStore`]) for several sharing one state. Every method is async and takes
//! `&self`, so a networked store fits without changing the callers:
//!
//! - [`Store::load`] at start, [`Store::save`] on every pin/registration change (the
//!   change itself and the whole resulting state are both passed, so a key-value store
//!   can write one key and a file can write everything);
//! - [`Store::share_reports`] after accepted reports (etcd puts them with a lease of the
//!   report TTL; the file store keeps reports in memory only);
//! - [`Store::next_remote`], awaited by the control loop, yields what other control
//!   instances changed; the file store has no other instances and never yields.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bunsan_proto::control::{AgentRegistration, Pin, Report, Subscription};
use serde::{Deserialize, Serialize};

use crate::validate;

mod etcd;

pub use etcd::{EtcdLocation, EtcdStore, DEFAULT_PREFIX};

/// The store file's format number, so a later layout can be told apart.
const FORMAT: u32 = 1;

/// Everything that must survive a restart: agent registrations, pins, subscribers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    /// Agents by name.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentRegistration>,
    /// Pins by pool, then server.
    #[serde(default)]
    pub pins: BTreeMap<String, BTreeMap<String, Pin>>,
    /// Subscribers by id.
    #[serde(default)]
    pub subscribers: BTreeMap<String, Subscription>,
}

/// One change to [`Persisted`].
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// An agent registered (or re-registered, replacing its earlier registration).
    Agent(AgentRegistration),
    /// A pin was set (`Some`) or released (`None`).
    Pin {
        /// The pool.
        pool: String,
        /// The server.
        server: String,
        /// The new pin.
        pin: Option<Pin>,
    },
    /// A subscriber registered.
    Subscriber {
        /// Its id.
        id: String,
        /// What it asked for.
        subscription: Subscription,
    },
}

impl Persisted {
    /// Applies one change; returns whether anything changed. A server watched by two
    /// agents belongs to the one that registered last, so every server has exactly one
    /// agent (and one address).
    pub fn apply(&mut self, change: &Change) -> bool {
        match change {
            Change::Agent(registration) => {
                let claimed: Vec<(&str, &str)> =
                    registration.servers.iter().map(|w| (w.pool.as_str(), w.server.as_str())).collect();
                let mut changed = false;
                for other in self.agents.values_mut().filter(|a| a.agent != registration.agent) {
                    let before = other.servers.len();
                    other.servers.retain(|w| !claimed.contains(&(w.pool.as_str(), w.server.as_str())));
                    changed |= other.servers.len() != before;
                }
                let previous = self.agents.insert(registration.agent.clone(), registration.clone());
                changed || previous.as_ref() != Some(registration)
            }
            Change::Pin { pool, server, pin: Some(pin) } => {
                let previous = self.pins.entry(pool.clone()).or_default().insert(server.clone(), pin.clone());
                previous.as_ref() != Some(pin)
            }
            Change::Pin { pool, server, pin: None } => {
                let Some(servers) = self.pins.get_mut(pool) else { return false };
                let removed = servers.remove(server).is_some();
                if servers.is_empty() {
                    self.pins.remove(pool);
                }
                removed
            }
            Change::Subscriber { id, subscription } => {
                self.subscribers.insert(id.clone(), subscription.clone()).as_ref() != Some(subscription)
            }
        }
    }

    /// The pin on `pool/server`, if any.
    pub fn pin(&self, pool: &str, server: &str) -> Option<&Pin> {
        self.pins.get(pool).and_then(|servers| servers.get(server))
    }

    /// Checks what a file says as strictly as a request would be checked.
    fn check(&self) -> Result<(), String> {
        for (name, registration) in &self.agents {
            if *name != registration.agent {
                return Err(format!("agent {name:?} is filed as {:?}", registration.agent));
            }
            validate::agent(registration).map_err(|e| format!("agent {name:?}: {e}"))?;
        }
        for (pool, servers) in &self.pins {
            for (server, pin) in servers {
                validate::pin(pin).map_err(|e| format!("pin {pool}/{server}: {e}"))?;
            }
        }
        for (id, subscription) in &self.subscribers {
            validate::subscription(subscription).map_err(|e| format!("subscriber {id:?}: {e}"))?;
        }
        Ok(())
    }
}

/// What another control instance changed (see [`Store::next_remote`]).
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteChange {
    /// Pins or registrations changed elsewhere: the whole new state.
    Persisted(Persisted),
    /// Another instance accepted these reports.
    Reports(Vec<Report>),
}

/// Where the store lives, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `file:PATH`: one JSON file.
    File(PathBuf),
    /// `etcd://HOST:PORT[,HOST:PORT…][/PREFIX]`: shared with other control instances.
    Etcd(EtcdLocation),
}

impl FromStr for StoreLocation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = text.strip_prefix("etcd://") {
            return EtcdLocation::parse(rest).map(Self::Etcd);
        }
        match text.split_once(':') {
            Some(("file", path)) if !path.is_empty() => Ok(Self::File(PathBuf::from(path))),
            Some(("file", _)) => Err("file: needs a path, e.g. file:bunsan-control.json".to_owned()),
            _ => Err(format!("unknown store {text:?}: use file:PATH or etcd://HOST:PORT[,HOST:PORT…]")),
        }
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists but cannot be read.
    #[error("cannot read the store file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// The file does not hold a valid store.
    #[error("the store file {} is corrupt: {why} (repair it, or move it away to start empty)", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The file cannot be written.
    #[error("cannot write the store file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// The blocking task doing file I/O was lost (the runtime is shutting down).
    #[error("the store's I/O task did not finish")]
    Task,
    /// No etcd endpoint answered (each one's reason is in `why`).
    #[error("no etcd endpoint answered {call}: {why}")]
    EtcdUnreachable {
        /// The gateway call, e.g. `kv/put`.
        call: &'static str,
        /// `ENDPOINT: reason` for each endpoint tried.
        why: String,
    },
    /// etcd refused a request.
    #[error("etcd at {endpoint} refused {call}: {why}")]
    EtcdRefused {
        /// The endpoint that refused.
        endpoint: String,
        /// The gateway call.
        call: &'static str,
        /// Its answer.
        why: String,
    },
    /// etcd's answer could not be read.
    #[error("etcd at {endpoint} sent an unreadable answer to {call}: {why}")]
    EtcdAnswer {
        /// The endpoint that answered.
        endpoint: String,
        /// The gateway call.
        call: &'static str,
        /// What is wrong with the answer.
        why: String,
    },
    /// A key under the prefix holds a value that is not valid.
    #[error("etcd ({endpoints}) holds an invalid value at {key}: {why} (repair or delete the key)")]
    EtcdCorrupt {
        /// The endpoints of the store.
        endpoints: String,
        /// The whole key.
        key: String,
        /// What is wrong.
        why: String,
    },
}

/// The store a control instance keeps its durable state in.
#[derive(Debug)]
pub enum Store {
    /// One JSON file.
    File(FileStore),
    /// etcd, shared with other control instances.
    Etcd(EtcdStore),
}

impl Store {
    /// Opens the store at `location`; reports shared through it count for `report_ttl`.
    /// Nothing is read yet ([`Store::load`] does).
    pub async fn open(location: &StoreLocation, report_ttl: Duration) -> Result<Self, StoreError> {
        match location {
            StoreLocation::File(path) => Ok(Self::File(FileStore::new(path.clone()))),
            StoreLocation::Etcd(etcd) => Ok(Self::Etcd(EtcdStore::new(etcd, report_ttl))),
        }
    }

    /// Where the store is, for logs.
    pub fn describe(&self) -> String {
        match self {
            Self::File(file) => format!("file {}", file.path().display()),
            Self::Etcd(etcd) => etcd.describe(),
        }
    }

    /// Reads the durable state; an empty store is [`Persisted::default`]. For etcd this
    /// also starts following other instances' changes.
    pub async fn load(&self) -> Result<Persisted, StoreError> {
        match self {
            Self::File(file) => file.load().await,
            Self::Etcd(etcd) => etcd.load().await,
        }
    }

    /// Makes `change` durable; `whole` is the state after it. A file is rewritten whole;
    /// etcd writes the one key that changed.
    pub async fn save(&self, change: &Change, whole: &Persisted) -> Result<(), StoreError> {
        match self {
            Self::File(file) => file.save(whole).await,
            Self::Etcd(etcd) => etcd.save(change).await,
        }
    }

    /// Shares accepted reports with other control instances (nothing to share with for a file).
    pub async fn share_reports(&self, reports: &[Report]) -> Result<(), StoreError> {
        match self {
            Self::File(_) => Ok(()),
            Self::Etcd(etcd) => etcd.share_reports(reports).await,
        }
    }

    /// The next change made by another control instance. A file has none: never returns.
    /// Cancel-safe.
    pub async fn next_remote(&self) -> RemoteChange {
        match self {
            Self::File(_) => std::future::pending().await,
            Self::Etcd(etcd) => etcd.next_remote().await,
        }
    }

    /// Brings a change from [`Store::next_remote`] up to date just before it is applied,
    /// with local changes held off: a `Persisted` state taken earlier is replaced by the
    /// newest one, which includes every local change saved since. Applying the earlier
    /// one would undo those until their next mention.
    pub fn settle(&self, change: RemoteChange) -> RemoteChange {
        match (self, change) {
            (Self::Etcd(etcd), RemoteChange::Persisted(_)) => RemoteChange::Persisted(etcd.newest()),
            (_, change) => change,
        }
    }
}

/// The layout of the store file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    format: u32,
    #[serde(default)]
    agents: BTreeMap<String, AgentRegistration>,
    #[serde(default)]
    pins: BTreeMap<String, BTreeMap<String, Pin>>,
    #[serde(default)]
    subscribers: BTreeMap<String, Subscription>,
}

impl FileContents {
    fn from_state(state: &Persisted) -> Self {
        let Persisted { agents, pins, subscribers } = state.clone();
        Self { format: FORMAT, agents, pins, subscribers }
    }

    fn into_state(self) -> Persisted {
        Persisted { agents: self.agents, pins: self.pins, subscribers: self.subscribers }
    }
}

/// The store as one JSON file, rewritten whole (temp file + rename) on every change so a
/// crash leaves either the old or the new version, never half of one.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store in `path` (created on the first change).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn load(&self) -> Result<Persisted, StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || load_file(&path)).await.map_err(|_| StoreError::Task)?
    }

    async fn save(&self, whole: &Persisted) -> Result<(), StoreError> {
        let contents = FileContents::from_state(whole);
        let bytes = serde_json::to_vec_pretty(&contents)
            .map_err(|e| StoreError::Write { path: self.path.clone(), source: e.into() })?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|_| StoreError::Task)?
    }
}

/// Reads and checks the file; a missing file is an empty store.
fn load_file(path: &Path) -> Result<Persisted, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Persisted::default()),
        Err(source) => return Err(StoreError::Read { path: path.to_owned(), source }),
    };
    let corrupt = |why: String| StoreError::Corrupt { path: path.to_owned(), why };
    let contents: FileContents = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if contents.format != FORMAT {
        return Err(corrupt(format!(
            "format {} is not {FORMAT}, the one this version reads",
            contents.format
        )));
    }
    let state = contents.into_state();
    state.check().map_err(corrupt)?;
    Ok(state)
}

/// Writes a sibling temp file, syncs it, and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    let failed = |source| StoreError::Write { path: path.to_owned(), source };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(failed)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        failed(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunsan_proto::control::{Delivery, Watched};

    fn agent(name: &str, servers: &[&str]) -> AgentRegistration {
        AgentRegistration {
            agent: name.into(),
            method: "sockets".into(),
            servers: servers
                .iter()
                .map(|s| Watched { pool: "app".into(), server: (*s).into(), addr: "10.0.0.1:80".into() })
                .collect(),
        }
    }

    #[test]
    fn locations_parse() {
        assert_eq!("file:/tmp/x.json".parse(), Ok(StoreLocation::File("/tmp/x.json".into())));
        assert!("file:".parse::<StoreLocation>().unwrap_err().contains("needs a path"));
        assert!("etcd:http://x".parse::<StoreLocation>().unwrap_err().contains("use file:PATH or etcd://"));
        assert!("x.json".parse::<StoreLocation>().unwrap_err().contains("use file:PATH or etcd://"));
        let StoreLocation::Etcd(etcd) = "etcd://h1:2379,h2:2379".parse().unwrap() else { panic!("not etcd") };
        assert_eq!((etcd.endpoints.len(), etcd.prefix.as_str()), (2, DEFAULT_PREFIX));
        assert!("etcd://h1".parse::<StoreLocation>().unwrap_err().contains("HOST:PORT"));
    }

    #[test]
    fn the_last_agent_to_register_a_server_owns_it() {
        let mut p = Persisted::default();
        p.apply(&Change::Agent(agent("a1", &["h1", "h2"])));
        p.apply(&Change::Agent(agent("a2", &["h2"])));
        assert_eq!(p.agents["a1"].servers.len(), 1);
        assert_eq!(p.agents["a2"].servers[0].server, "h2");
        assert!(!p.apply(&Change::Agent(agent("a2", &["h2"]))), "the same again changes nothing");
        assert!(p.apply(&Change::Agent(agent("a1", &[]))));
        assert!(p.agents["a1"].servers.is_empty(), "re-registering replaces");
    }

    #[test]
    fn releasing_the_last_pin_of_a_pool_forgets_the_pool() {
        let mut p = Persisted::default();
        let pin = Pin { state: "down".into(), load: None, capacity: None };
        p.apply(&Change::Pin { pool: "app".into(), server: "h1".into(), pin: Some(pin) });
        assert!(p.pin("app", "h1").is_some());
        assert!(p.apply(&Change::Pin { pool: "app".into(), server: "h1".into(), pin: None }));
        assert!(p.pins.is_empty());
        assert!(!p.apply(&Change::Pin { pool: "app".into(), server: "h1".into(), pin: None }));
    }

    #[tokio::test]
    async fn a_file_round_trips_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let location = StoreLocation::File(dir.path().join("s.json"));
        let store = Store::open(&location, Duration::from_secs(5)).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Persisted::default());
        let mut p = Persisted::default();
        let change = Change::Subscriber {
            id: "abc".into(),
            subscription: Subscription {
                name: "n1".into(),
                kind: "node".into(),
                delivery: Delivery::Pull,
                interval_ms: None,
            },
        };
        p.apply(&change);
        p.apply(&Change::Agent(agent("a1", &["h1"])));
        store.save(&change, &p).await.unwrap();
        assert_eq!(store.load().await.unwrap(), p);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    #[tokio::test]
    async fn a_corrupt_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        for text in ["{not json", r#"{"format":1,"pins":{"app":{"h1":{"state":"off"}}}}"#, r#"{"format":9}"#]
        {
            std::fs::write(&path, text).unwrap();
            let error = FileStore::new(path.clone()).load().await.unwrap_err().to_string();
            assert!(error.contains(&path.display().to_string()) && error.contains("corrupt"), "{error}");
        }
    }
}
