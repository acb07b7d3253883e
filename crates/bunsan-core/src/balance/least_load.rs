//! Seed 001's least relative load: load ÷ capacity, lowest wins, ties weighted by capacity.

use super::{weight, Candidate, PickContext};

/// Least relative load. Needs nothing precomputed: every pick scans the live loads, O(N),
/// with no allocation.
#[derive(Debug, Default)]
pub struct LeastLoad;

impl LeastLoad {
    /// Builds the balancer; it keeps no state.
    pub fn build<C: Candidate>(_servers: &[C]) -> Self {
        Self
    }

    /// The eligible server with the lowest `load ÷ capacity`. Servers with exactly equal
    /// scores share the win at random in proportion to capacity (weighted reservoir
    /// sampling: with running tie weight `W`, a newcomer of weight `w` takes the place
    /// with probability `w / W`, which leaves each tied server chosen with `w_i / ΣW`).
    pub fn pick<C: Candidate>(&self, servers: &[C], ctx: &mut PickContext<'_>) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        let mut tie_weight: u64 = 0;
        for (i, server) in servers.iter().enumerate() {
            if !ctx.eligible(i, server) {
                continue;
            }
            let w = weight(server);
            let score = relative_load(server);
            match best {
                Some((_, b)) if score > b => {}
                Some((_, b)) if score == b => {
                    tie_weight = tie_weight.saturating_add(w);
                    if ctx.rng.u64(0..tie_weight) < w {
                        best = Some((i, score));
                    }
                }
                // First eligible server, or a strictly lower score: a new tie group.
                _ => {
                    best = Some((i, score));
                    tie_weight = w;
                }
            }
        }
        best.map(|(i, _)| i)
    }
}

/// `load ÷ capacity`, with NaN read as +∞ so a broken measurement never attracts work and
/// every score is comparable (no NaN reaches the `match` above).
fn relative_load<C: Candidate>(server: &C) -> f64 {
    let load = server.load();
    if load.is_nan() {
        f64::INFINITY
    } else {
        // Capacity ≤ u32::MAX converts to f64 exactly, and one correctly rounded division
        // makes equal ratios (20÷2, 10÷1) bit-equal, so ties are detected exactly.
        load / weight(server) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{tally, Srv};
    use crate::ServerState::{Down, Drain};

    fn pick(servers: &[Srv], exclude: &[usize], seed: u64) -> Option<usize> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut ctx = PickContext::new(&mut rng).excluding(exclude);
        LeastLoad::build(servers).pick(servers, &mut ctx)
    }

    #[test]
    fn empty_and_all_excluded_give_none() {
        assert_eq!(pick(&[], &[], 1), None);
        let servers = [Srv::new("a", 1), Srv::new("b", 1).state(Down)];
        assert_eq!(pick(&servers, &[0], 1), None);
    }

    #[test]
    fn single_server_is_picked_whatever_its_load() {
        let servers = [Srv::new("a", 1).load(f64::INFINITY)];
        assert_eq!(pick(&servers, &[], 1), Some(0));
        let servers = [Srv::new("a", 1).load(f64::NAN)];
        assert_eq!(pick(&servers, &[], 1), Some(0));
    }

    #[test]
    fn seed_example_and_capacity_zero_as_one() {
        let servers = [Srv::new("host1", 2).load(20.0), Srv::new("host2", 1).load(15.0)];
        assert_eq!(pick(&servers, &[], 3), Some(0));
        // Capacity 0 divides like 1: 9÷1 = 9 loses to 16÷2 = 8.
        let servers = [Srv::new("a", 0).load(9.0), Srv::new("b", 2).load(16.0)];
        assert_eq!(pick(&servers, &[], 3), Some(1));
    }

    #[test]
    fn nan_load_is_never_preferred_over_a_number() {
        let servers = [Srv::new("a", 1).load(f64::NAN), Srv::new("b", 1).load(1e300)];
        for seed in 0..50 {
            assert_eq!(pick(&servers, &[], seed), Some(1));
        }
        let servers = [Srv::new("a", 1).load(f64::INFINITY), Srv::new("b", 1).load(f64::NAN)];
        let counts = tally(2, 1000, || pick(&servers, &[], fastrand::u64(..)));
        assert!(counts[0] > 0 && counts[1] > 0, "∞ and NaN tie: {counts:?}");
    }

    #[test]
    fn skips_drained_and_excluded_minimum() {
        let servers =
            [Srv::new("a", 1).load(0.0).state(Drain), Srv::new("b", 1).load(1.0), Srv::new("c", 1).load(2.0)];
        assert_eq!(pick(&servers, &[], 1), Some(1));
        assert_eq!(pick(&servers, &[1], 1), Some(2));
    }

    #[test]
    fn ties_are_weighted_by_capacity() {
        let servers = [Srv::new("a", 3), Srv::new("b", 1)];
        let balancer = LeastLoad::build(&servers);
        let mut rng = fastrand::Rng::with_seed(9);
        let counts = tally(2, 40_000, || balancer.pick(&servers, &mut PickContext::new(&mut rng)));
        let share = counts[0] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.01, "share {share}");
    }

    #[test]
    fn huge_capacities_do_not_overflow() {
        let servers = vec![Srv::new("a", u32::MAX); 5];
        assert!(pick(&servers, &[], 1).is_some());
    }
}
