//! The etcd store: several control instances share pins, registrations, subscribers and
//! the latest reports through etcd, spoken to over its v3 JSON gateway (HTTP/1.1, so no
//! gRPC stack).
//!
//! - Every pin, registration and subscription change writes its one key (layout in
//!   [`mirror`]); the instance keeps a copy of those keys, ordered by etcd revision.
//! - Reports are written with a lease granted per batch whose TTL is the report TTL, so
//!   a report disappears when its agent stops sending new ones, whichever instance
//!   wrote it and whether or not that instance still runs.
//! - A watch on the prefix ([`watch`]) brings other instances' changes back, and is
//!   re-established with a full re-read whenever it fails.

mod base64;
mod gateway;
mod mirror;
mod watch;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bunsan_proto::control::Report;
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::gateway::Gateway;
use self::mirror::{decode_report, Key, Mirror, Record};
use self::wire::KeyValue;
use crate::store::{Change, Persisted, RemoteChange, StoreError};

pub use self::mirror::DEFAULT_PREFIX;

/// Report keys per transaction: etcd refuses more than 128 operations in one.
const REPORTS_PER_TXN: usize = 100;
/// How long after its lease's TTL a lease is still recognised as this instance's. Its
/// reports' echoes arrive within milliseconds; this only bounds the memory.
const LEASE_MEMORY: Duration = Duration::from_secs(60);
/// Messages the watch may queue before it waits for the control loop.
const QUEUE: usize = 256;

/// `etcd://HOST:PORT[,HOST:PORT…][/PREFIX]`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdLocation {
    /// `HOST:PORT` of each member, in the order to try them.
    pub endpoints: Vec<String>,
    /// The prefix of every key, starting and ending with `/`.
    pub prefix: String,
}

impl EtcdLocation {
    /// Reads what follows `etcd://`.
    pub fn parse(rest: &str) -> Result<Self, String> {
        let (hosts, prefix) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p.trim_matches('/')));
        let endpoints = hosts.split(',').map(endpoint).collect::<Result<Vec<_>, _>>()?;
        if prefix.is_empty() {
            return Ok(Self { endpoints, prefix: DEFAULT_PREFIX.to_owned() });
        }
        let segment_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic());
        if !prefix.split('/').all(segment_ok) {
            return Err(format!("invalid etcd key prefix {prefix:?}: use segments of visible ASCII"));
        }
        Ok(Self { endpoints, prefix: format!("/{prefix}/") })
    }
}

fn endpoint(text: &str) -> Result<String, String> {
    let valid = text
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not HOST:PORT: use etcd://HOST:PORT[,HOST:PORT…][/PREFIX]"))
    }
}

/// What the watch tells the control loop.
#[derive(Debug)]
enum Remote {
    /// Durable keys changed: the loop takes the whole state from the mirror.
    Persisted,
    /// Another instance accepted these reports.
    Reports(Vec<Report>),
}

/// A full read of the prefix, sorted out.
#[derive(Debug, Default)]
struct FullRead {
    revision: i64,
    records: Vec<(Key, i64, Record)>,
    reports: Vec<Report>,
    /// Durable keys whose value cannot be accepted: `(key, why)`.
    invalid: Vec<(String, String)>,
}

/// What the store and its watch task share.
#[derive(Debug)]
struct Shared {
    gateway: Gateway,
    prefix: String,
    /// The reports' lease TTL, in whole seconds (etcd's unit).
    lease_ttl: i64,
    mirror: Mutex<Mirror>,
    /// Leases this instance granted, and when: reports under them are its own.
    own_leases: Mutex<HashMap<i64, Instant>>,
}

impl Shared {
    fn key(&self, key: &Key) -> Vec<u8> {
        format!("{}{}", self.prefix, key.path()).into_bytes()
    }

    /// The key under the prefix; `None` for keys this layout does not have.
    fn relative(&self, key: &[u8]) -> Option<Key> {
        std::str::from_utf8(key).ok()?.strip_prefix(self.prefix.as_str()).and_then(Key::parse)
    }

