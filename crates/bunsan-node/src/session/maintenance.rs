//! Whole-table passes: the periodic sweep, and what the admin API and metrics read.
//!
//! Each pass visits the shards one at a time and holds a shard's lock only for that
//! shard, so a lookup waits at most one shard's work, never the whole pass.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::entry::{deadline_ms, Deadline, Ending, Live};
use super::table::{lock, Shard, SHARDS};
use super::{SessionInfo, SessionKeyBytes, SessionTable, SweepReport};

/// Below this capacity a map is never shrunk: reallocating would save little.
const SHRINK_FLOOR: usize = 1024;

/// Most sessions one sweep ends per shard (see [`SessionTable::sweep`]): under a
/// millisecond of lock time; 64 shards × 2048 a second outpaces any realistic rate of
/// sessions ending, and lookups end the sessions they meet anyway.
pub const SWEEP_BUDGET: usize = 2048;

/// A session the sweep ended: its server (a clone: the original is dropped in the map)
/// and its connection, both dropped after the shard's lock.
type Swept<S, C> = (S, Option<C>);

/// The allocations of maps a sweep shrank, freed after the shard's lock.
type Spare<S, C> = (Option<HashMap<SessionKeyBytes, Live<S, C>>>, Option<HashMap<SessionKeyBytes, Deadline>>);

impl<S: Clone + PartialEq, C> SessionTable<S, C> {
    /// Ends sessions past their idle timeout or lifetime (closing their connections) and
    /// drops tombstones past their deadline, shard by shard. The node runs this every
    /// second; lookups also end sessions they find over, so the sweep is what closes the
    /// connections of sessions nobody asks about.
    ///
    /// At most [`SWEEP_BUDGET`] sessions end per shard per sweep, so that a burst of
    /// expiries (a million sessions started in the same second) is spread over a few
    /// sweeps instead of holding each shard's lock for milliseconds.
    pub fn sweep(&self) -> SweepReport {
        let mut report = SweepReport::default();
        let mut ended = Vec::new();
        for shard in self.shards.iter() {
            // Real time, not tokio's: this measures how long lookups may wait.
            let started = Instant::now();
            let mut shard = lock(&shard.0);
            let spare = self.sweep_shard(&mut shard, &mut ended, &mut report);
            drop(shard);
            let held = started.elapsed();
            report.longest_hold = report.longest_hold.max(held);
            report.total_hold += held;
            report.conns_closed += ended.iter().filter(|(_, conn)| conn.is_some()).count();
            // Closing connections may do work, and freeing a large map may return pages
            // to the system: both after the lock.
            ended.clear();
            drop(spare);
        }
        report
    }

    fn sweep_shard(
        &self,
        shard: &mut Shard<S, C>,
        ended: &mut Vec<Swept<S, C>>,
        report: &mut SweepReport,
    ) -> Spare<S, C> {
        let now = self.clock.now_ms();
        let Shard { live, tombs, .. } = shard;
        let mut budget = SWEEP_BUDGET;
        live.retain(|key, session| {
            let Some(ending) = session.ending(now, self.idle_ms) else { return true };
            if budget == 0 {
                report.deferred += 1;
                return true;
            }
            budget -= 1;
            match ending {
                Ending::Idle => report.expired_idle += 1,
                Ending::Lifetime => report.expired_lifetime += 1,
                Ending::Invalidated => {}
            }
            self.bury(tombs, key, session, ending, now);
            ended.push((session.server.clone(), session.conn.take()));
            false
        });
        let before = tombs.len();
        tombs.retain(|_, deadline| deadline_ms(*deadline) > now);
        let dropped = before - tombs.len();
        self.release(dropped);
        report.tombstones_dropped += dropped;
        (shrink(live), shrink(tombs))
    }

    /// Live sessions, without taking any lock for long. Sessions past their end count
    /// until the sweep (or a lookup) ends them: at most a second late with the node's sweep.
    pub fn len_live(&self) -> usize {
        self.shards.iter().map(|shard| lock(&shard.0).live.len()).sum()
    }

    /// Tombstones: keys of sessions this node ended, remembered until their deadline.
    pub fn len_tombstones(&self) -> usize {
        self.shards.iter().map(|shard| lock(&shard.0).tombs.len()).sum()
    }

    /// Live sessions per server, servers in order of first appearance.
    pub fn per_server(&self) -> Vec<(S, usize)> {
        let mut counts: Vec<(S, usize)> = Vec::new();
        for shard in self.shards.iter() {
            let now = self.clock.now_ms();
            let shard = lock(&shard.0);
            for session in shard.live.values().filter(|s| s.ending(now, self.idle_ms).is_none()) {
                // Pools have few servers: a short list beats a map and needs no `Hash`.
                match counts.iter_mut().find(|(server, _)| *server == session.server) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((session.server.clone(), 1)),
                }
            }
        }
        counts
    }

    /// Up to `n` live sessions, starting from a random shard so repeated calls show
    /// different ones.
    pub fn sample(&self, n: usize) -> Vec<SessionInfo<S>> {
        let mut sample = Vec::with_capacity(n.min(1024));
        let first = fastrand::usize(..SHARDS);
        for index in (first..SHARDS).chain(0..first) {
            if sample.len() >= n {
                break;
            }
            let now = self.clock.now_ms();
            let shard = lock(&self.shards[index].0);
            let live = shard.live.iter().filter(|(_, s)| s.ending(now, self.idle_ms).is_none());
            let room = n - sample.len();
            sample.extend(live.take(room).map(|(key, session)| self.info(key, session, now)));
        }
        sample
    }

    fn info(&self, key: &SessionKeyBytes, session: &Live<S, C>, now: u64) -> SessionInfo<S> {
        let left = deadline_ms(session.deadline).saturating_sub(now);
        SessionInfo {
            key: *key,
            server: session.server.clone(),
            age: Duration::from_millis(self.lifetime_ms.saturating_sub(left)),
            clients: session.clients.attached(),
            idle_for: session.clients.idle_since_ms().map(|t| Duration::from_millis(now.saturating_sub(t))),
            has_conn: session.conn.is_some(),
        }
    }
}

/// A map keeps its peak capacity; once mostly empty (a burst of sessions ended), most of
/// it is given back. The new map has room for twice the entries, so the next sweeps do
/// not shrink it again. Returns the old allocation (emptied) to be freed after the lock.
fn shrink<K: Eq + Hash, V>(map: &mut HashMap<K, V>) -> Option<HashMap<K, V>> {
    if map.capacity() <= SHRINK_FLOOR || map.capacity() / 8 <= map.len() {
        return None;
    }
    let mut smaller = HashMap::with_capacity_and_hasher(map.len() * 2, map.hasher().clone());
    smaller.extend(map.drain());
    Some(std::mem::replace(map, smaller))
}
