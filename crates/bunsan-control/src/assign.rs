//! [0051]'s second mode: the state manager itself decides which server of a pool each
//! subscriber uses, so the whole system's load is steered from one place.
//!
//! The choice is seed 001's least relative load, where every subscriber already assigned
//! to a server counts as a share of the pool's load on it. Without that, every
//! subscriber asking between two reports would see the same least-loaded server and
//! herd onto it.

use std::collections::HashMap;

use bunsan_core::{Algorithm, Candidate, PickContext, Selector, ServerState};

use crate::table::ReadyServer;

/// Assignments, per pool: subscriber id → server. In memory only: after a restart the
/// subscribers simply get fresh assignments.
#[derive(Debug)]
pub struct Assigner {
    pools: HashMap<String, HashMap<String, String>>,
    rng: fastrand::Rng,
}

impl Default for Assigner {
    fn default() -> Self {
        Self { pools: HashMap::new(), rng: fastrand::Rng::new() }
    }
}

/// A ready server with its assigned subscribers' shares added to its load.
#[derive(Debug)]
struct Weighed<'a> {
    server: &'a ReadyServer,
    load: f64,
}

impl Candidate for Weighed<'_> {
    fn id(&self) -> &str {
        &self.server.name
    }
    fn state(&self) -> ServerState {
        ServerState::Ready
    }
    fn capacity(&self) -> u32 {
        self.server.capacity
    }
    fn load(&self) -> f64 {
        self.load
    }
    fn in_flight(&self) -> u64 {
        0
    }
    fn latency_ewma(&self) -> f64 {
        0.0
    }
}

impl Assigner {
    /// An assigner with a seeded random source (ties are broken at random), for tests.
    pub fn with_seed(seed: u64) -> Self {
        Self { pools: HashMap::new(), rng: fastrand::Rng::with_seed(seed) }
    }

    /// The server `subscriber` should use in `pool`, given the pool's `ready` servers:
    /// its current one while that stays ready, else the least relatively loaded.
    pub fn assign(&mut self, pool: &str, subscriber: &str, ready: &[ReadyServer]) -> Option<String> {
        let assigned = self.pools.entry(pool.to_owned()).or_default();
        if let Some(current) = assigned.get(subscriber) {
            if ready.iter().any(|s| &s.name == current) {
                return Some(current.clone());
            }
        }
        assigned.remove(subscriber);
        let candidates = weigh(ready, assigned);
        let selector = Selector::build(Algorithm::LeastLoad, &candidates);
        let picked = selector.pick(&candidates, &mut PickContext::new(&mut self.rng))?;
        let name = candidates.get(picked)?.server.name.clone();
        assigned.insert(subscriber.to_owned(), name.clone());
        Some(name)
    }

    /// How many subscribers are assigned to each server of `pool`.
    pub fn counts(&self, pool: &str) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for server in self.pools.get(pool).into_iter().flat_map(|a| a.values()) {
            *counts.entry(server.clone()).or_default() += 1;
        }
        counts
    }
}

/// Adds to each server's load one share per subscriber assigned to it, a share being the
/// pool's total load ÷ the number of assigned subscribers (1 when that is 0), i.e. what
/// one subscriber brings on average.
fn weigh<'a>(ready: &'a [ReadyServer], assigned: &HashMap<String, String>) -> Vec<Weighed<'a>> {
    let on = |server: &ReadyServer| assigned.values().filter(|s| **s == server.name).count();
    let subscribers: usize = ready.iter().map(on).sum();
    let total: f64 = ready.iter().map(|s| s.load).sum();
    let share = if subscribers > 0 { total / subscribers as f64 } else { 0.0 };
    let share = if share > 0.0 && share.is_finite() { share } else { 1.0 };
    ready.iter().map(|server| Weighed { server, load: server.load + share * on(server) as f64 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(loads: &[(&str, f64, u32)]) -> Vec<ReadyServer> {
        loads.iter().map(|(n, l, c)| ReadyServer { name: (*n).into(), load: *l, capacity: *c }).collect()
    }

    #[test]
    fn seed_example_prefers_the_lower_relative_load() {
        let ready = servers(&[("host1", 20.0, 2), ("host2", 15.0, 1)]);
        assert_eq!(Assigner::with_seed(1).assign("app", "s1", &ready).as_deref(), Some("host1"));
    }

    #[test]
    fn subscribers_spread_evenly_and_stick() {
        let ready = servers(&[("a", 10.0, 1), ("b", 10.0, 1), ("c", 10.0, 1)]);
        let mut assigner = Assigner::with_seed(7);
        for i in 0..30 {
            assigner.assign("app", &format!("s{i}"), &ready);
        }
        let counts = assigner.counts("app");
        assert!(counts.values().all(|n| (9..=11).contains(n)), "{counts:?}");
        let first = assigner.assign("app", "s0", &ready);
        assert_eq!(assigner.assign("app", "s0", &ready), first);
    }

    #[test]
    fn an_assignment_moves_when_its_server_stops_being_ready_and_none_gives_none() {
        let mut assigner = Assigner::with_seed(3);
        let one = servers(&[("a", 0.0, 1)]);
        assert_eq!(assigner.assign("app", "s1", &one).as_deref(), Some("a"));
        let other = servers(&[("b", 0.0, 1)]);
        assert_eq!(assigner.assign("app", "s1", &other).as_deref(), Some("b"));
        assert_eq!(assigner.assign("app", "s1", &[]), None);
        assert!(assigner.counts("app").is_empty());
    }
}
