//! The checking loop: one task per server, each on its own jittered schedule, feeding
//! check results through [`Verdicts`] and reporting only transitions.
//!
//! Servers are checked independently, so a server that hangs until its timeout delays
//! nobody else. Waits vary by ±[`JITTER`] and each server's first check comes after a
//! random fraction of one interval, so the checks of many servers (and of many nodes
//! started together) spread out instead of arriving in bursts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bunsan_config::HealthConfig;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::probe::{probe, ProbeFailure};
use super::verdicts::{Transition, Verdicts};

/// Each wait between two checks of a server is the interval times a factor drawn
/// uniformly from `1 ± JITTER`.
pub const JITTER: f64 = 0.1;

/// The shortest interval used: a zero interval (which config validation refuses) must
/// not turn a checker into a busy loop.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// One server to check, with the counters its checks update.
#[derive(Debug, Clone)]
pub struct Target {
    /// The pool's name.
    pub pool: String,
    /// The server's name within its pool.
    pub server: String,
    /// The server's index within its pool (as in the topology).
    pub index: usize,
    /// Where checks connect.
    pub addr: SocketAddr,
    /// The `Host` of HTTP checks when the config sets none: the server's `addr` as written.
    pub default_host: String,
    /// Counters for metrics; clone the `Arc` before handing the target to [`spawn`].
    pub counters: Arc<HealthCounters>,
}

impl Target {
    /// A target with fresh counters.
    pub fn new(
        pool: impl Into<String>,
        server: impl Into<String>,
        index: usize,
        addr: SocketAddr,
        default_host: impl Into<String>,
    ) -> Self {
        Self {
            pool: pool.into(),
            server: server.into(),
            index,
            addr,
            default_host: default_host.into(),
            counters: Arc::default(),
        }
    }
}

/// What one server's checks have done so far; monotonic counters for metrics.
#[derive(Debug, Default)]
pub struct HealthCounters {
    checks: AtomicU64,
    failures: AtomicU64,
    transitions: AtomicU64,
}

impl HealthCounters {
    /// Checks completed (passed or failed).
    pub fn checks(&self) -> u64 {
        self.checks.load(Relaxed)
    }

    /// Checks that failed.
    pub fn failures(&self) -> u64 {
        self.failures.load(Relaxed)
    }

    /// Up and down transitions reported.
    pub fn transitions(&self) -> u64 {
        self.transitions.load(Relaxed)
    }
}

/// Starts checking every target, one task each, until `shutdown` is cancelled.
///
/// `report` is called (synchronously, on the checking task) for every transition, with a
/// short reason for humans; it should return quickly. The returned handle finishes once
/// every checking task has stopped; aborting it stops them all as well. Must be called
/// within a Tokio runtime.
pub fn spawn<R>(
    targets: Vec<Target>,
    config: HealthConfig,
    report: R,
    shutdown: CancellationToken,
) -> JoinHandle<()>
where
    R: Fn(&Target, Transition, &str) + Send + Sync + 'static,
{
    let config = Arc::new(config);
    let report = Arc::new(report);
    let mut tasks = JoinSet::new();
    for target in targets {
        tasks.spawn(watch(target, config.clone(), report.clone(), shutdown.clone()));
    }
    // The JoinSet lives in this task, so aborting the handle drops it and aborts them all.
    tokio::spawn(async move {
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                tracing::error!(error = %e, "health checking task failed");
            }
        }
    })
}

/// Checks one server until `shutdown`; whatever is in flight (a wait or a check) is
/// dropped at once when it comes.
async fn watch<R>(target: Target, config: Arc<HealthConfig>, report: Arc<R>, shutdown: CancellationToken)
where
    R: Fn(&Target, Transition, &str),
{
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = check_forever(&target, &config, &*report) => {}
    }
}

