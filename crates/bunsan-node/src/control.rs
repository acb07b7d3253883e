//! The node's side of seed 001: subscribe to the state manager once at start, receive
//! its load table (pushed on change, pushed periodically, or fetched when traffic needs
//! it), and feed it to the state board and the servers' reported loads.
//!
//! If the state manager goes quiet the node keeps the last table; after `stale_after` it
//! drops the reported loads and up/down reports and falls back to its own observation
//! (in-flight counts, health checks). Pins made at the control plane stay: they are an
//! operator's intent, not an observation. With several `url`s the node moves to the next
//! one when the current one fails, registering there afresh.

mod apply;
mod client;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bunsan_config::{ControlConfig, ControlDelivery};
use bunsan_proto::control::{Delivery, Event, Subscription};
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::state::StateBoard;
use apply::Applier;
use client::{ControlClient, ControlError};

/// The first pause after a failure; it doubles up to [`MAX_BACKOFF`], with full jitter.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Starts the subscription task; it runs until `shutdown`.
pub fn spawn(config: ControlConfig, board: Arc<StateBoard>, shutdown: CancellationToken) {
    let applier = Arc::new(Applier::new(board));
    tokio::spawn(watch_staleness(applier.clone(), config.stale_after, shutdown.clone()));
    tokio::spawn(subscribe_forever(config, applier, shutdown));
}

/// Tries the control URLs in turn, with backoff between failures.
async fn subscribe_forever(config: ControlConfig, applier: Arc<Applier>, shutdown: CancellationToken) {
    let mut failures: u32 = 0;
    for url in config.urls.iter().cycle() {
        let client = ControlClient::new(url, config.token.as_ref().map(|t| t.expose().to_owned()));
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = session(&config, &client, &applier) => outcome,
        };
        match outcome {
            Ok(()) => failures = 0,
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(control = %url, %error, "control plane unavailable; keeping the last table");
            }
        }
        let pause = backoff(failures);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// One session with one control instance: register, then receive tables until it ends.
async fn session(
    config: &ControlConfig,
    client: &ControlClient,
    applier: &Applier,
) -> Result<(), ControlError> {
    let id = client.subscribe(&subscription(config)).await?;
    tracing::info!(control = %client.url(), subscriber = %id, "subscribed to the control plane");
    applier.new_session();
    match config.delivery {
        ControlDelivery::Pull => pull(config, client, applier, &id).await,
        _ => push(config, client, applier, &id).await,
    }
}

/// Claims 2 and 4: the state manager pushes tables down one long-lived stream.
async fn push(
    config: &ControlConfig,
    client: &ControlClient,
    applier: &Applier,
    id: &str,
) -> Result<(), ControlError> {
    let mut stream = client.watch(id).await?;
    let mut assign_tick = tokio::time::interval(config.interval);
    loop {
        tokio::select! {
            event = stream.next_event() => match event? {
                Some(Event::Table(table)) => applier.apply(&table),
                Some(Event::Changes { version, from, servers, removed }) => {
                    if !applier.apply_changes(from, version, &servers, &removed) {
                        return Err(ControlError::OutOfStep { url: client.url().to_owned(), from });
                    }
                }
                Some(Event::Heartbeat { .. }) => applier.heard(),
                None => return Ok(()),
            },
            _ = assign_tick.tick(), if config.assign => assign(client, applier, id).await?,
        }
    }
}

/// Claim 3: the node asks for the table when its traffic needs it — at most once per
/// `interval`, and only if requests were forwarded since the last time.
async fn pull(
    config: &ControlConfig,
    client: &ControlClient,
    applier: &Applier,
    id: &str,
) -> Result<(), ControlError> {
    let mut seen_requests = None;
    loop {
        let requests = applier.requests_forwarded();
        if seen_requests != Some(requests) {
            applier.apply(&client.state().await?);
            seen_requests = Some(requests);
        } else {
            // Quiet: nothing needed the table, but the state manager is still there.
            applier.heard();
        }
        if config.assign {
            assign(client, applier, id).await?;
        }
        tokio::time::sleep(config.interval).await;
    }
}

/// [0051]'s second mode: ask which server of each pool this node should use.
async fn assign(client: &ControlClient, applier: &Applier, id: &str) -> Result<(), ControlError> {
    for pool in applier.pool_names() {
        let assignment = client.assign(&pool, id).await?;
        applier.assigned(&pool, assignment.server.as_deref());
    }
    Ok(())
}

/// Drops reported figures once the state manager has been silent for `stale_after`.
async fn watch_staleness(applier: Arc<Applier>, stale_after: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let silent = clock::now_ms().saturating_sub(applier.last_heard.load(Relaxed));
        if silent > stale_after.as_millis() as u64 {
            applier.go_stale(stale_after);
        }
    }
}

fn subscription(config: &ControlConfig) -> Subscription {
    let delivery = match config.delivery {
        ControlDelivery::Change => Delivery::Change,
        ControlDelivery::Periodic => Delivery::Periodic,
        ControlDelivery::Pull => Delivery::Pull,
    };
    Subscription {
        name: config.name.clone().unwrap_or_else(host_name),
        kind: "node".to_owned(),
        delivery,
        interval_ms: Some(config.interval.as_millis() as u64),
    }
}

fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim();
    if name.is_empty() {
        "node".to_owned()
    } else {
        name.to_owned()
    }
}

/// `MIN_BACKOFF × 2^failures`, capped, with full jitter; nothing after a clean end.
fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return MIN_BACKOFF;
    }
    let ceiling = MIN_BACKOFF.saturating_mul(1 << failures.min(10)).min(MAX_BACKOFF);
    ceiling.mul_f64(fastrand::f64())
}
