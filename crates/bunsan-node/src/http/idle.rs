//! Idle client connections: a connection with no request in flight for the listener's
//! `idle_timeout` is closed (HTTP/2: GOAWAY; HTTP/1.1: closed between requests).
//!
//! HTTP/1.1 keep-alive waits are already bounded by `head_timeout` (hyper starts it as
//! soon as it waits for the next request head); this bounds the rest — an HTTP/2
//! connection that sends nothing, or only pings.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Requests in flight on one client connection, and since when it has had none.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicU32,
    /// [`crate::clock`] milliseconds of the last change.
    since_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self { in_flight: AtomicU32::new(0), since_ms: AtomicU64::new(crate::clock::now_ms()) }
    }
}

impl Activity {
    /// Marks a request in flight until the guard (kept with its response) is dropped.
    pub fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.in_flight.fetch_add(1, Relaxed);
        ActiveGuard(self.clone())
    }

    /// How long the connection has had nothing in flight; `None` while it has.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Relaxed) > 0 {
            return None;
        }
        let since = self.since_ms.load(Relaxed);
        Some(Duration::from_millis(crate::clock::now_ms().saturating_sub(since)))
    }
}

/// One request in flight; dropped with its response body.
#[derive(Debug)]
pub struct ActiveGuard(Arc<Activity>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.since_ms.store(crate::clock::now_ms(), Relaxed);
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Resolves once `activity` has been idle for `timeout`.
pub async fn idle_past(activity: &Activity, timeout: Duration) {
    let mut wait = timeout;
    loop {
        tokio::time::sleep(wait).await;
        wait = match activity.idle_for() {
            Some(idle) if idle >= timeout => return,
            Some(idle) => timeout - idle,
            None => timeout,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_means_nothing_in_flight_for_the_whole_timeout() {
        let activity = Arc::new(Activity::default());
        let timeout = Duration::from_secs(10);
        let guard = activity.begin();
        let watch = idle_past(&activity, timeout);
        tokio::pin!(watch);
        // In flight for a minute: never idle.
        assert!(tokio::time::timeout(Duration::from_secs(60), watch.as_mut()).await.is_err());
        drop(guard);
        let started = tokio::time::Instant::now();
        watch.await;
        let waited = started.elapsed();
        assert!(waited >= timeout && waited < timeout * 2, "{waited:?}");
    }
}
