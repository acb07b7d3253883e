//! Balancers: choose one server of a pool for new work.
//!
//! A [`Selector`] is built from a pool's servers (precomputing what an algorithm needs:
//! a smooth round-robin schedule, a Maglev table, capacity prefix sums) and then asked
//! to [`Selector::pick`] for each request or connection. Build it again whenever the set
//! of servers, their states or their capacities change. `pick` still checks each
//! candidate's live state, so a stale selector never returns a server that may not take
//! new work; it only becomes less exact until rebuilt.
//!
//! Weighting is the same for every algorithm: a server's *capacity* (seed 001's ratio).

mod least_conn;
mod least_load;
mod maglev;
mod p2c;
mod random;
mod ring;
mod round_robin;
#[cfg(test)]
mod test_support;

use std::fmt;
use std::str::FromStr;

use crate::ServerState;

pub use least_conn::LeastConn;
pub use least_load::LeastLoad;
pub use maglev::{Maglev, MAGLEV_TABLE_SIZE};
pub use p2c::P2cEwma;
pub use random::WeightedRandom;
pub use round_robin::SmoothRoundRobin;

/// What a balancer needs to know about one server. The node implements it over its live
/// counters; tests implement it over plain structs.
pub trait Candidate {
    /// The server's stable name; Maglev derives its permutation from it, so every node
    /// with the same servers builds the same table.
    fn id(&self) -> &str;
    /// The effective state; only [`ServerState::Ready`] servers get new work.
    fn state(&self) -> ServerState;
    /// Seed 001's ratio: how much work this server takes relative to the others. At least 1;
    /// a 0 is treated as 1.
    fn capacity(&self) -> u32;
    /// The load that seed 001's relative load divides by capacity (what it measures is the
    /// caller's choice and is documented there).
    fn load(&self) -> f64;
    /// Requests (HTTP) or connections (TCP) this chooser currently has open on the server.
    fn in_flight(&self) -> u64;
    /// Exponentially weighted moving average of response latency, in seconds; 0 = no sample.
    fn latency_ewma(&self) -> f64;
}

/// Per-pick inputs that are not part of the pool: randomness, the request's hash key,
/// and the servers this request already tried (so failover never picks them again).
pub struct PickContext<'a> {
    /// The chooser's random source (thread-local in the node, seeded in tests).
    pub rng: &'a mut fastrand::Rng,
    /// The hash of the request's balancing key ([`crate::hash::key_hash`]), if it has one.
    pub key: Option<u64>,
    /// Indices of servers that must not be picked.
    pub exclude: &'a [usize],
}

impl<'a> PickContext<'a> {
    /// A context with no key and nothing excluded.
    pub fn new(rng: &'a mut fastrand::Rng) -> Self {
        Self { rng, key: None, exclude: &[] }
    }

    /// Sets the request's key hash.
    pub fn with_key(mut self, key: Option<u64>) -> Self {
        self.key = key;
        self
    }

    /// Excludes servers already tried.
    pub fn excluding(mut self, exclude: &'a [usize]) -> Self {
        self.exclude = exclude;
        self
    }

    /// Whether server `index` may be picked: ready and not excluded.
    pub fn eligible<C: Candidate>(&self, index: usize, server: &C) -> bool {
        server.state().takes_new_work() && !self.exclude.contains(&index)
    }
}

/// The balancing algorithms a pool can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// Seed 001: the least relative load = load ÷ capacity; ties broken at random,
    /// weighted by capacity.
    #[default]
    LeastLoad,
    /// Smooth weighted round-robin by capacity.
    RoundRobin,
    /// Fewest in-flight requests or connections ÷ capacity, counted by this chooser only.
    LeastConn,
    /// Power of two random choices, comparing latency EWMA × (in-flight + 1) ÷ capacity.
    P2cEwma,
    /// Consistent hashing of a request key into a 65,537-entry Maglev table.
    Maglev,
    /// Random, weighted by capacity.
    Random,
}

impl Algorithm {
    /// Every algorithm, in the order the docs list them.
    pub const ALL: [Algorithm; 6] =
        [Self::LeastLoad, Self::RoundRobin, Self::LeastConn, Self::P2cEwma, Self::Maglev, Self::Random];

