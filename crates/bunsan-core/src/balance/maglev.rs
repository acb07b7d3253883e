//! Maglev consistent hashing: a 65,537-entry lookup table, weighted by capacity.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::random::WeightedRandom;
use super::ring::Ring;
use super::{first_eligible_from, ready_at_build, weight, Candidate, PickContext};
use crate::hash::seeded_hash;

/// Entries in a Maglev table: a prime (so every skip walks a full permutation), and about
/// 650× a 100-server pool, which keeps each server's share within a fraction of a percent.
pub const MAGLEV_TABLE_SIZE: usize = 65_537;

const M: u64 = MAGLEV_TABLE_SIZE as u64;

/// Marks a slot not yet claimed while the table is filled.
const FREE: u32 = u32::MAX;

/// Maglev (Eisenbud et al., NSDI 2016) over the servers ready at build.
///
/// **Weighting** (Envoy-style credit): in each round every server adds its capacity to a
/// credit, and a server whose credit reaches the largest capacity spends that much to
/// claim its next preferred free slot. So the largest servers claim once every round and a
/// server of capacity `w` once every `max ÷ w` rounds, and table shares follow capacity.
/// Within a round, servers claim in order of `id` (not pool order), so every node with the
/// same servers builds the same table. The rounds are simulated with a heap of "round of
/// the next claim" (`⌈k·max ÷ w⌉` for the k-th claim), O(M log N), so one big server among
/// many small ones does not cost M × N.
///
/// **Keys**: a request with a key takes slot `key % M`, or the first eligible entry after
/// it; so when a server goes down or is excluded (failover), only its keys move, spread
/// over the others by the table's interleaving. **No key**: a request without a key is
/// balanced at random, weighted by capacity.
#[derive(Debug, Default)]
pub struct Maglev {
    table: Ring,
    keyless: WeightedRandom,
}

impl Maglev {
    /// Fills the table over the servers that take new work now.
    pub fn build<C: Candidate>(servers: &[C]) -> Self {
        let mut perms: Vec<Permutation<'_>> =
            ready_at_build(servers).map(|(index, s)| Permutation::new(index, s)).collect();
        perms.sort_by(|a, b| a.id.cmp(b.id).then(a.index.cmp(&b.index)));
        separate_skips(&mut perms);
        Self { table: Ring::new(fill(&mut perms)), keyless: WeightedRandom::build(servers) }
    }

    /// With a key: the table's server for it, or the next eligible one in the table; the
    /// first eligible server of the pool (scanning from the key) when no server in the
    /// table is eligible. Without a key: weighted random.
    pub fn pick<C: Candidate>(&self, servers: &[C], ctx: &mut PickContext<'_>) -> Option<usize> {
        let Some(key) = ctx.key else {
            return self.keyless.pick(servers, ctx);
        };
        let slot = (key % M) as usize;
        self.table
            .walk(servers, ctx, slot)
            // Truncating the key on 32-bit targets is fine: it only picks where to start.
            .or_else(|| first_eligible_from(servers, ctx, key as usize))
    }

    /// The table: one server index per slot (empty when no server was ready at build).
    pub fn table(&self) -> &[u32] {
        self.table.entries()
    }
}

/// Gives every server its own skip. Two servers with the same skip walk the same cycle
/// of slots, one a shift of the other, so every claim either makes moves the other's, and
/// removing *any* server then moves far more than its own keys (a test found 17% moved
/// for 1 of 12 servers). With 65,536 possible skips a pool of N servers has such a pair
/// with probability about N²/131,072, so the later server in id order takes the next
/// skip of its own hash sequence instead. Removing the earlier one of a pair gives the
/// later its first skip back, which moves its keys too: at most 2/N then, and only then.
fn separate_skips(perms: &mut [Permutation<'_>]) {
    for i in 1..perms.len() {
        let mut seed = 2;
        while perms[..i].iter().any(|earlier| earlier.skip == perms[i].skip) {
            seed += 1;
            perms[i].skip = skip_for(seed, perms[i].id);
        }
    }
}

/// A skip in 1..M (never 0, and coprime with the prime M, so a walk visits every slot),
/// from hash function `seed` of the server's id.
fn skip_for(seed: u64, id: &str) -> u64 {
    seeded_hash(seed, id.as_bytes()) % (M - 1) + 1
}

/// One server's walk through its preference list `offset, offset + skip, …` (mod M).
struct Permutation<'a> {
    index: u32,
    id: &'a str,
    weight: u64,
    next_slot: u64,
    skip: u64,
    claims: u64,
}

impl<'a> Permutation<'a> {
    fn new<C: Candidate>(index: u32, server: &'a C) -> Self {
        let id = server.id();
        Self {
            index,
            id,
            weight: weight(server),
            next_slot: seeded_hash(1, id.as_bytes()) % M,
            skip: skip_for(2, id),
            claims: 0,
        }
    }

    /// The round in which this server makes its next claim: the first round `r` whose
    /// accumulated credit `r·w` covers `(claims + 1)·max`.
    fn next_round(&self, max_weight: u64) -> u64 {
        // ≤ (M + 1) · 2³² < 2⁶⁴.
        ((self.claims + 1) * max_weight).div_ceil(self.weight)
    }

    /// Claims the next free slot of this server's preference list.
    fn claim(&mut self, table: &mut [u32]) -> bool {
        // At most M probes: the walk is a permutation, so it meets any free slot.
        for _ in 0..M {
            let slot = self.next_slot as usize;
            // Both terms are below M, so one subtraction replaces a (much slower) `%`.
            self.next_slot += self.skip;
            if self.next_slot >= M {
                self.next_slot -= M;
            }
            if table[slot] == FREE {
                table[slot] = self.index;
                self.claims += 1;
                return true;
            }
        }
        false
    }
}

