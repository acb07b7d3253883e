//! The control plane's wire format (seed 001): agents report, the state manager keeps the
//! load table, subscribers (nodes, later local proxies) receive it.
//!
//! All bodies are JSON. The watch stream is JSON lines (one [`Event`] per line), or
//! server-sent events (`data: <json>`) when the client asks for `text/event-stream`.
//!
//! | call | who | body / answer |
//! |---|---|---|
//! | `POST /v1/agents` | agent, once at start | [`AgentRegistration`] → `{}` |
//! | `POST /v1/reports` | agent, every interval and at once on up/down | `[`[`Report`]`, …]` → `{"accepted": n}` |
//! | `POST /v1/subscribers` | subscriber, once at start | [`Subscription`] → [`Subscribed`] |
//! | `GET /v1/state` | anyone with a subscriber token (claim 3: pull) | [`Table`] |
//! | `GET /v1/watch?subscriber=ID` | subscriber (claims 2 and 4: push on change / periodic) | stream of [`Event`]: a whole table first, then for `change` delivery [`Event::Changes`] (or a whole table when the subscriber fell behind) |
//! | `GET /v1/assign/{pool}?subscriber=ID` | subscriber ([0051]'s second mode) | [`Assignment`] |
//! | `PUT /v1/pins/{pool}/{server}` | operator (claim 5) | [`Pin`] → [`TableServer`] |
//! | `DELETE /v1/pins/{pool}/{server}` | operator | → [`TableServer`] |
//! | `GET /v1/registry` | operator | [`Registry`] |
//!
//! Errors are `{"error": "…"}` with 400 (malformed or unknown pool/server), 401 (token),
//! 404, 405.

use serde::{Deserialize, Serialize};

/// Up or down, as an agent sees a server it watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// The server answers its probe.
    Up,
    /// It does not.
    Down,
}

/// One server an agent watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watched {
    /// The pool (seed 001's representative name).
    pub pool: String,
    /// The server's name in the pool.
    pub server: String,
    /// Its address, `IP:PORT`.
    pub addr: String,
}

/// `POST /v1/agents`: an agent announces itself and the servers it watches. Reports for
/// servers no agent registered are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRegistration {
    /// The agent's name (unique; re-registering replaces the earlier registration).
    pub agent: String,
    /// How it measures load: `sockets`, `packets` or `scrape`.
    pub method: String,
    /// What it watches.
    pub servers: Vec<Watched>,
}

/// One entry of `POST /v1/reports`: the load of one server over the last interval and
/// whether it is up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The pool.
    pub pool: String,
    /// The server.
    pub server: String,
    /// The load the agent measured (non-negative, finite). Its unit depends on the
    /// agent's method; relative load divides it by capacity.
    pub load: f64,
    /// Up or down.
    pub state: Health,
}

/// `PUT /v1/pins/{pool}/{server}`: an operator fixes a server's state (and optionally
/// its load and capacity) until the pin is released (claim 5, [0058]–[0059]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// `ready`, `drain`, `maint` or `down`.
    pub state: String,
    /// The load to show instead of the reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<f64>,
    /// The capacity to use instead of the configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
}

/// How a subscriber wants the table delivered (claims 2–4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Pushed whenever something changes (claim 2).
    #[default]
    Change,
    /// Pushed every `interval_ms` (claim 4).
    Periodic,
    /// Not pushed; the subscriber asks (`GET /v1/state`) when it needs it (claim 3).
    Pull,
}

/// `POST /v1/subscribers`: a node or local proxy registers once at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// A name for operators (e.g. the node's host name).
    pub name: String,
    /// `node` or `local`.
    pub kind: String,
    /// How it wants the table.
    #[serde(default)]
    pub delivery: Delivery,
    /// For `periodic`: the period, in milliseconds (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
}

/// The answer to a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The subscriber's id, for `watch` and `assign`.
    pub id: String,
}

/// Where a row's figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// An agent's report.
    Agent,
    /// An operator's pin.
    Pin,
    /// Nothing yet (a registered server with no report), or a report that went stale.
    None,
}

