//! The retry budget of a pool: over any ten seconds, retries may add at most
//! `budget_percent` of the pool's requests plus `min_retries_per_second` per second, so a
//! failing pool is not hit with multiplied load — while a server dying under heavy
//! traffic can still have all its in-flight requests retried, since the allowance grows
//! with the traffic.
//!
//! Counts are kept in ten one-second slots of a ring; a slot is reset when a new second
//! reaches it. Deposits are one atomic add; the sum over the window is computed only when
//! a retry is asked for, which happens on the failure path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bunsan_config::RetryConfig;

use crate::clock;

/// Seconds the budget looks back.
const WINDOW: u64 = 10;

#[derive(Debug, Default)]
struct Slot {
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// A pool's retry budget (shared by every snapshot of the pool).
#[derive(Debug)]
pub struct RetryBudget {
    percent: u64,
    floor_per_second: u64,
    slots: [Slot; WINDOW as usize],
    /// Retries refused because the budget was spent.
    pub exhausted: AtomicU64,
}

impl RetryBudget {
    /// A budget for `config`.
    pub fn new(config: &RetryConfig) -> Self {
        Self {
            percent: u64::from(config.budget_percent),
            floor_per_second: u64::from(config.min_retries_per_second),
            slots: Default::default(),
            exhausted: AtomicU64::new(0),
        }
    }

    /// Counts one request.
    pub fn deposit(&self) {
        self.current().requests.fetch_add(1, Relaxed);
    }

    /// Takes one retry from the budget; `false` (and counted) when it is spent.
    pub fn withdraw(&self) -> bool {
        let now = clock::now_ms() / 1000;
        let (requests, retries) = self.window(now);
        let allowed = requests * self.percent / 100 + self.floor_per_second * WINDOW;
        if retries >= allowed {
            self.exhausted.fetch_add(1, Relaxed);
            return false;
        }
        self.slot(now).retries.fetch_add(1, Relaxed);
        true
    }

    fn current(&self) -> &Slot {
        self.slot(clock::now_ms() / 1000)
    }

    /// The slot of second `now`, reset first if it still holds an older second.
    fn slot(&self, now: u64) -> &Slot {
        let slot = &self.slots[(now % WINDOW) as usize];
        let seen = slot.second.load(Relaxed);
        // A racing increment between the swap and the resets may be lost; a budget
        // tolerates that.
        if seen != now && slot.second.compare_exchange(seen, now, Relaxed, Relaxed).is_ok() {
            slot.requests.store(0, Relaxed);
            slot.retries.store(0, Relaxed);
        }
        slot
    }

    /// Requests and retries in the window ending at second `now`.
    fn window(&self, now: u64) -> (u64, u64) {
        let recent = |s: &&Slot| now.saturating_sub(s.second.load(Relaxed)) < WINDOW;
        self.slots.iter().filter(recent).fold((0, 0), |(requests, retries), s| {
            (requests + s.requests.load(Relaxed), retries + s.retries.load(Relaxed))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn budget(percent: u32, floor: u32) -> RetryBudget {
        RetryBudget::new(&RetryConfig {
            budget_percent: percent,
            min_retries_per_second: floor,
            ..RetryConfig::default()
        })
    }

    fn drain(b: &RetryBudget) -> usize {
        (0..1_000_000).take_while(|_| b.withdraw()).count()
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_share_of_recent_requests_plus_a_floor() {
        let b = budget(20, 0);
        assert_eq!(drain(&b), 0, "no requests, no floor: no retries");
        for _ in 0..10_000 {
            b.deposit();
        }
        assert_eq!(drain(&b), 2000, "20% of 10,000 requests, however many fail at once");
        assert_eq!(b.exhausted.load(Relaxed), 2, "one refusal per drain");

        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(drain(&b), 0, "requests older than the window no longer count");

        let b = budget(0, 5);
        assert_eq!(drain(&b), 50, "5 per second over a 10 s window");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(drain(&b), 0, "the floor's retries of the last 10 s are spent");
        tokio::time::advance(Duration::from_secs(8)).await;
        assert_eq!(drain(&b), 50, "and come back as they leave the window");
    }
}
