//! Random choice weighted by capacity, over prefix sums built from the ready servers.

use super::{first_eligible_from, ready_at_build, weight, Candidate, PickContext};

/// Weighted draws tried before the fallback scan. Each draw lands on a still-eligible
/// server with probability (eligible weight ÷ weight at build), so when most of the pool
/// is still eligible a miss on all four is rare.
const DRAW_ATTEMPTS: usize = 4;

/// Random, weighted by capacity: a draw in `0..Σw` and a binary search over prefix sums,
/// O(log N) per pick.
#[derive(Debug, Default)]
pub struct WeightedRandom {
    /// `ends[k]` = total weight of the first `k + 1` ready servers (strictly increasing).
    ends: Vec<u64>,
    /// The server index of each entry of `ends`.
    indices: Vec<u32>,
}

impl WeightedRandom {
    /// Precomputes prefix sums of capacity over the servers that take new work now.
    pub fn build<C: Candidate>(servers: &[C]) -> Self {
        let mut total: u64 = 0;
        let (ends, indices) = ready_at_build(servers)
            .map(|(i, s)| {
                // Saturating only matters past 2³² servers of capacity u32::MAX.
                total = total.saturating_add(weight(s));
                (total, i)
            })
            .unzip();
        Self { ends, indices }
    }

    /// A server drawn with probability ∝ capacity among those ready at build; if draws keep
    /// hitting servers no longer eligible, the first eligible server from a random start.
    pub fn pick<C: Candidate>(&self, servers: &[C], ctx: &mut PickContext<'_>) -> Option<usize> {
        for _ in 0..DRAW_ATTEMPTS {
            let Some(i) = self.draw(ctx.rng) else { break };
            if servers.get(i).is_some_and(|s| ctx.eligible(i, s)) {
                return Some(i);
            }
        }
        let start = ctx.rng.usize(..);
        first_eligible_from(servers, ctx, start)
    }

    /// One weighted draw over the servers ready at build, or `None` if there were none.
    fn draw(&self, rng: &mut fastrand::Rng) -> Option<usize> {
        let total = *self.ends.last()?;
        let r = rng.u64(0..total);
        // The first entry whose range [previous end, end) holds r.
        let k = self.ends.partition_point(|&end| end <= r);
        self.indices.get(k).map(|&i| i as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{tally, Srv};
    use crate::ServerState::{Down, Drain, Ready};

    fn counts(wr: &WeightedRandom, servers: &[Srv], exclude: &[usize], n: usize) -> Vec<usize> {
        let mut rng = fastrand::Rng::with_seed(11);
        tally(servers.len(), n, || wr.pick(servers, &mut PickContext::new(&mut rng).excluding(exclude)))
    }

    #[test]
    fn empty_all_excluded_and_single() {
        let wr = WeightedRandom::build::<Srv>(&[]);
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(wr.pick::<Srv>(&[], &mut PickContext::new(&mut rng)), None);
        let servers = [Srv::new("a", 1), Srv::new("b", 1).state(Down)];
        let wr = WeightedRandom::build(&servers);
        assert_eq!(counts(&wr, &servers, &[0], 20), vec![0, 0]);
        assert_eq!(counts(&wr, &servers, &[], 20), vec![20, 0]);
    }

    #[test]
    fn shares_follow_capacity_and_zero_counts_as_one() {
        let servers = [Srv::new("a", 0), Srv::new("b", 3), Srv::new("c", 0).state(Drain)];
        let wr = WeightedRandom::build(&servers);
        let c = counts(&wr, &servers, &[], 40_000);
        let share = c[0] as f64 / 40_000.0;
        assert!((share - 0.25).abs() < 0.01, "{c:?}");
        assert_eq!(c[2], 0);
    }

    #[test]
    fn stale_build_still_finds_eligible_servers() {
        let mut servers = [Srv::new("a", 1000), Srv::new("b", 1).state(Down), Srv::new("c", 1)];
        let wr = WeightedRandom::build(&servers);
        servers[0].state = Down;
        servers[1].state = Ready;
        let c = counts(&wr, &servers, &[], 1000);
        assert_eq!(c[0], 0);
        assert_eq!(c[1] + c[2], 1000);
    }

    #[test]
    fn huge_capacities_do_not_overflow() {
        let servers = vec![Srv::new("a", u32::MAX); 3];
        let wr = WeightedRandom::build(&servers);
        assert_eq!(counts(&wr, &servers, &[], 300).iter().sum::<usize>(), 300);
    }
}
