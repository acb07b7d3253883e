//! Waiting for a condition without fixed sleeps.

use std::time::{Duration, Instant};

/// Polls `check` every 10 ms until it is true or `timeout` passes; returns whether it
/// became true.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
