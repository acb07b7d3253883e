//! The key layout under the prefix, what each key holds, and this instance's copy of the
//! durable keys (pins, agents, subscribers), kept in etcd's revision order.
//!
//! Layout, relative to the prefix: `agents/{agent}`, `pins/{pool}/{server}`,
//! `subscribers/{id}` (JSON, no lease) and `reports/{pool}/{server}` (JSON, with a lease
//! of the report TTL). Names cannot contain `/` (see [`crate::names`]), so a key splits
//! back into its parts unambiguously.

use std::collections::BTreeMap;

use bunsan_proto::control::{AgentRegistration, Pin, Report, Subscription};
use serde::Serialize;

use crate::names::check_name;
use crate::store::{Change, Persisted};
use crate::validate;

/// The prefix of every key unless the location names another.
pub const DEFAULT_PREFIX: &str = "/bunsan/control/";

/// A key under the prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// `agents/{agent}`.
    Agent(String),
    /// `pins/{pool}/{server}`.
    Pin(String, String),
    /// `subscribers/{id}`.
    Subscriber(String),
    /// `reports/{pool}/{server}`.
    Report(String, String),
}

impl Key {
    /// The key relative to the prefix.
    pub fn path(&self) -> String {
        match self {
            Self::Agent(agent) => format!("agents/{agent}"),
            Self::Pin(pool, server) => format!("pins/{pool}/{server}"),
            Self::Subscriber(id) => format!("subscribers/{id}"),
            Self::Report(pool, server) => format!("reports/{pool}/{server}"),
        }
    }

    /// Reads a relative key; `None` for one this layout does not have.
    pub fn parse(path: &str) -> Option<Self> {
        let parts: Vec<&str> = path.split('/').collect();
        if parts.iter().any(|part| part.is_empty()) {
            return None;
        }
        let own = |part: &&str| (*part).to_owned();
        match parts.as_slice() {
            ["agents", agent] => Some(Self::Agent(own(agent))),
            ["pins", pool, server] => Some(Self::Pin(own(pool), own(server))),
            ["subscribers", id] => Some(Self::Subscriber(own(id))),
            ["reports", pool, server] => Some(Self::Report(own(pool), own(server))),
            _ => None,
        }
    }

    /// The key of a report.
    pub fn of_report(report: &Report) -> Self {
        Self::Report(report.pool.clone(), report.server.clone())
    }
}

/// What a durable key holds, checked as strictly as a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An agent's registration.
    Agent(AgentRegistration),
    /// A pin.
    Pin(Pin),
    /// A subscription.
    Subscriber(Subscription),
}

impl Record {
    /// The key and record a change writes; `None` as record for a released pin.
    pub fn of_change(change: &Change) -> (Key, Option<Self>) {
        match change {
            Change::Agent(registration) => {
                (Key::Agent(registration.agent.clone()), Some(Self::Agent(registration.clone())))
            }
            Change::Pin { pool, server, pin } => {
                (Key::Pin(pool.clone(), server.clone()), pin.clone().map(Self::Pin))
            }
            Change::Subscriber { id, subscription } => {
                (Key::Subscriber(id.clone()), Some(Self::Subscriber(subscription.clone())))
            }
        }
    }

    /// The value to store.
    pub fn to_json(&self) -> Vec<u8> {
        fn json(value: &impl Serialize) -> Vec<u8> {
            // Plain data with finite numbers (checked on the way in) cannot fail to serialize.
            serde_json::to_vec(value).unwrap_or_default()
        }
        match self {
            Self::Agent(registration) => json(registration),
            Self::Pin(pin) => json(pin),
            Self::Subscriber(subscription) => json(subscription),
        }
    }

