//! A node-wide monotonic clock in milliseconds, cheap to store in atomics.
//!
//! It reads tokio's clock, so tests that pause time control it too.

use std::sync::OnceLock;

use tokio::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the first call in this process (never 0, so 0 can mean "unset").
pub fn now_ms() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_millis() as u64 + 1
}