/// Fills all M slots by credit rounds (see [`Maglev`]); empty when there are no servers.
fn fill(perms: &mut [Permutation<'_>]) -> Vec<u32> {
    let Some(max_weight) = perms.iter().map(|p| p.weight).max() else {
        return Vec::new();
    };
    let mut table = vec![FREE; MAGLEV_TABLE_SIZE];
    // Min-heap on (round, position): position breaks ties within a round in id order.
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> =
        perms.iter().enumerate().map(|(pos, p)| Reverse((p.next_round(max_weight), pos))).collect();
    for _ in 0..MAGLEV_TABLE_SIZE {
        let Some(Reverse((_, pos))) = heap.pop() else {
            break;
        };
        let perm = &mut perms[pos];
        if !perm.claim(&mut table) {
            break;
        }
        heap.push(Reverse((perm.next_round(max_weight), pos)));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::Srv;
    use crate::ServerState::{Down, Maint};

    fn pick_key(m: &Maglev, servers: &[Srv], key: u64, exclude: &[usize]) -> Option<usize> {
        let mut rng = fastrand::Rng::with_seed(1);
        m.pick(servers, &mut PickContext::new(&mut rng).with_key(Some(key)).excluding(exclude))
    }

    fn shares(m: &Maglev, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        m.table().iter().for_each(|&i| c[i as usize] += 1);
        c
    }

    #[test]
    fn table_is_full_and_weighted_by_capacity() {
        let servers = [Srv::new("a", 1), Srv::new("b", 2), Srv::new("c", 0), Srv::new("d", 4)];
        let m = Maglev::build(&servers);
        assert_eq!(m.table().len(), MAGLEV_TABLE_SIZE);
        let c = shares(&m, 4);
        let expected = [1.0 / 8.0, 2.0 / 8.0, 1.0 / 8.0, 4.0 / 8.0];
        for (got, want) in c.iter().zip(expected) {
            let share = *got as f64 / MAGLEV_TABLE_SIZE as f64;
            assert!((share - want).abs() < 0.002, "{c:?}");
        }
    }

    #[test]
    fn table_does_not_depend_on_pool_order() {
        let servers = [Srv::new("a", 1), Srv::new("b", 3), Srv::new("c", 2)];
        let reversed = [Srv::new("c", 2), Srv::new("b", 3), Srv::new("a", 1)];
        let ids = |s: &[Srv], m: &Maglev| -> Vec<String> {
            m.table().iter().map(|&i| s[i as usize].id.clone()).collect()
        };
        assert_eq!(ids(&servers, &Maglev::build(&servers)), ids(&reversed, &Maglev::build(&reversed)));
    }

    #[test]
    fn empty_all_excluded_and_single() {
        let m = Maglev::build::<Srv>(&[]);
        assert!(m.table().is_empty());
        assert_eq!(pick_key(&m, &[], 42, &[]), None);
        let servers = [Srv::new("a", 1), Srv::new("b", 1).state(Down)];
        let m = Maglev::build(&servers);
        assert_eq!(pick_key(&m, &servers, 42, &[0]), None);
        assert_eq!(pick_key(&m, &servers, 42, &[]), Some(0));
        assert!(m.table().iter().all(|&i| i == 0));
    }

    #[test]
    fn excluded_server_keys_move_and_others_stay() {
        let servers: Vec<Srv> = (0..5).map(|i| Srv::new(&format!("s{i}"), 1)).collect();
        let m = Maglev::build(&servers);
        for key in 0..2000u64 {
            let home = pick_key(&m, &servers, key, &[]);
            let failover = pick_key(&m, &servers, key, &[2]);
            if home == Some(2) {
                assert!(failover.is_some_and(|i| i != 2));
            } else {
                assert_eq!(home, failover);
            }
        }
    }

    #[test]
    fn no_ready_server_at_build_falls_back_to_scan() {
        let mut servers = [Srv::new("a", 1).state(Maint), Srv::new("b", 1).state(Down)];
        let m = Maglev::build(&servers);
        assert_eq!(pick_key(&m, &servers, 7, &[]), None);
        servers[1].state = crate::ServerState::Ready;
        assert_eq!(pick_key(&m, &servers, 7, &[]), Some(1));
        assert_eq!(pick_key(&m, &servers, u64::MAX, &[]), Some(1));
    }

    #[test]
    fn keyless_requests_are_weighted_random() {
        let servers = [Srv::new("a", 3), Srv::new("b", 1)];
        let m = Maglev::build(&servers);
        let mut rng = fastrand::Rng::with_seed(4);
        let hits =
            (0..10_000).filter(|_| m.pick(&servers, &mut PickContext::new(&mut rng)) == Some(0)).count();
        assert!((hits as f64 / 10_000.0 - 0.75).abs() < 0.02, "{hits}");
    }

    #[test]
    fn huge_capacities_fill_the_table() {
        let servers = [Srv::new("a", u32::MAX), Srv::new("b", 1), Srv::new("c", u32::MAX - 7)];
        let m = Maglev::build(&servers);
        let c = shares(&m, 3);
        assert_eq!(c.iter().sum::<usize>(), MAGLEV_TABLE_SIZE);
        // b's share, 1 in 8·10⁹, rounds to no slot at all.
        assert!(c[1] == 0 && c[0].abs_diff(c[2]) < 10, "{c:?}");
    }
}