/// The schedule: a random fraction of one interval, then check, wait about one interval
/// (measured from the end of the check, so checks of one server never overlap), repeat.
async fn check_forever<R>(target: &Target, config: &HealthConfig, report: &R)
where
    R: Fn(&Target, Transition, &str),
{
    let interval = config.interval.max(MIN_INTERVAL);
    let mut verdicts = Verdicts::new(config.fall, config.rise);
    let mut wait = first_delay(interval, fastrand::f64());
    loop {
        tokio::time::sleep(wait).await;
        let outcome = probe(&config.kind, target.addr, &target.default_host, config.timeout).await;
        settle(target, &mut verdicts, outcome, report);
        wait = jittered(interval, fastrand::f64());
    }
}

/// Counts one check, and logs and reports the transition it causes, if any.
fn settle<R>(target: &Target, verdicts: &mut Verdicts, outcome: Result<(), ProbeFailure>, report: &R)
where
    R: Fn(&Target, Transition, &str),
{
    target.counters.checks.fetch_add(1, Relaxed);
    if let Err(failure) = &outcome {
        target.counters.failures.fetch_add(1, Relaxed);
        // Every failure at debug only: a down server fails every check, transitions say enough.
        tracing::debug!(pool = %target.pool, server = %target.server, %failure, "health check failed");
    }
    let Some(transition) = verdicts.record(outcome.is_ok()) else { return };
    let why = match &outcome {
        Err(failure) => format!("{} consecutive checks failed, last: {failure}", verdicts.fall()),
        Ok(()) => format!("{} consecutive checks passed", verdicts.rise()),
    };
    target.counters.transitions.fetch_add(1, Relaxed);
    log_transition(target, transition, &why);
    report(target, transition, &why);
}

fn log_transition(target: &Target, transition: Transition, why: &str) {
    let (pool, server, addr) = (&target.pool, &target.server, target.addr);
    match transition {
        Transition::Down => tracing::warn!(%pool, %server, %addr, why, "health check: server down"),
        Transition::Up => tracing::info!(%pool, %server, %addr, why, "health check: server up"),
    }
}

/// The first wait of a server: `unit` (in `[0, 1)`) of one interval.
fn first_delay(interval: Duration, unit: f64) -> Duration {
    scale(interval, unit)
}

/// A wait between checks: `interval` scaled into `[1 - JITTER, 1 + JITTER)` by `unit`
/// (in `[0, 1)`).
fn jittered(interval: Duration, unit: f64) -> Duration {
    scale(interval, 1.0 - JITTER + 2.0 * JITTER * unit)
}

/// `interval * factor`, keeping `interval` where the product is not a valid duration
/// (`Duration::mul_f64` would panic on overflow).
fn scale(interval: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(interval.as_secs_f64() * factor).unwrap_or(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn jittered_waits_stay_within_ten_percent() {
        assert_eq!(jittered(SECOND, 0.0), Duration::from_millis(900));
        assert_eq!(jittered(SECOND, 0.5), SECOND);
        assert!(jittered(SECOND, 0.999_999) < Duration::from_millis(1100));
        for _ in 0..1000 {
            let wait = jittered(SECOND, fastrand::f64());
            assert!((Duration::from_millis(900)..Duration::from_millis(1100)).contains(&wait), "{wait:?}");
        }
    }

    #[test]
    fn first_delays_spread_over_one_interval() {
        assert_eq!(first_delay(SECOND, 0.0), Duration::ZERO);
        assert_eq!(first_delay(SECOND, 0.25), Duration::from_millis(250));
        let delays: Vec<Duration> = (0..1000).map(|_| first_delay(SECOND, fastrand::f64())).collect();
        assert!(delays.iter().all(|d| *d < SECOND));
        assert!(delays.iter().any(|d| *d < Duration::from_millis(500)));
        assert!(delays.iter().any(|d| *d >= Duration::from_millis(500)));
    }

    #[test]
    fn huge_intervals_do_not_panic() {
        assert_eq!(jittered(Duration::MAX, 0.99), Duration::MAX);
        assert!(first_delay(Duration::MAX, 0.5) < Duration::MAX);
    }
}
