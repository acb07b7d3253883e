//! The running agent: three activities around one [`Board`].
//!
//! - the observer samples every server's load each interval and publishes it;
//! - the node's health checker probes each server and publishes up/down transitions the
//!   moment `fall`/`rise` is reached;
//! - the reporter registers, then sends the board's rows whenever it changes — every
//!   interval because of the samples, and at once on a transition (seed 001 \[0045\]).
//!
//! The board sits in a `watch` channel, so changes that happen while a delivery is in
//! flight or backing off coalesce into the one current report sent next.

use std::sync::Arc;
use std::time::Duration;

use bunsan_config::HealthConfig;
use bunsan_node::health::{self, Target, Transition};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::board::Board;
use crate::config::{AgentConfig, ConfigError};
use crate::observe::Observer;
use crate::report::{Delivery, Reporter};
use crate::AgentError;

/// Runs until `shutdown`; see [`crate::run`].
pub(crate) async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    // `AgentConfig`'s fields are public; the rest of the agent relies on these two.
    if config.control.is_empty() || config.servers.is_empty() {
        let message = "at least one control URL and one server are needed".to_owned();
        return Err(ConfigError::Invalid { key: "control", message }.into());
    }
    let observer = Observer::start(&config)?;
    tracing::info!(
        agent = %config.name,
        method = config.method.as_str(),
        servers = config.servers.len(),
        interval = ?config.interval,
        "bunsan agent started"
    );
    let (board, updates) = watch::channel(Board::new(&config.servers));
    let board = Arc::new(board);
    let stop = shutdown.child_token();
    let probes = spawn_probes(&config, board.clone(), stop.clone());
    let observing = tokio::spawn(observe(observer, config.interval, board, stop.clone()));
    report(Reporter::new(&config), updates, &shutdown).await;
    stop.cancel();
    for task in [Some(observing), probes].into_iter().flatten() {
        if let Err(error) = task.await {
            tracing::error!(%error, "an agent task failed");
        }
    }
    tracing::info!("bunsan agent stopped");
    Ok(())
}

/// Probes every server with the node's health checker; `None` for probe `none`.
fn spawn_probes(
    config: &AgentConfig,
    board: Arc<watch::Sender<Board>>,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    let kind = config.probe.health_kind()?;
    let targets = config
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| Target::new(&s.pool, &s.server, i, s.addr, s.addr.to_string()))
        .collect();
    // A check may take up to one probe interval; the next starts an interval after it
    // ends, so checks of one server never overlap.
    let checks = HealthConfig {
        kind,
        interval: config.probe_interval,
        timeout: config.probe_interval,
        fall: config.fall,
        rise: config.rise,
    };
    let on_transition = move |target: &Target, transition: Transition, _why: &str| {
        board.send_modify(|b| b.set_up(target.index, transition == Transition::Up));
    };
    Some(health::spawn(targets, checks, on_transition, stop))
}

/// Samples every interval, starting at once, and publishes each sample. (Rates have no
/// value in the first sample — it is their baseline — so that one reports only what is
/// instantaneous: `sockets` connections, a scraped number.)
async fn observe(
    mut observer: Observer,
    interval: Duration,
    board: Arc<watch::Sender<Board>>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        let samples = tokio::select! {
            samples = observer.sample() => samples,
            () = stop.cancelled() => return,
        };
        board.send_modify(|b| {
            b.apply(&samples);
            for s in &b.servers {
                let (pool, server, load, new_per_sec) = (&s.pool, &s.server, s.load, s.new_per_sec);
                tracing::debug!(%pool, %server, ?load, ?new_per_sec, up = s.up, "sample");
            }
        });
    }
}

/// Registers, then delivers the current rows after every change of the board, until
/// `shutdown` — which also cuts short a request in flight to a hung control.
async fn report(mut reporter: Reporter, mut updates: watch::Receiver<Board>, shutdown: &CancellationToken) {
    tokio::select! {
        () = report_changes(&mut reporter, &mut updates, shutdown) => {}
        () = shutdown.cancelled() => {}
    }
}

async fn report_changes(
    reporter: &mut Reporter,
    updates: &mut watch::Receiver<Board>,
    shutdown: &CancellationToken,
) {
    if !reporter.register(shutdown).await {
        return;
    }
    loop {
        if updates.changed().await.is_err() {
            return;
        }
        // Each attempt reads the board afresh and marks it seen: whatever changed during
        // a backoff goes out in that attempt, not in a second report after it.
        let current = || updates.borrow_and_update().rows();
        if reporter.deliver(current, shutdown).await == Delivery::Stopped {
            return;
        }
    }
}
