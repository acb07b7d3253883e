//! A precomputed ring of server indices (the round-robin schedule, the Maglev table) and
//! the forward walk that skips entries which are no longer eligible.

use std::fmt;

use super::{Candidate, PickContext};

/// Entries tried before checking that the ring holds any eligible server at all. Keeps the
/// common case (the entry at the cursor is eligible) cheap, and the worst case (every
/// server in the ring down or excluded) O(distinct servers) instead of O(ring length).
const QUICK_STEPS: usize = 16;

/// A ring of server indices, plus the distinct servers it holds.
#[derive(Default)]
pub(crate) struct Ring {
    entries: Vec<u32>,
    members: Vec<u32>,
}

/// Sizes only: a Maglev table is 65,537 entries, too many for a log line.
impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("entries", &self.entries.len())
            .field("servers", &self.members.len())
            .finish()
    }
}

impl Ring {
    /// Wraps `entries` (indices into the servers the ring was built from).
    pub(crate) fn new(entries: Vec<u32>) -> Self {
        let mut members = entries.clone();
        members.sort_unstable();
        members.dedup();
        Self { entries, members }
    }

    /// The ring's entries, in order.
    pub(crate) fn entries(&self) -> &[u32] {
        &self.entries
    }

    /// The first eligible entry at or after `start % len`, wrapping, within one lap.
    /// `None` when the ring is empty or none of its servers is eligible.
    pub(crate) fn walk<C: Candidate>(
        &self,
        servers: &[C],
        ctx: &PickContext<'_>,
        start: usize,
    ) -> Option<usize> {
        let len = self.entries.len();
        if len == 0 {
            return None;
        }
        let start = start % len;
        let quick = len.min(QUICK_STEPS);
        if let Some(i) = self.walk_steps(servers, ctx, start, quick) {
            return Some(i);
        }
        // A full lap is only worth it when something in the ring can still be chosen; the
        // result is the same entry a plain full lap would find.
        if quick == len || !self.any_member_eligible(servers, ctx) {
            return None;
        }
        self.walk_steps(servers, ctx, (start + quick) % len, len - quick)
    }

    /// Walks `steps` entries from `start` (< len), wrapping.
    fn walk_steps<C: Candidate>(
        &self,
        servers: &[C],
        ctx: &PickContext<'_>,
        start: usize,
        steps: usize,
    ) -> Option<usize> {
        let (before, from) = self.entries.split_at(start);
        from.iter().chain(before).take(steps).map(|&e| e as usize).find(|&i| eligible_at(servers, ctx, i))
    }

    fn any_member_eligible<C: Candidate>(&self, servers: &[C], ctx: &PickContext<'_>) -> bool {
        self.members.iter().any(|&m| eligible_at(servers, ctx, m as usize))
    }
}

/// Eligibility that tolerates an index past the slice (a caller that passed a different
/// slice than the one the ring was built from gets a scan, not a panic).
fn eligible_at<C: Candidate>(servers: &[C], ctx: &PickContext<'_>, i: usize) -> bool {
    servers.get(i).is_some_and(|s| ctx.eligible(i, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::Srv;
    use crate::ServerState::Down;

    #[test]
    fn walks_forward_past_ineligible_entries() {
        let servers = [Srv::new("a", 1), Srv::new("b", 1).state(Down), Srv::new("c", 1)];
        let ring = Ring::new(vec![0, 1, 1, 2]);
        let mut rng = fastrand::Rng::with_seed(1);
        let ctx = PickContext::new(&mut rng);
        assert_eq!(ring.walk(&servers, &ctx, 1), Some(2));
        assert_eq!(ring.walk(&servers, &ctx, 0), Some(0));
        assert_eq!(ring.walk(&servers, &ctx, 7), Some(2)); // start wraps modulo len
    }

    #[test]
    fn long_ring_with_nothing_eligible_is_none() {
        let servers = [Srv::new("a", 1).state(Down), Srv::new("b", 1)];
        let ring = Ring::new(vec![0; 1000]);
        let mut rng = fastrand::Rng::with_seed(1);
        let ctx = PickContext::new(&mut rng);
        assert_eq!(ring.walk(&servers, &ctx, 5), None);
        // The one eligible entry far past the quick steps is still found.
        let mut entries = vec![0; 1000];
        entries[400] = 1;
        let ring = Ring::new(entries);
        assert_eq!(ring.walk(&servers, &ctx, 500), Some(1));
    }

    #[test]
    fn debug_shows_sizes_not_entries() {
        assert_eq!(format!("{:?}", Ring::new(vec![3, 1, 3])), "Ring { entries: 3, servers: 2 }");
    }

    #[test]
    fn empty_ring_and_out_of_range_entries_are_none() {
        let servers = [Srv::new("a", 1)];
        let mut rng = fastrand::Rng::with_seed(1);
        let ctx = PickContext::new(&mut rng);
        assert_eq!(Ring::new(Vec::new()).walk(&servers, &ctx, 3), None);
        assert_eq!(Ring::new(vec![9, 9]).walk(&servers, &ctx, 0), None);
    }
}