/// One server in the load table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableServer {
    /// The pool.
    pub pool: String,
    /// The server.
    pub server: String,
    /// Its address, when an agent registered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// The state subscribers should apply: a pin's state, else `down` if reported down,
    /// else `ready`; `null` when nothing fresh is known (subscribers use their own view).
    pub state: Option<String>,
    /// The load: a pin's, else the latest fresh report's; `null` when nothing fresh is known.
    pub load: Option<f64>,
    /// A pinned capacity; `null` to keep the subscriber's configured one.
    pub capacity: Option<u32>,
    /// Whether an operator pinned it.
    pub pinned: bool,
    /// Where the figures come from.
    pub source: Source,
    /// Milliseconds since the latest report, if there is one.
    pub age_ms: Option<u64>,
}

/// The load table (`GET /v1/state`, and every table in the watch stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Increases with every change, so a subscriber can ignore an older table.
    pub version: u64,
    /// Every known server, ordered by pool then server.
    pub servers: Vec<TableServer>,
}

/// One line of the watch stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// The whole table: first on connect, then on change or every period.
    Table(Table),
    /// What changed since version `from`: rows that are new or different, and rows that
    /// left. Sent, instead of the whole table, only to a subscriber whose last table or
    /// change was exactly `from`; it yields version `version`. (A subscriber that finds
    /// `from` is not what it holds must reconnect to get a whole table.)
    Changes {
        /// The version this change yields.
        version: u64,
        /// The version it applies to.
        from: u64,
        /// New or changed rows.
        servers: Vec<TableServer>,
        /// Rows that left the table.
        removed: Vec<ServerKey>,
    },
    /// Nothing new; sent every few seconds so both ends notice a dead connection.
    Heartbeat {
        /// The table version the control instance is at.
        version: u64,
    },
}

/// A server's place in the table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServerKey {
    /// The pool.
    pub pool: String,
    /// The server.
    pub server: String,
}

/// `GET /v1/assign/{pool}`: the server the state manager chose for this subscriber
/// ([0051]: control decides, for each client, which server of a pool it uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The pool.
    pub pool: String,
    /// The chosen server, or `null` when none is available.
    pub server: Option<String>,
}

/// `GET /v1/registry`: who is registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    /// Registered agents.
    pub agents: Vec<RegisteredAgent>,
    /// Registered subscribers.
    pub subscribers: Vec<RegisteredSubscriber>,
}

/// An agent in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredAgent {
    /// Its name.
    pub agent: String,
    /// Its method.
    pub method: String,
    /// What it watches.
    pub servers: Vec<Watched>,
    /// Milliseconds since it last reported, if it has.
    pub last_report_ms: Option<u64>,
}

/// A subscriber in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredSubscriber {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `node` or `local`.
    pub kind: String,
    /// How it receives the table.
    pub delivery: Delivery,
    /// Whether it is watching right now.
    pub connected: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_strict_and_states_lowercase() {
        let r: Vec<Report> =
            serde_json::from_str(r#"[{"pool":"app","server":"host1","load":20,"state":"up"}]"#).unwrap();
        assert_eq!(r[0].state, Health::Up);
        assert!(serde_json::from_str::<Report>(r#"{"pool":"a","server":"b","load":1,"state":"UP"}"#).is_err());
        assert!(serde_json::from_str::<Report>(r#"{"pool":"a","server":"b","load":1}"#).is_err());
        assert!(serde_json::from_str::<Report>(r#"{"pool":"a","server":"b","load":1,"state":"up","x":1}"#)
            .is_err());
    }

    #[test]
    fn events_are_tagged() {
        let e = Event::Heartbeat { version: 7 };
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"type":"heartbeat","version":7}"#);
        let t = Event::Table(Table { version: 1, servers: vec![] });
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"type":"table","version":1,"servers":[]}"#);
    }

    #[test]
    fn pins_and_subscriptions_default_sensibly() {
        let p: Pin = serde_json::from_str(r#"{"state":"maint"}"#).unwrap();
        assert_eq!((p.load, p.capacity), (None, None));
        let s: Subscription = serde_json::from_str(r#"{"name":"n1","kind":"node"}"#).unwrap();
        assert_eq!(s.delivery, Delivery::Change);
    }
}
