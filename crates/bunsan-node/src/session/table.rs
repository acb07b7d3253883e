//! The sharded session table: lookups, inserts, invalidation, client-connection
//! accounting and the session's own connection slot.
//!
//! Every operation locks one shard for a few hash-map operations. A session found past its
//! end is ended on the spot (lazily, so a lookup never trusts a session the sweep has not
//! reached yet), and whatever it held is dropped after the lock is released.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::entry::{deadline_at, deadline_ms, millis, Clock, Deadline, Ending, Live};
use super::{Lookup, Origin, SessionCounters, SessionKeyBytes, SessionSettings};

/// Shards per table: enough that request threads rarely meet on one lock, few enough
/// that a full pass (sweep, admin listing) stays cheap.
pub(super) const SHARDS: usize = 64;

/// A shard behind its lock, alone on its cache lines (two: adjacent-line prefetch), so
/// threads working on neighbouring shards do not slow each other down.
#[repr(align(128))]
pub(super) struct ShardLock<S, C>(pub(super) Mutex<Shard<S, C>>);

/// One shard: live sessions and tombstones. A key is in at most one of the two maps.
pub(super) struct Shard<S, C> {
    pub(super) live: HashMap<SessionKeyBytes, Live<S, C>>,
    /// Keys of sessions this node ended, until their lifetime deadline.
    pub(super) tombs: HashMap<SessionKeyBytes, Deadline>,
    next_incarnation: u32,
}

impl<S, C> Default for Shard<S, C> {
    fn default() -> Self {
        Self { live: HashMap::new(), tombs: HashMap::new(), next_incarnation: 0 }
    }
}

/// Proof that one client connection is counted on one session (see
/// [`SessionTable::attach`]); a successor session under the same key does not accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment {
    incarnation: u32,
}

/// Sessions of one pool: key → server, the session's own idle upstream connection, and
/// its idle and lifetime clocks (see the [module docs](super)).
///
/// `S` is the server handle (cloned out of the table; compared to tell servers apart:
/// an index in the pool, or an `Arc`) and `C` an idle upstream connection, closed by
/// dropping it.
pub struct SessionTable<S, C> {
    pub(super) shards: Box<[ShardLock<S, C>]>,
    shard_hasher: RandomState,
    pub(super) clock: Clock,
    pub(super) idle_ms: u64,
    pub(super) lifetime_ms: u64,
    max_entries: usize,
    /// Live sessions plus tombstones in all shards: what `max_entries` bounds.
    entries: AtomicUsize,
    pub(super) counters: SessionCounters,
}

/// What an insert found, for counting.
enum Inserted {
    New,
    AlreadyBound,
    BoundElsewhere,
    Tombstoned,
    Full,
}

impl<S, C> SessionTable<S, C> {
    /// An empty table; its clock starts now (tokio's clock: paused in tests).
    pub fn new(settings: SessionSettings) -> Self {
        let shards = (0..SHARDS).map(|_| ShardLock(Mutex::new(Shard::default()))).collect();
        Self {
            shards,
            shard_hasher: RandomState::new(),
            clock: Clock::new(),
            idle_ms: millis(settings.idle_timeout),
            lifetime_ms: millis(settings.max_lifetime),
            max_entries: settings.max_entries,
            entries: AtomicUsize::new(0),
            counters: SessionCounters::default(),
        }
    }

    /// The session under `key`: live (its server), expired here, or unknown. A session
    /// found past its end is ended now and reads `Expired`.
    pub fn lookup(&self, key: &SessionKeyBytes) -> Lookup<S>
    where
        S: Clone,
    {
        let now = self.clock.now_ms();
        let mut shard = self.lock(key);
        let (found, ended) = self.lookup_locked(&mut shard, key, now);
        drop(shard);
        drop(ended);
        found
    }

    fn lookup_locked(
        &self,
        shard: &mut Shard<S, C>,
        key: &SessionKeyBytes,
        now: u64,
    ) -> (Lookup<S>, Ended<S, C>)
    where
        S: Clone,
    {
        if let Some(session) = shard.live.get(key) {
            return match session.ending(now, self.idle_ms) {
                None => (Lookup::Live(session.server.clone()), None),
                Some(ending) => (Lookup::Expired, self.retire(shard, key, ending, now)),
            };
        }
        match shard.tombs.get(key) {
            None => (Lookup::Unknown, None),
            Some(&deadline) if deadline_ms(deadline) > now => (Lookup::Expired, None),
            Some(_) => {
                shard.tombs.remove(key);
                self.release(1);
                (Lookup::Unknown, None)
            }
        }
    }