    /// Reads and checks the value of a durable key (not a report key).
    pub fn decode(key: &Key, value: &[u8]) -> Result<Self, String> {
        fn parse<'a, T: serde::Deserialize<'a>>(value: &'a [u8]) -> Result<T, String> {
            serde_json::from_slice(value).map_err(|e| e.to_string())
        }
        match key {
            Key::Agent(name) => {
                let registration: AgentRegistration = parse(value)?;
                if registration.agent != *name {
                    return Err(format!("it registers agent {:?}", registration.agent));
                }
                validate::agent(&registration)?;
                Ok(Self::Agent(registration))
            }
            Key::Pin(pool, server) => {
                check_name("pool", pool).and_then(|()| check_name("server", server))?;
                let pin: Pin = parse(value)?;
                validate::pin(&pin)?;
                Ok(Self::Pin(pin))
            }
            Key::Subscriber(_) => {
                let subscription: Subscription = parse(value)?;
                validate::subscription(&subscription)?;
                Ok(Self::Subscriber(subscription))
            }
            Key::Report(..) => Err("a report is not a durable record".to_owned()),
        }
    }
}

/// Reads the value of `reports/{pool}/{server}`, which must report that server.
pub fn decode_report(pool: &str, server: &str, value: &[u8]) -> Result<Report, String> {
    let report: Report = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    if report.pool != pool || report.server != server {
        return Err(format!("it reports {}/{}", report.pool, report.server));
    }
    validate::load(report.load)?;
    Ok(report)
}

/// One durable key as last seen.
#[derive(Debug, Clone, PartialEq)]
struct Slot {
    /// The revision of the write or deletion seen.
    revision: i64,
    /// `None`: deleted at that revision.
    record: Option<Record>,
}

/// This instance's copy of the durable keys. Every key remembers the revision it was
/// seen at, and an older sighting never replaces a newer one: the echo of a write can
/// arrive after a later write of the same key, and must not undo it.
#[derive(Debug, Default)]
pub struct Mirror {
    slots: BTreeMap<Key, Slot>,
}

impl Mirror {
    /// Records what `key` holds as of `revision`; returns whether the state changed.
    pub fn set(&mut self, key: Key, revision: i64, record: Option<Record>) -> bool {
        match self.slots.get_mut(&key) {
            Some(slot) if slot.revision >= revision => false,
            Some(slot) => {
                let changed = slot.record != record;
                *slot = Slot { revision, record };
                changed
            }
            None => {
                let changed = record.is_some();
                self.slots.insert(key, Slot { revision, record });
                changed
            }
        }
    }

    /// Replaces the copy by a full read made at `revision`, keeping what was seen at a
    /// later revision (a write that finished while the read was under way).
    pub fn reset(&mut self, revision: i64, records: Vec<(Key, i64, Record)>) {
        let mut slots: BTreeMap<Key, Slot> = records
            .into_iter()
            .map(|(key, revision, record)| (key, Slot { revision, record: Some(record) }))
            .collect();
        for (key, slot) in std::mem::take(&mut self.slots) {
            if slot.revision > revision {
                slots.insert(key, slot);
            }
        }
        self.slots = slots;
    }