    /// The name used in config, API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LeastLoad => "least-load",
            Self::RoundRobin => "round-robin",
            Self::LeastConn => "least-conn",
            Self::P2cEwma => "p2c-ewma",
            Self::Maglev => "maglev",
            Self::Random => "random",
        }
    }

    /// Whether the algorithm needs a request key ([`PickContext::key`]).
    pub fn uses_key(self) -> bool {
        self == Self::Maglev
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An algorithm name that bunsan does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown algorithm {0:?} (valid: least-load, round-robin, least-conn, p2c-ewma, maglev, random)")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

/// A built balancer for one pool: one variant per [`Algorithm`] (an enum rather than a
/// trait object, so `pick` is generic over [`Candidate`] and dispatch is a jump).
#[derive(Debug)]
pub enum Selector {
    /// See [`Algorithm::LeastLoad`].
    LeastLoad(LeastLoad),
    /// See [`Algorithm::RoundRobin`].
    RoundRobin(SmoothRoundRobin),
    /// See [`Algorithm::LeastConn`].
    LeastConn(LeastConn),
    /// See [`Algorithm::P2cEwma`].
    P2cEwma(P2cEwma),
    /// See [`Algorithm::Maglev`].
    Maglev(Maglev),
    /// See [`Algorithm::Random`].
    Random(WeightedRandom),
}

impl Selector {
    /// Builds the selector for `algorithm` over `servers` as they are now.
    pub fn build<C: Candidate>(algorithm: Algorithm, servers: &[C]) -> Self {
        match algorithm {
            Algorithm::LeastLoad => Self::LeastLoad(LeastLoad::build(servers)),
            Algorithm::RoundRobin => Self::RoundRobin(SmoothRoundRobin::build(servers)),
            Algorithm::LeastConn => Self::LeastConn(LeastConn::build(servers)),
            Algorithm::P2cEwma => Self::P2cEwma(P2cEwma::build(servers)),
            Algorithm::Maglev => Self::Maglev(Maglev::build(servers)),
            Algorithm::Random => Self::Random(WeightedRandom::build(servers)),
        }
    }

    /// The algorithm this selector runs.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::LeastLoad(_) => Algorithm::LeastLoad,
            Self::RoundRobin(_) => Algorithm::RoundRobin,
            Self::LeastConn(_) => Algorithm::LeastConn,
            Self::P2cEwma(_) => Algorithm::P2cEwma,
            Self::Maglev(_) => Algorithm::Maglev,
            Self::Random(_) => Algorithm::Random,
        }
    }

    /// Picks the index of a server for new work, or `None` when no server is eligible
    /// (none ready, or all ready ones excluded). `servers` must be the same slice, in the
    /// same order, that the selector was built from.
    pub fn pick<C: Candidate>(&self, servers: &[C], ctx: &mut PickContext<'_>) -> Option<usize> {
        match self {
            Self::LeastLoad(b) => b.pick(servers, ctx),
            Self::RoundRobin(b) => b.pick(servers, ctx),
            Self::LeastConn(b) => b.pick(servers, ctx),
            Self::P2cEwma(b) => b.pick(servers, ctx),
            Self::Maglev(b) => b.pick(servers, ctx),
            Self::Random(b) => b.pick(servers, ctx),
        }
    }
}

/// A server's capacity as a weight: at least 1.
pub(crate) fn weight<C: Candidate>(server: &C) -> u64 {
    u64::from(server.capacity().max(1))
}

/// Servers are usually shared (`Arc`) between snapshots; let them be candidates directly.
impl<C: Candidate + ?Sized> Candidate for std::sync::Arc<C> {
    fn id(&self) -> &str {
        (**self).id()
    }
    fn state(&self) -> ServerState {
        (**self).state()
    }
    fn capacity(&self) -> u32 {
        (**self).capacity()
    }
    fn load(&self) -> f64 {
        (**self).load()
    }
    fn in_flight(&self) -> u64 {
        (**self).in_flight()
    }
    fn latency_ewma(&self) -> f64 {
        (**self).latency_ewma()
    }
}

/// The first eligible server scanning all of `servers` once from `start` (wrapping).
///
/// Every algorithm ends in this scan when its precomputed structure finds nothing, so
/// `pick` returns `None` only when no server at all is eligible, stale selector or not.
pub(crate) fn first_eligible_from<C: Candidate>(
    servers: &[C],
    ctx: &PickContext<'_>,
    start: usize,
) -> Option<usize> {
    let n = servers.len();
    if n == 0 {
        return None;
    }
    let start = start % n;
    (start..n).chain(0..start).find(|&i| ctx.eligible(i, &servers[i]))
}

/// The servers that take new work as a selector is built, with their indices as `u32`
/// (the compact form the precomputed tables store). A pool past `u32::MAX` servers is not
/// realistic; any server beyond that index is left to the fallback scan.
pub(crate) fn ready_at_build<C: Candidate>(servers: &[C]) -> impl Iterator<Item = (u32, &C)> {
    servers
        .iter()
        .enumerate()
        .filter(|(_, s)| s.state().takes_new_work())
        .map_while(|(i, s)| Some((u32::try_from(i).ok()?, s)))
}
