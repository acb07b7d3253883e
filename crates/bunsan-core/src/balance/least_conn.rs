//! Least connections: fewest in-flight requests or connections ÷ capacity, ties in turn.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{weight, Candidate, PickContext};

/// Least in-flight ÷ capacity, counting only this chooser's own requests or connections
/// ([`Candidate::in_flight`]), never the reported load, so it reacts within one request.
#[derive(Debug, Default)]
pub struct LeastConn {
    /// Where the next scan starts. Rotating it makes equal servers take turns instead of
    /// the lowest index winning every tie (which would pile a burst onto one server).
    cursor: AtomicUsize,
}

impl LeastConn {
    /// Builds the balancer; it keeps only the rotating cursor.
    pub fn build<C: Candidate>(_servers: &[C]) -> Self {
        Self::default()
    }

    /// The eligible server with the fewest in-flight per unit of capacity; the first of
    /// equal ones from this pick's start position.
    pub fn pick<C: Candidate>(&self, servers: &[C], ctx: &mut PickContext<'_>) -> Option<usize> {
        let n = servers.len();
        if n == 0 {
            return None;
        }
        // Relaxed: the cursor only spreads ties; it orders no other memory.
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(usize, Conn)> = None;
        for i in (start..n).chain(0..start) {
            let server = &servers[i];
            if !ctx.eligible(i, server) {
                continue;
            }
            let conn = Conn::of(server);
            if best.as_ref().is_none_or(|(_, b)| conn.fewer_than(b)) {
                best = Some((i, conn));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// A server's in-flight count and weight, compared as a ratio without rounding.
struct Conn {
    in_flight: u64,
    weight: u64,
}

impl Conn {
    fn of<C: Candidate>(server: &C) -> Self {
        Self { in_flight: server.in_flight(), weight: weight(server) }
    }

    /// `a/wa < b/wb` as `a·wb < b·wa`: exact in u128 (64 + 32 bits), where floats would
    /// round large counts into false ties.
    fn fewer_than(&self, other: &Self) -> bool {
        u128::from(self.in_flight) * u128::from(other.weight)
            < u128::from(other.in_flight) * u128::from(self.weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{tally, Srv};
    use crate::ServerState::{Down, Drain};

    fn counts(servers: &[Srv], exclude: &[usize], n: usize) -> Vec<usize> {
        let lc = LeastConn::build(servers);
        let mut rng = fastrand::Rng::with_seed(1);
        tally(servers.len(), n, || lc.pick(servers, &mut PickContext::new(&mut rng).excluding(exclude)))
    }

    #[test]
    fn empty_all_excluded_and_single() {
        assert_eq!(counts(&[], &[], 5), Vec::<usize>::new());
        let lc = LeastConn::build::<Srv>(&[]);
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(lc.pick::<Srv>(&[], &mut PickContext::new(&mut rng)), None);
        let servers = [Srv::new("a", 1), Srv::new("b", 1).state(Down)];
        assert_eq!(counts(&servers, &[0], 5), vec![0, 0]);
        assert_eq!(counts(&servers[..1], &[], 5), vec![5]);
    }

    #[test]
    fn fewest_per_capacity_wins_and_capacity_zero_is_one() {
        // b: 4÷2 = 2 beats a: 3÷1 and d: 3÷0(=1) = 3; c has none in flight but is drained.
        let servers = [
            Srv::new("a", 1).in_flight(3),
            Srv::new("b", 2).in_flight(4),
            Srv::new("c", 0).in_flight(0).state(Drain),
            Srv::new("d", 0).in_flight(3),
        ];
        assert_eq!(counts(&servers, &[], 10), vec![0, 10, 0, 0]);
        // a and d tie at 3; the rotating start hands the tie to each in turn (d wins the
        // starts 1..=3 that reach it first, a the start 0).
        assert_eq!(counts(&servers, &[1], 8), vec![2, 0, 0, 6]);
    }

    #[test]
    fn ignores_reported_load() {
        let servers = [Srv::new("a", 1).load(100.0), Srv::new("b", 1).in_flight(1)];
        assert_eq!(counts(&servers, &[], 10), vec![10, 0]);
    }

    #[test]
    fn equal_servers_take_turns() {
        let servers = vec![Srv::new("x", 1); 4];
        assert_eq!(counts(&servers, &[], 400), vec![100; 4]);
    }

    #[test]
    fn huge_counts_compare_exactly() {
        let servers =
            [Srv::new("a", u32::MAX).in_flight(u64::MAX), Srv::new("b", u32::MAX).in_flight(u64::MAX - 1)];
        assert_eq!(counts(&servers, &[], 4), vec![0, 4]);
    }
}