    /// The durable state. Agents are applied in the order they registered, so a server
    /// two agents claim belongs to the later one, as [`Persisted::apply`] has it.
    pub fn persisted(&self) -> Persisted {
        let mut state = Persisted::default();
        let mut agents: Vec<(i64, &AgentRegistration)> = Vec::new();
        for (key, slot) in &self.slots {
            match (key, &slot.record) {
                (Key::Agent(_), Some(Record::Agent(registration))) => {
                    agents.push((slot.revision, registration))
                }
                (Key::Pin(pool, server), Some(Record::Pin(pin))) => {
                    state.pins.entry(pool.clone()).or_default().insert(server.clone(), pin.clone());
                }
                (Key::Subscriber(id), Some(Record::Subscriber(subscription))) => {
                    state.subscribers.insert(id.clone(), subscription.clone());
                }
                _ => {}
            }
        }
        agents.sort_by_key(|(revision, _)| *revision);
        for (_, registration) in agents {
            state.apply(&Change::Agent(registration.clone()));
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunsan_proto::control::{Health, Watched};

    fn agent(name: &str, servers: &[&str]) -> Record {
        Record::Agent(AgentRegistration {
            agent: name.into(),
            method: "sockets".into(),
            servers: servers
                .iter()
                .map(|s| Watched { pool: "app".into(), server: (*s).into(), addr: "10.0.0.1:80".into() })
                .collect(),
        })
    }

    fn pin(state: &str) -> Option<Record> {
        Some(Record::Pin(Pin { state: state.into(), load: None, capacity: None }))
    }

    #[test]
    fn keys_round_trip_and_foreign_keys_are_not_ours() {
        for key in [
            Key::Agent("a1".into()),
            Key::Pin("app".into(), "h1".into()),
            Key::Subscriber("00ff".into()),
            Key::Report("app".into(), "h1".into()),
        ] {
            assert_eq!(Key::parse(&key.path()), Some(key));
        }
        for foreign in ["", "agents", "agents/", "pins/app", "pins/app/h1/x", "reports//h1", "other/x"] {
            assert_eq!(Key::parse(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn values_are_checked_like_requests() {
        let key = Key::Agent("a1".into());
        let good = agent("a1", &["h1"]);
        assert_eq!(Record::decode(&key, &good.to_json()), Ok(good));
        assert!(Record::decode(&key, &agent("a2", &[]).to_json()).unwrap_err().contains("\"a2\""));
        assert!(Record::decode(&key, b"{").is_err());
        let pin_key = Key::Pin("app".into(), "h1".into());
        assert!(Record::decode(&pin_key, br#"{"state":"off"}"#).is_err());
        assert!(Record::decode(&Key::Pin("a b".into(), "h1".into()), br#"{"state":"down"}"#).is_err());
        assert!(Record::decode(&Key::Subscriber("x".into()), br#"{"name":"n"}"#).is_err());
        let report = br#"{"pool":"app","server":"h1","load":2.0,"state":"up"}"#;
        assert_eq!(decode_report("app", "h1", report).unwrap().state, Health::Up);
        assert!(decode_report("app", "h2", report).unwrap_err().contains("app/h1"));
        assert!(
            decode_report("app", "h1", br#"{"pool":"app","server":"h1","load":-1,"state":"up"}"#).is_err()
        );
    }

    #[test]
    fn an_older_sighting_never_replaces_a_newer_one() {
        let mut mirror = Mirror::default();
        let key = Key::Pin("app".into(), "h1".into());
        assert!(mirror.set(key.clone(), 10, pin("maint")));
        assert!(mirror.set(key.clone(), 12, pin("drain")));
        assert!(!mirror.set(key.clone(), 10, pin("maint")), "a late echo changes nothing");
        assert!(!mirror.set(key.clone(), 12, pin("drain")), "the same write again changes nothing");
        assert_eq!(mirror.persisted().pin("app", "h1").unwrap().state, "drain");
        assert!(mirror.set(key.clone(), 13, None));
        assert!(!mirror.set(key.clone(), 12, pin("drain")), "a deletion is remembered");
        assert!(mirror.persisted().pins.is_empty());
        assert!(!mirror.set(Key::Pin("app".into(), "h9".into()), 14, None));
    }

    #[test]
    fn a_full_read_keeps_only_what_is_newer_than_it() {
        let mut mirror = Mirror::default();
        mirror.set(Key::Pin("app".into(), "old".into()), 3, pin("down"));
        mirror.set(Key::Pin("app".into(), "late".into()), 9, pin("maint"));
        mirror.reset(
            8,
            vec![(
                Key::Pin("app".into(), "read".into()),
                5,
                Record::Pin(Pin { state: "ready".into(), load: None, capacity: None }),
            )],
        );
        let state = mirror.persisted();
        let pins: Vec<&String> = state.pins["app"].keys().collect();
        assert_eq!(pins, ["late", "read"]);
    }

    #[test]
    fn the_agent_that_registered_last_owns_a_shared_server() {
        let mut mirror = Mirror::default();
        // a2 sorts after a1 by name but registered first.
        mirror.set(Key::Agent("a2".into()), 4, Some(agent("a2", &["h1", "h2"])));
        mirror.set(Key::Agent("a1".into()), 7, Some(agent("a1", &["h2"])));
        let state = mirror.persisted();
        assert_eq!(state.agents["a2"].servers.len(), 1);
        assert_eq!(state.agents["a1"].servers[0].server, "h2");
    }
}
