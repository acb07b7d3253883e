//! Session affinity's memory (seed 000): which server each session is bound to, the
//! session's own idle upstream connection, and when the session ends.
//!
//! A session ends `idle_timeout` after its last client connection closed (claim 4: the
//! idle clock starts when the last client connection carrying the session closes and stops
//! when one arrives again), or `max_lifetime` after it was issued, whichever comes first.
//! Its connection is then closed and its identifier remembered as expired (a tombstone)
//! until the identifier's lifetime is over, so that the node never resurrects a session it
//! ended by adopting it as another node's.
//!
//! [`SessionTable`] is sharded: every operation locks one shard for a few hash-map
//! operations, never across an await, and drops whatever it removed (connections close on
//! drop) after the lock is released. [`ClientSessions`] does one client connection's
//! bookkeeping: it attaches the sessions the connection carries, once each, and detaches
//! them when the connection closes.

mod client;
mod entry;
mod maintenance;
mod table;
#[cfg(test)]
mod tests;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

pub use client::ClientSessions;
pub use maintenance::SWEEP_BUDGET;
pub use table::{Attachment, SessionTable};

/// A session's key in the table: a session id, or for client-address affinity the
/// client's address as IPv6 octets (IPv4 mapped).
pub type SessionKeyBytes = [u8; 16];

/// How long sessions live and how many the table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// A session ends this long after its last client connection closed.
    pub idle_timeout: Duration,
    /// A session ends this long after it was issued, whatever its activity. Counted to
    /// the second (rounded up): identifiers carry their issue time in unix seconds.
    pub max_lifetime: Duration,
    /// Live sessions plus tombstones; when reached, a tombstone makes room, else a new
    /// session is refused.
    pub max_entries: usize,
}

/// What the table knows about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<S> {
    /// A live session bound to this server.
    Live(S),
    /// This node ended the session (idle, invalidated, or just now past its lifetime):
    /// start a new one, never adopt it.
    Expired,
    /// Never seen here, or long over: a valid identifier for it may be adopted.
    Unknown,
}

/// Where a session inserted into the table comes from (counted apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Issued by this node just now.
    Created,
    /// Issued by another node (a valid identifier this node had no entry for).
    Adopted,
}

/// One live session, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo<S> {
    /// The session's key.
    pub key: SessionKeyBytes,
    /// The server it is bound to.
    pub server: S,
    /// Time since it was issued (to the second).
    pub age: Duration,
    /// Client connections attached now.
    pub clients: u32,
    /// How long it has had no client connection (`None` while one is attached).
    pub idle_for: Option<Duration>,
    /// Whether its own idle upstream connection is parked in the table.
    pub has_conn: bool,
}

/// Lifetime counters of a table (monotonic; read with `Relaxed`).
#[derive(Debug, Default)]
pub struct SessionCounters {
    /// Sessions this node issued and inserted.
    pub created: AtomicU64,
    /// Sessions other nodes issued, inserted here.
    pub adopted: AtomicU64,
    /// Sessions ended by `idle_timeout`.
    pub expired_idle: AtomicU64,
    /// Sessions ended by `max_lifetime`.
    pub expired_lifetime: AtomicU64,
    /// Sessions ended on request ([`SessionTable::invalidate`]).
    pub invalidated: AtomicU64,
    /// Inserts refused because the table was full of live sessions.
    pub refused_full: AtomicU64,
    /// Tombstones dropped before their deadline to make room for a new session.
    pub tombstones_evicted: AtomicU64,
}

/// What one [`SessionTable::sweep`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Sessions ended by `idle_timeout`.
    pub expired_idle: usize,
    /// Sessions ended by `max_lifetime`.
    pub expired_lifetime: usize,
    /// Tombstones past their deadline, dropped.
    pub tombstones_dropped: usize,
    /// Upstream connections closed (the ended sessions' parked ones).
    pub conns_closed: usize,
    /// Sessions found over but left to the next sweep (per-shard budget spent).
    pub deferred: usize,
    /// The longest time one shard was locked (lookups on that shard waited at most this).
    pub longest_hold: Duration,
    /// All shards' lock times added up.
    pub total_hold: Duration,
}
