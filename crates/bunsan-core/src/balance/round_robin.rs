//! Smooth weighted round-robin (nginx's algorithm), precomputed into a schedule at build.

use std::cmp::Reverse;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::ring::Ring;
use super::{first_eligible_from, ready_at_build, weight, Candidate, PickContext};

/// The longest schedule built. A pool whose reduced weights sum to more is scaled down
/// proportionally: each weight becomes `max(1, w × MAX_SCHEDULE ÷ Σw)` (rounded down, then
/// reduced by their gcd again). Each server keeps its share to within one entry in about a
/// million, and at least one entry, so the schedule can exceed this bound only by the
/// number of servers (a pool of more than a million servers gets one entry each).
pub const MAX_SCHEDULE: usize = 1 << 20;

/// Smooth weighted round-robin by capacity.
///
/// `build` runs nginx's algorithm (each step every server adds its weight to its
/// `current`, the largest `current` is picked — the first in pool order on a tie — and
/// loses the total) for one full cycle, `Σw ÷ gcd(w)` steps, over the servers ready at
/// build. `pick` only advances an atomic cursor through that schedule.
///
/// Servers of equal weight always take their turns in pool order, so `build` simulates
/// one candidate per distinct weight: O(Σw × distinct capacities), microseconds for the
/// usual small capacities and at most 2²⁰ steps (see [`MAX_SCHEDULE`]) for huge ones.
#[derive(Debug, Default)]
pub struct SmoothRoundRobin {
    schedule: Ring,
    cursor: AtomicUsize,
}

impl SmoothRoundRobin {
    /// Precomputes the schedule over the servers that take new work now.
    pub fn build<C: Candidate>(servers: &[C]) -> Self {
        let (indices, mut weights): (Vec<u32>, Vec<u64>) =
            ready_at_build(servers).map(|(i, s)| (i, weight(s))).unzip();
        fit_weights(&mut weights);
        let schedule = smooth_schedule(&weights).into_iter().map(|pos| indices[pos]).collect();
        Self { schedule: Ring::new(schedule), cursor: AtomicUsize::new(0) }
    }

    /// The schedule's next entry; when that server is no longer eligible, the next eligible
    /// one after it in the schedule (so the others keep roughly their weights); when none
    /// in the schedule is (all gone down, excluded, or none was ready at build), the first
    /// eligible server of the whole pool from a rotating start.
    pub fn pick<C: Candidate>(&self, servers: &[C], ctx: &mut PickContext<'_>) -> Option<usize> {
        // Relaxed: the cursor only spreads picks; it orders no other memory.
        let tick = self.cursor.fetch_add(1, Ordering::Relaxed);
        self.schedule.walk(servers, ctx, tick).or_else(|| first_eligible_from(servers, ctx, tick))
    }

