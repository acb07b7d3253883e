//! Power of two random choices over latency EWMA × (in-flight + 1) ÷ capacity (linkerd-style).

use std::cmp::Ordering;

use super::{weight, Candidate, PickContext};

/// Random draws tried for each of the two choices before giving up on sampling and
/// collecting the eligible servers instead. With half the pool ineligible, all eight miss
/// once in 256 picks; the fallback allocates but stays correct.
const SAMPLE_ATTEMPTS: usize = 8;

/// Power of two choices: draw two distinct eligible servers uniformly, send to the cheaper.
/// Comparing only two keeps every pick O(1) and avoids the herd that "always the global
/// minimum" causes when many choosers see the same stale numbers.
#[derive(Debug, Default)]
pub struct P2cEwma;

impl P2cEwma {
    /// Builds the balancer; it keeps no state (the EWMAs live with the candidates).
    pub fn build<C: Candidate>(_servers: &[C]) -> Self {
        Self
    }

    /// The cheaper of two distinct eligible servers drawn at random; the only eligible
    /// server if there is one; `None` if there is none.
    pub fn pick<C: Candidate>(&self, servers: &[C], ctx: &mut PickContext<'_>) -> Option<usize> {
        let (a, b) = match sample_pair(servers, ctx) {
            Sample::None => return None,
            Sample::One(i) => return Some(i),
            Sample::Two(a, b) => (a, b),
        };
        let (ca, cb) = (cost(&servers[a]), cost(&servers[b]));
        let by_cost = ca.total_cmp(&cb);
        let by_capacity = weight(&servers[b]).cmp(&weight(&servers[a]));
        Some(match by_cost.then(by_capacity) {
            Ordering::Less => a,
            Ordering::Greater => b,
            Ordering::Equal if ctx.rng.bool() => a,
            Ordering::Equal => b,
        })
    }
}

/// Outcome of drawing two distinct eligible servers.
enum Sample {
    None,
    One(usize),
    Two(usize, usize),
}

/// Two distinct eligible indices, each uniform over the eligible servers (rejection
/// sampling keeps uniformity); falls back to an exact draw from the collected eligible
/// set when the pool is mostly ineligible.
fn sample_pair<C: Candidate>(servers: &[C], ctx: &mut PickContext<'_>) -> Sample {
    let first = draw(servers, ctx, None);
    let second = first.and_then(|a| draw(servers, ctx, Some(a)));
    if let (Some(a), Some(b)) = (first, second) {
        return Sample::Two(a, b);
    }
    let eligible: Vec<usize> = (0..servers.len()).filter(|&i| ctx.eligible(i, &servers[i])).collect();
    match eligible.len() {
        0 => Sample::None,
        1 => Sample::One(eligible[0]),
        m => {
            let i = ctx.rng.usize(0..m);
            // Draw the second among the other m − 1, shifting past the first.
            let j = ctx.rng.usize(0..m - 1);
            let j = if j >= i { j + 1 } else { j };
            Sample::Two(eligible[i], eligible[j])
        }
    }
}

/// A uniformly drawn eligible index other than `not`, within [`SAMPLE_ATTEMPTS`] draws.
fn draw<C: Candidate>(servers: &[C], ctx: &mut PickContext<'_>, not: Option<usize>) -> Option<usize> {
    if servers.is_empty() {
        return None;
    }
    for _ in 0..SAMPLE_ATTEMPTS {
        let i = ctx.rng.usize(0..servers.len());
        if Some(i) != not && ctx.eligible(i, &servers[i]) {
            return Some(i);
        }
    }
    None
}

/// Expected cost of one more request: latency EWMA × (in-flight + 1) ÷ capacity.
/// An EWMA of 0 (no sample yet) costs 0, so new servers are tried promptly and earn a real
/// EWMA; a NaN EWMA is a broken measurement and costs +∞; negative ones count as 0.
fn cost<C: Candidate>(server: &C) -> f64 {
    let ewma = server.latency_ewma();
    if ewma.is_nan() {
        return f64::INFINITY;
    }
    if ewma <= 0.0 {
        return 0.0;
    }
    let pending = server.in_flight().saturating_add(1) as f64;
    ewma * pending / weight(server) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{tally, Srv};
    use crate::ServerState::{Down, Maint};

    fn counts(servers: &[Srv], exclude: &[usize], n: usize) -> Vec<usize> {
        let p2c = P2cEwma::build(servers);
        let mut rng = fastrand::Rng::with_seed(3);
        tally(servers.len(), n, || p2c.pick(servers, &mut PickContext::new(&mut rng).excluding(exclude)))
    }

    #[test]
    fn empty_all_excluded_and_single() {
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(P2cEwma.pick::<Srv>(&[], &mut PickContext::new(&mut rng)), None);
        let servers = [Srv::new("a", 1), Srv::new("b", 1).state(Down)];
        assert_eq!(counts(&servers, &[0], 20), vec![0, 0]);
        assert_eq!(counts(&servers, &[], 20), vec![20, 0]);
    }

    #[test]
    fn cheaper_of_two_always_wins() {
        let servers =
            [Srv::new("slow", 1).ewma(0.5).in_flight(1), Srv::new("fast", 1).ewma(0.1).in_flight(1)];
        assert_eq!(counts(&servers, &[], 100), vec![0, 100]);
        // Capacity divides the cost: 0.3×1÷4 < 0.1×1÷1; capacity 0 counts as 1.
        let servers = [Srv::new("big", 4).ewma(0.3), Srv::new("small", 0).ewma(0.1)];
        assert_eq!(counts(&servers, &[], 100), vec![100, 0]);
    }

    #[test]
    fn unsampled_is_optimistic_and_nan_is_pessimistic() {
        let servers = [Srv::new("known", 1).ewma(0.01), Srv::new("new", 1).ewma(0.0)];
        assert_eq!(counts(&servers, &[], 50), vec![0, 50]);
        let servers = [Srv::new("broken", 1).ewma(f64::NAN), Srv::new("slow", 1).ewma(1e9)];
        assert_eq!(counts(&servers, &[], 50), vec![0, 50]);
    }

    #[test]
    fn equal_cost_prefers_capacity_then_random() {
        let servers = [Srv::new("a", 1), Srv::new("b", 2)];
        assert_eq!(counts(&servers, &[], 50), vec![0, 50]);
        let servers = [Srv::new("a", 1), Srv::new("b", 1)];
        let c = counts(&servers, &[], 1000);
        assert!(c[0] > 400 && c[1] > 400, "{c:?}");
    }

    #[test]
    fn mostly_ineligible_pool_falls_back_to_collecting() {
        let mut servers = vec![Srv::new("x", 1).state(Maint); 1000];
        servers[777].state = crate::ServerState::Ready;
        assert_eq!(counts(&servers, &[], 10)[777], 10);
        servers[3].state = crate::ServerState::Ready;
        servers[3].ewma = 1.0;
        assert_eq!(counts(&servers, &[], 10)[777], 10);
    }

    #[test]
    fn every_eligible_server_gets_sampled() {
        let servers = vec![Srv::new("x", 1); 5];
        assert!(counts(&servers, &[2], 1000).iter().enumerate().all(|(i, &c)| (i == 2) == (c == 0)));
    }
}