    /// Starts session `key` on `server`, issued at `issued_unix` (unix seconds; another
    /// node's issue time for an adopted session) and ending `max_lifetime` after that.
    ///
    /// True when `key` is now a live session bound to `server`: inserted now, or already
    /// there with that server (a concurrent request inserted it first). False when it is
    /// bound to another server, when the table is full (counted in `refused_full`; serve
    /// without affinity), when the identifier's lifetime is already over, or when an
    /// adopted key is one this node ended itself (its tombstone holds).
    pub fn insert(
        &self,
        key: SessionKeyBytes,
        server: S,
        issued_unix: u64,
        now_unix: u64,
        origin: Origin,
    ) -> bool
    where
        S: PartialEq,
    {
        let now = self.clock.now_ms();
        let Some(deadline) = self.deadline_for(issued_unix, now_unix, now) else { return false };
        let mut shard = self.lock(&key);
        let ended = self.retire_if_over(&mut shard, &key, now);
        let inserted = self.insert_locked(&mut shard, key, server, deadline, now, origin);
        drop(shard);
        drop(ended);
        match inserted {
            Inserted::New => {
                let counter = match origin {
                    Origin::Created => &self.counters.created,
                    Origin::Adopted => &self.counters.adopted,
                };
                counter.fetch_add(1, Relaxed);
                true
            }
            Inserted::AlreadyBound => true,
            Inserted::Full => {
                self.counters.refused_full.fetch_add(1, Relaxed);
                false
            }
            Inserted::BoundElsewhere | Inserted::Tombstoned => false,
        }
    }

    /// The lifetime deadline of a session issued at `issued_unix`; `None` if already over.
    fn deadline_for(&self, issued_unix: u64, now_unix: u64, now: u64) -> Option<Deadline> {
        let end = issued_unix.saturating_mul(1000).saturating_add(self.lifetime_ms);
        // An issue time in the future (a node whose clock is ahead) never lengthens a session.
        let left = end.saturating_sub(now_unix.saturating_mul(1000)).min(self.lifetime_ms);
        (left > 0).then(|| deadline_at(now.saturating_add(left)))
    }

    fn insert_locked(
        &self,
        shard: &mut Shard<S, C>,
        key: SessionKeyBytes,
        server: S,
        deadline: Deadline,
        now: u64,
        origin: Origin,
    ) -> Inserted
    where
        S: PartialEq,
    {
        if let Some(session) = shard.live.get(&key) {
            return if session.server == server { Inserted::AlreadyBound } else { Inserted::BoundElsewhere };
        }
        match shard.tombs.get(&key).copied() {
            // Never resurrect a session this node ended; a new one (e.g. the same client
            // address coming back) may take the key.
            Some(tomb) if origin == Origin::Adopted && deadline_ms(tomb) > now => {
                return Inserted::Tombstoned
            }
            // The tombstone's room passes to the session.
            Some(_) => {
                shard.tombs.remove(&key);
            }
            None if !self.make_room(shard) => return Inserted::Full,
            None => {}
        }
        shard.next_incarnation = shard.next_incarnation.wrapping_add(1);
        shard.live.insert(key, Live::new(server, deadline, shard.next_incarnation, now));
        Inserted::New
    }