    /// One cycle of the schedule, as server indices.
    pub fn schedule(&self) -> &[u32] {
        self.schedule.entries()
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Divides weights by their gcd (2,2,4 cycles like 1,1,2, in a quarter of the entries).
fn reduce(weights: &mut [u64]) {
    let g = weights.iter().fold(0, |g, &w| gcd(g, w));
    if g > 1 {
        weights.iter_mut().for_each(|w| *w /= g);
    }
}

/// Reduces the weights, then scales them down if one cycle would exceed [`MAX_SCHEDULE`].
fn fit_weights(weights: &mut [u64]) {
    reduce(weights);
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let limit = MAX_SCHEDULE as u128;
    if total <= limit {
        return;
    }
    for w in weights.iter_mut() {
        // ≤ limit, so it fits in u64.
        let scaled = u128::from(*w) * limit / total;
        *w = u64::try_from(scaled).unwrap_or(u64::MAX).max(1);
    }
    reduce(weights);
}

/// Servers of equal weight, which nginx's algorithm always takes in turn (in pool order),
/// so one cycle costs O(Σw × distinct weights) rather than O(Σw × servers).
struct Group {
    weight: i64,
    members: Vec<usize>,
    /// Times the group was picked; member `picks % members.len()` is next.
    picks: usize,
    /// nginx's `current` of the next member. Members ahead of it in the group have been
    /// picked once more, so it holds the group's largest `current`, and the group's
    /// candidate is always that member.
    current: i64,
}

impl Group {
    fn next_member(&self) -> usize {
        self.members[self.picks % self.members.len()]
    }

    /// Records a pick of the next member (which loses `total`). The turn passes to a member
    /// not yet picked this lap, whose `current` equals what the picked one had before the
    /// loss, so `current` is unchanged, until the group wraps and every member has lost it.
    fn picked(&mut self, total: i64) {
        self.picks += 1;
        if self.picks % self.members.len() == 0 {
            self.current -= total;
        }
    }
}

/// One full cycle of nginx's smooth weighted round-robin over `weights`, as positions.
/// Weights come from [`fit_weights`], so their sum (≤ 2²⁰ + servers) fits easily in i64.
fn smooth_schedule(weights: &[u64]) -> Vec<usize> {
    let mut groups = group_by_weight(weights);
    let total: u64 = weights.iter().sum();
    let total_i = i64::try_from(total).unwrap_or(i64::MAX);
    let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        groups.iter_mut().for_each(|g| g.current += g.weight);
        // Largest current wins; on equal currents the lowest position, as nginx does.
        let Some(best) = groups.iter_mut().max_by_key(|g| (g.current, Reverse(g.next_member()))) else {
            break;
        };
        schedule.push(best.next_member());
        best.picked(total_i);
    }
    schedule
}

fn group_by_weight(weights: &[u64]) -> Vec<Group> {
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&p| (weights[p], p));
    let mut groups: Vec<Group> = Vec::new();
    for p in order {
        let weight = i64::try_from(weights[p]).unwrap_or(i64::MAX);
        match groups.last_mut() {
            Some(g) if g.weight == weight => g.members.push(p),
            _ => groups.push(Group { weight, members: vec![p], picks: 0, current: 0 }),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{tally, Srv};
    use crate::ServerState::{Down, Maint, Ready};

    /// nginx's loop, step by step, O(servers) per step: the reference for `smooth_schedule`.
    fn nginx_reference(weights: &[u64]) -> Vec<usize> {
        let total: u64 = weights.iter().sum();
        let mut current = vec![0i128; weights.len()];
        let mut out = Vec::new();
        for _ in 0..total {
            let mut best = 0;
            for (i, &w) in weights.iter().enumerate() {
                current[i] += i128::from(w);
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= i128::from(total);
            out.push(best);
        }
        out
    }

    fn picks(rr: &SmoothRoundRobin, servers: &[Srv], exclude: &[usize], n: usize) -> Vec<usize> {
        let mut rng = fastrand::Rng::with_seed(1);
        tally(servers.len(), n, || rr.pick(servers, &mut PickContext::new(&mut rng).excluding(exclude)))
    }

    #[test]
    fn grouped_schedule_matches_nginx_step_by_step() {
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..200 {
            let weights: Vec<u64> = (0..rng.usize(1..12)).map(|_| rng.u64(1..8)).collect();
            assert_eq!(smooth_schedule(&weights), nginx_reference(&weights), "{weights:?}");
        }
    }

    #[test]
    fn schedule_is_smooth_and_exact() {
        let servers = [Srv::new("a", 2), Srv::new("b", 1), Srv::new("c", 1)];
        let rr = SmoothRoundRobin::build(&servers);
        assert_eq!(rr.schedule(), &[0, 1, 2, 0]);
        assert_eq!(picks(&rr, &servers, &[], 400), vec![200, 100, 100]);
        // nginx's classic example: 5,1,1 gives a a b a c a a, not a a a a a b c.
        let servers = [Srv::new("a", 5), Srv::new("b", 1), Srv::new("c", 1)];
        assert_eq!(SmoothRoundRobin::build(&servers).schedule(), &[0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weights_are_reduced_and_capacity_zero_is_one() {
        let servers = [Srv::new("a", 4), Srv::new("b", 2), Srv::new("c", 0)];
        assert_eq!(SmoothRoundRobin::build(&servers).schedule().len(), 4 + 2 + 1);
        let servers = [Srv::new("a", 40), Srv::new("b", 20)];
        assert_eq!(SmoothRoundRobin::build(&servers).schedule(), &[0, 1, 0]);
    }

    #[test]
    fn huge_weights_are_scaled_to_the_bound() {
        let servers = [Srv::new("a", u32::MAX), Srv::new("b", u32::MAX - 1), Srv::new("c", 1)];
        let rr = SmoothRoundRobin::build(&servers);
        let len = rr.schedule().len();
        assert!(len <= MAX_SCHEDULE + servers.len(), "{len}");
        let count = |i| rr.schedule().iter().filter(|&&e| e == i).count();
        assert!(count(2) >= 1);
        assert!(count(0).abs_diff(count(1)) <= 1);
    }

    #[test]
    fn empty_all_excluded_and_single() {
        let rr = SmoothRoundRobin::build::<Srv>(&[]);
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(rr.pick::<Srv>(&[], &mut PickContext::new(&mut rng)), None);
        let servers = [Srv::new("a", 1), Srv::new("b", 3)];
        let rr = SmoothRoundRobin::build(&servers);
        assert_eq!(picks(&rr, &servers, &[0, 1], 10), vec![0, 0]);
        assert_eq!(picks(&rr, &servers[..1], &[], 10), vec![10]);
    }

    #[test]
    fn stale_schedule_skips_down_and_finds_newly_ready() {
        let mut servers = [Srv::new("a", 1), Srv::new("b", 1).state(Maint), Srv::new("c", 1)];
        let rr = SmoothRoundRobin::build(&servers);
        servers[0].state = Down;
        assert_eq!(picks(&rr, &servers, &[], 10), vec![0, 0, 10]);
        // b was not ready at build, so it is not in the schedule, but the scan finds it.
        servers[2].state = Down;
        servers[1].state = Ready;
        assert_eq!(picks(&rr, &servers, &[], 10), vec![0, 10, 0]);
    }
}
