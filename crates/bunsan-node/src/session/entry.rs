//! One session's compact record, and the millisecond clock its times are measured on.
//!
//! A table holds up to millions of these, so every field is sized on purpose: times are
//! ticks from the table's epoch instead of `Instant`s (16 bytes each), and the client
//! count and the idle clock share one word because a session uses only one of them at a
//! time (the clock runs only while no client connection is attached).

use std::time::Duration;

use tokio::time::Instant;

/// Milliseconds since the table's epoch, read from tokio's clock so that tests with a
/// paused clock drive it.
#[derive(Debug)]
pub(super) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(super) fn new() -> Self {
        Self { epoch: Instant::now() }
    }

    /// Now, in milliseconds since the epoch.
    pub(super) fn now_ms(&self) -> u64 {
        millis(Instant::now().saturating_duration_since(self.epoch))
    }
}

/// `d` in whole milliseconds, saturating (a `Duration` can exceed `u64` milliseconds).
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A lifetime deadline: whole seconds since the epoch. Seconds are as precise as the
/// input (identifiers carry their issue time in unix seconds) and fit 136 years in a u32.
pub(super) type Deadline = u32;

/// The first whole second at or after `ms` (a deadline never comes early).
pub(super) fn deadline_at(ms: u64) -> Deadline {
    Deadline::try_from(ms.div_ceil(1000)).unwrap_or(Deadline::MAX)
}

/// A deadline in milliseconds since the epoch.
pub(super) fn deadline_ms(deadline: Deadline) -> u64 {
    u64::from(deadline) * 1000
}

/// Set in [`Clients`] while at least one client connection is attached.
const ATTACHED: u64 = 1 << 63;

/// A session's client connections, packed in one word: either "n ≥ 1 attached" (the idle
/// clock is stopped) or "none since tick t" (the idle clock runs from t).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Clients(u64);

impl Clients {
    /// No client connection since `now_ms`.
    pub(super) fn idle_since(now_ms: u64) -> Self {
        Self(now_ms & !ATTACHED)
    }

    /// How many client connections are attached.
    pub(super) fn attached(self) -> u32 {
        if self.0 & ATTACHED == 0 {
            0
        } else {
            // The low 32 bits hold the count, so the cast keeps all of it.
            (self.0 & u64::from(u32::MAX)) as u32
        }
    }

    /// Since when no client connection has been attached (`None` while one is).
    pub(super) fn idle_since_ms(self) -> Option<u64> {
        (self.0 & ATTACHED == 0).then_some(self.0)
    }

    /// One more client connection: the idle clock stops.
    pub(super) fn attach(&mut self) {
        let count = self.attached().saturating_add(1);
        self.0 = ATTACHED | u64::from(count);
    }

    /// One client connection fewer; at none the idle clock starts at `now_ms`.
    pub(super) fn detach(&mut self, now_ms: u64) {
        match self.attached() {
            0 => {}
            1 => *self = Self::idle_since(now_ms),
            n => self.0 = ATTACHED | u64::from(n - 1),
        }
    }
}

/// Why a live session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// No client connection for `idle_timeout`.
    Idle,
    /// `max_lifetime` after it was issued.
    Lifetime,
    /// Ended on request (operator, server gone).
    Invalidated,
}

/// A live session.
#[derive(Debug)]
pub(super) struct Live<S, C> {
    /// The server the session is bound to.
    pub(super) server: S,
    /// The session's own idle upstream connection, if it has one parked.
    pub(super) conn: Option<C>,
    /// The end of the session's lifetime.
    pub(super) deadline: Deadline,
    /// Tells this session apart from an earlier or later one under the same key (a
    /// client address is reused as a key), so a stale detach cannot touch a successor.
    pub(super) incarnation: u32,
    /// Attached client connections, or since when there were none.
    pub(super) clients: Clients,
}

impl<S, C> Live<S, C> {
    /// A session with no client connection yet: its idle clock starts now.
    pub(super) fn new(server: S, deadline: Deadline, incarnation: u32, now_ms: u64) -> Self {
        Self { server, conn: None, deadline, incarnation, clients: Clients::idle_since(now_ms) }
    }

    /// Whether, and why, the session is over at `now_ms`.
    pub(super) fn ending(&self, now_ms: u64, idle_ms: u64) -> Option<Ending> {
        if now_ms >= deadline_ms(self.deadline) {
            return Some(Ending::Lifetime);
        }
        let idle_since = self.clients.idle_since_ms()?;
        (now_ms >= idle_since.saturating_add(idle_ms)).then_some(Ending::Idle)
    }

    /// The tombstone this session leaves at `now_ms`: its deadline, unless already past
    /// (an identifier past its lifetime is refused by whoever checks it, table or not).
    pub(super) fn tombstone(&self, now_ms: u64) -> Option<Deadline> {
        (deadline_ms(self.deadline) > now_ms).then_some(self.deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_pack_count_and_idle_clock() {
        let mut c = Clients::idle_since(1234);
        assert_eq!((c.attached(), c.idle_since_ms()), (0, Some(1234)));
        c.attach();
        c.attach();
        assert_eq!((c.attached(), c.idle_since_ms()), (2, None));
        c.detach(5000);
        assert_eq!((c.attached(), c.idle_since_ms()), (1, None));
        c.detach(6000);
        assert_eq!((c.attached(), c.idle_since_ms()), (0, Some(6000)));
        // A detach with none attached leaves the clock where it was.
        c.detach(7000);
        assert_eq!(c.idle_since_ms(), Some(6000));
    }

    #[test]
    fn deadlines_round_up_to_the_second() {
        assert_eq!(deadline_at(0), 0);
        assert_eq!(deadline_at(1), 1);
        assert_eq!(deadline_at(2000), 2);
        assert_eq!(deadline_at(u64::MAX), u32::MAX);
    }

    #[test]
    fn live_entries_stay_compact() {
        // Arc server + 16-byte connection without a niche: 8 + 24 + 4 + 4 + 8.
        assert_eq!(std::mem::size_of::<Live<std::sync::Arc<u64>, [u64; 2]>>(), 48);
    }
}