    fn mirror(&self) -> MutexGuard<'_, Mirror> {
        // Every critical section leaves the mirror consistent.
        self.mirror.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember_lease(&self, lease: i64) {
        let mut own = self.own_leases.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let memory = LEASE_MEMORY + Duration::from_secs(self.lease_ttl.unsigned_abs());
        own.retain(|_, granted| now.saturating_duration_since(*granted) < memory);
        own.insert(lease, now);
    }

    fn is_own_lease(&self, lease: i64) -> bool {
        lease != 0 && self.own_leases.lock().unwrap_or_else(PoisonError::into_inner).contains_key(&lease)
    }

    /// Reads every key under the prefix.
    async fn read_all(&self) -> Result<FullRead, StoreError> {
        let request = wire::range_request(self.prefix.as_bytes(), false);
        let range = self.gateway.call("kv/range", &request, wire::range).await?;
        let mut read = FullRead { revision: range.revision, ..FullRead::default() };
        for kv in range.kvs {
            self.sort_into(&mut read, kv);
        }
        Ok(read)
    }

    /// Files one key of a full read. This instance's own reports are left out: it has them.
    fn sort_into(&self, read: &mut FullRead, kv: KeyValue) {
        let Some(key) = self.relative(&kv.key) else { return };
        let name = String::from_utf8_lossy(&kv.key).into_owned();
        match &key {
            Key::Report(_, _) if self.is_own_lease(kv.lease) => {}
            Key::Report(pool, server) => match decode_report(pool, server, &kv.value) {
                Ok(report) => read.reports.push(report),
                Err(why) => tracing::warn!(key = %name, %why, "ignoring an invalid report in etcd"),
            },
            _ => match Record::decode(&key, &kv.value) {
                Ok(record) => read.records.push((key, kv.mod_revision, record)),
                Err(why) => read.invalid.push((name, why)),
            },
        }
    }
}

/// The store in etcd.
#[derive(Debug)]
pub struct EtcdStore {
    shared: Arc<Shared>,
    sender: mpsc::Sender<Remote>,
    remote: tokio::sync::Mutex<mpsc::Receiver<Remote>>,
    /// The watch task, stopped with the store.
    follower: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(task) = self.follower.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
    }
}

impl EtcdStore {
    /// A store at `location` whose reports live `report_ttl` (nothing is read yet).
    pub fn new(location: &EtcdLocation, report_ttl: Duration) -> Self {
        // etcd counts lease TTLs in whole seconds; rounding up never ages a report early.
        let lease_ttl = i64::try_from(report_ttl.as_millis().div_ceil(1000)).unwrap_or(i64::MAX).max(1);
        let shared = Shared {
            gateway: Gateway::new(location.endpoints.clone()),
            prefix: location.prefix.clone(),
            lease_ttl,
            mirror: Mutex::new(Mirror::default()),
            own_leases: Mutex::new(HashMap::new()),
        };
        let (sender, receiver) = mpsc::channel(QUEUE);
        let remote = tokio::sync::Mutex::new(receiver);
        Self { shared: Arc::new(shared), sender, remote, follower: Mutex::new(None) }
    }

    /// Where the store is, for logs.
    pub fn describe(&self) -> String {
        format!("etcd {} under {}", self.shared.gateway.endpoints(), self.shared.prefix)
    }

    /// Reads everything under the prefix and starts watching it. The reports found are
    /// handed to the control loop as the first remote change.
    pub async fn load(&self) -> Result<Persisted, StoreError> {
        let read = self.shared.read_all().await?;
        if let Some((key, why)) = read.invalid.into_iter().next() {
            return Err(StoreError::EtcdCorrupt { endpoints: self.shared.gateway.endpoints(), key, why });
        }
        let state = {
            let mut mirror = self.shared.mirror();
            mirror.reset(read.revision, read.records);
            mirror.persisted()
        };
        if !read.reports.is_empty() {
            // The queue is empty before the watch starts, so this cannot be refused.
            let _ = self.sender.try_send(Remote::Reports(read.reports));
        }
        let task = tokio::spawn(watch::follow(self.shared.clone(), self.sender.clone(), read.revision + 1));
        let previous =
            self.follower.lock().unwrap_or_else(PoisonError::into_inner).replace(task.abort_handle());
        if let Some(previous) = previous {
            previous.abort();
        }
        Ok(state)
    }

