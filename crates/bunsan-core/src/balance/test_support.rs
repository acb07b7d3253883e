//! A plain [`Candidate`] for the unit tests beside each algorithm.

use super::Candidate;
use crate::ServerState;

/// A server described by plain fields.
#[derive(Clone, Debug)]
pub(crate) struct Srv {
    pub id: String,
    pub state: ServerState,
    pub capacity: u32,
    pub load: f64,
    pub in_flight: u64,
    pub ewma: f64,
}

impl Srv {
    /// A ready server with no load.
    pub(crate) fn new(id: &str, capacity: u32) -> Self {
        Self { id: id.to_owned(), state: ServerState::Ready, capacity, load: 0.0, in_flight: 0, ewma: 0.0 }
    }

    pub(crate) fn state(mut self, state: ServerState) -> Self {
        self.state = state;
        self
    }

    pub(crate) fn load(mut self, load: f64) -> Self {
        self.load = load;
        self
    }

    pub(crate) fn in_flight(mut self, in_flight: u64) -> Self {
        self.in_flight = in_flight;
        self
    }

    pub(crate) fn ewma(mut self, ewma: f64) -> Self {
        self.ewma = ewma;
        self
    }
}

impl Candidate for Srv {
    fn id(&self) -> &str {
        &self.id
    }
    fn state(&self) -> ServerState {
        self.state
    }
    fn capacity(&self) -> u32 {
        self.capacity
    }
    fn load(&self) -> f64 {
        self.load
    }
    fn in_flight(&self) -> u64 {
        self.in_flight
    }
    fn latency_ewma(&self) -> f64 {
        self.ewma
    }
}

/// Counts how often each index is picked over `picks` calls of `pick`.
pub(crate) fn tally(n: usize, picks: usize, mut pick: impl FnMut() -> Option<usize>) -> Vec<usize> {
    let mut counts = vec![0; n];
    for _ in 0..picks {
        if let Some(i) = pick() {
            counts[i] += 1;
        }
    }
    counts
}