    /// Room for one more entry: a free one under `max_entries`, else a tombstone of this
    /// shard (the first thing to give way: it holds neither server nor connection).
    fn make_room(&self, shard: &mut Shard<S, C>) -> bool {
        let max = self.max_entries;
        if self.entries.fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1)).is_ok() {
            return true;
        }
        let Some(victim) = shard.tombs.keys().next().copied() else { return false };
        shard.tombs.remove(&victim);
        self.counters.tombstones_evicted.fetch_add(1, Relaxed);
        true
    }

    /// Ends session `key` now (an operator's request, its server gone): its connection is
    /// closed and its identifier reads `Expired` until its lifetime is over. False if there
    /// was no live session (one found past its end is ended as expired, not counted here).
    pub fn invalidate(&self, key: &SessionKeyBytes) -> bool {
        let now = self.clock.now_ms();
        let mut shard = self.lock(key);
        let Some(session) = shard.live.get(key) else { return false };
        let ending = session.ending(now, self.idle_ms).unwrap_or(Ending::Invalidated);
        let ended = self.retire(&mut shard, key, ending, now);
        drop(shard);
        drop(ended);
        ending == Ending::Invalidated
    }

    /// Moves live session `key` to `server` (failover: same session, new server). Its
    /// parked connection, to the old server, is closed. False if there is no live session.
    pub fn rebind(&self, key: &SessionKeyBytes, server: S) -> bool {
        let old = self.with_live(key, |session, _| {
            let old_server = std::mem::replace(&mut session.server, server);
            (old_server, session.conn.take())
        });
        old.is_some()
    }

    /// Counts one more client connection carrying live session `key` (its idle clock
    /// stops). Hand the returned attachment back to [`detach`](Self::detach) when that
    /// connection closes. `None` if there is no live session.
    pub fn attach(&self, key: &SessionKeyBytes) -> Option<Attachment> {
        self.attach_unless(key, None)
    }

    /// Attaches a client connection to session `key` unless `held` is already its
    /// attachment to the current session. Returns the attachment now held.
    pub(super) fn attach_unless(
        &self,
        key: &SessionKeyBytes,
        held: Option<Attachment>,
    ) -> Option<Attachment> {
        self.with_live(key, |session, _| {
            let current = Attachment { incarnation: session.incarnation };
            if held != Some(current) {
                session.clients.attach();
            }
            current
        })
    }

    /// A client connection attached with `attachment` closed; when it was the session's
    /// last, the idle clock starts. False (and nothing counted) if that session is over,
    /// even if a new one took its key since.
    pub fn detach(&self, key: &SessionKeyBytes, attachment: Attachment) -> bool {
        let detached = self.with_live(key, |session, now| {
            let current = session.incarnation == attachment.incarnation;
            if current {
                session.clients.detach(now);
            }
            current
        });
        detached == Some(true)
    }

    /// The session's parked upstream connection, if any (check it is still usable).
    pub fn take_conn(&self, key: &SessionKeyBytes) -> Option<C> {
        self.with_live(key, |session, _| session.conn.take()).flatten()
    }

    /// Parks `conn`, a connection to `server`, as session `key`'s own. Gives it back when
    /// the session is over, is bound to another server (it moved while the connection was
    /// in use), or already has one parked: put it in the server's shared pool instead.
    pub fn put_conn(&self, key: &SessionKeyBytes, server: &S, conn: C) -> Result<(), C>
    where
        S: PartialEq,
    {
        let mut conn = Some(conn);
        self.with_live(key, |session, _| {
            if session.conn.is_none() && session.server == *server {
                session.conn = conn.take();
            }
        });
        conn.map_or(Ok(()), Err)
    }

    /// The table's counters.
    pub fn counters(&self) -> &SessionCounters {
        &self.counters
    }

    /// Live sessions plus tombstones (what `max_entries` bounds).
    pub fn entries(&self) -> usize {
        self.entries.load(Relaxed)
    }

    /// Runs `f` on live session `key` (with the time now), unless there is none; one found
    /// past its end is ended instead. What `f` returns is dropped after the lock.
    fn with_live<R>(&self, key: &SessionKeyBytes, f: impl FnOnce(&mut Live<S, C>, u64) -> R) -> Option<R> {
        let now = self.clock.now_ms();
        let mut shard = self.lock(key);
        let session = shard.live.get_mut(key)?;
        let Some(ending) = session.ending(now, self.idle_ms) else { return Some(f(session, now)) };
        let ended = self.retire(&mut shard, key, ending, now);
        drop(shard);
        drop(ended);
        None
    }

    /// Ends session `key` if it is past its end.
    fn retire_if_over(&self, shard: &mut Shard<S, C>, key: &SessionKeyBytes, now: u64) -> Ended<S, C> {
        let ending = shard.live.get(key)?.ending(now, self.idle_ms)?;
        self.retire(shard, key, ending, now)
    }

    /// Removes live session `key` for `ending`; the caller drops it after the lock.
    fn retire(
        &self,
        shard: &mut Shard<S, C>,
        key: &SessionKeyBytes,
        ending: Ending,
        now: u64,
    ) -> Ended<S, C> {
        let session = shard.live.remove(key)?;
        self.bury(&mut shard.tombs, key, &session, ending, now);
        Some(session)
    }

    /// Counts an ended session and leaves its tombstone (or frees its room, when its
    /// lifetime is over and an identifier for it is refused anyway).
    pub(super) fn bury(
        &self,
        tombs: &mut HashMap<SessionKeyBytes, Deadline>,
        key: &SessionKeyBytes,
        session: &Live<S, C>,
        ending: Ending,
        now: u64,
    ) {
        let counter = match ending {
            Ending::Idle => &self.counters.expired_idle,
            Ending::Lifetime => &self.counters.expired_lifetime,
            Ending::Invalidated => &self.counters.invalidated,
        };
        counter.fetch_add(1, Relaxed);
        match session.tombstone(now) {
            Some(deadline) => {
                tombs.insert(*key, deadline);
            }
            None => self.release(1),
        }
    }

    /// `n` entries left the table.
    pub(super) fn release(&self, n: usize) {
        self.entries.fetch_sub(n, Relaxed);
    }

    fn lock(&self, key: &SessionKeyBytes) -> MutexGuard<'_, Shard<S, C>> {
        lock(&self.shards[self.shard_index(key)].0)
    }

    /// The shard of `key`. A keyed hash: client addresses are not random, and a client
    /// must not be able to pile its keys onto one shard.
    pub(super) fn shard_index(&self, key: &SessionKeyBytes) -> usize {
        // The remainder is below SHARDS, so the cast keeps all of it.
        (self.shard_hasher.hash_one(key) % SHARDS as u64) as usize
    }
}

/// A session removed under a lock, to be dropped (closing its connection) after it.
type Ended<S, C> = Option<Live<S, C>>;

/// Locks a shard. A panic elsewhere while it was held leaves it consistent (every update
/// is a few map operations), so a poisoned lock is simply taken over.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S, C> fmt::Debug for SessionTable<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTable")
            .field("idle_ms", &self.idle_ms)
            .field("lifetime_ms", &self.lifetime_ms)
            .field("max_entries", &self.max_entries)
            .field("entries", &self.entries.load(Relaxed))
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}