    /// Writes (or deletes) the one key `change` touches.
    pub async fn save(&self, change: &Change) -> Result<(), StoreError> {
        let (key, record) = Record::of_change(change);
        let path = self.shared.key(&key);
        let gateway = &self.shared.gateway;
        let revision = match &record {
            Some(record) => {
                let request = wire::put_request(&path, &record.to_json());
                gateway.call("kv/put", &request, wire::write_revision).await?
            }
            None => {
                gateway.call("kv/deleterange", &wire::delete_request(&path), wire::write_revision).await?
            }
        };
        // Recorded at its revision, so the write's own echo, arriving later, is a no-op.
        self.shared.mirror().set(key, revision, record);
        Ok(())
    }

    /// Writes each server's latest report under one fresh lease of the report TTL.
    pub async fn share_reports(&self, reports: &[Report]) -> Result<(), StoreError> {
        // The last report of a server wins: a transaction may not write a key twice.
        let latest: BTreeMap<Key, &Report> = reports.iter().map(|r| (Key::of_report(r), r)).collect();
        if latest.is_empty() {
            return Ok(());
        }
        let gateway = &self.shared.gateway;
        let grant = wire::grant_request(self.shared.lease_ttl);
        let lease = gateway.call("lease/grant", &grant, wire::lease).await?;
        self.shared.remember_lease(lease);
        let entries: Vec<(Vec<u8>, Vec<u8>)> = latest
            .into_iter()
            .map(|(key, report)| (self.shared.key(&key), serde_json::to_vec(report).unwrap_or_default()))
            .collect();
        for chunk in entries.chunks(REPORTS_PER_TXN) {
            gateway.call("kv/txn", &wire::put_all_request(chunk, lease), wire::write_revision).await?;
        }
        Ok(())
    }

    /// The next change another instance made. Cancel-safe: the control loop drops this
    /// future whenever its other work comes first.
    pub async fn next_remote(&self) -> RemoteChange {
        let mut remote = self.remote.lock().await;
        match remote.recv().await {
            Some(Remote::Persisted) => RemoteChange::Persisted(self.shared.mirror().persisted()),
            Some(Remote::Reports(reports)) => RemoteChange::Reports(reports),
            // The store holds a sender itself, so the queue never closes while it lives.
            None => std::future::pending().await,
        }
    }

    /// The newest durable state, for a `Persisted` change about to be applied.
    pub fn newest(&self) -> Persisted {
        self.shared.mirror().persisted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_endpoints_and_an_optional_prefix() {
        let one = EtcdLocation::parse("127.0.0.1:2379").unwrap();
        assert_eq!((one.endpoints, one.prefix.as_str()), (vec!["127.0.0.1:2379".to_owned()], DEFAULT_PREFIX));
        let many = EtcdLocation::parse("a:1,[::1]:2,c:3/team/x/").unwrap();
        assert_eq!(many.endpoints, ["a:1", "[::1]:2", "c:3"]);
        assert_eq!(many.prefix, "/team/x/");
        assert_eq!(EtcdLocation::parse("a:1/").unwrap().prefix, DEFAULT_PREFIX);
        for bad in ["", "a", "a:", ":1", "a:0", "a:99999", "a:1,", "a:1/x//y", "a:1/x y"] {
            assert!(EtcdLocation::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lease_ttls_round_up_to_whole_seconds() {
        let ttl = |ms| EtcdStore::new(&EtcdLocation::parse("a:1").unwrap(), Duration::from_millis(ms));
        assert_eq!(ttl(5000).shared.lease_ttl, 5);
        assert_eq!(ttl(1500).shared.lease_ttl, 2);
        assert_eq!(ttl(1).shared.lease_ttl, 1);
    }

    #[tokio::test]
    async fn an_unreachable_etcd_is_named_in_the_error() {
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let location = EtcdLocation::parse(&format!("127.0.0.1:{port}")).unwrap();
        let error = EtcdStore::new(&location, Duration::from_secs(5)).load().await.unwrap_err().to_string();
        assert!(error.contains(&format!("127.0.0.1:{port}")) && error.contains("kv/range"), "{error}");
    }
}
