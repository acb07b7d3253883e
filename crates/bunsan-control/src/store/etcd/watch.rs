//! Following the prefix: etcd's watch stream, turned into messages for the control
//! loop. On any failure (stream ended or refused, a malformed message, a compacted start
//! revision, the endpoint no longer answering) the task pauses with backoff, re-reads
//! everything, and watches again from the revision that read saw, so nothing is missed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::mpsc::{self, error::SendError};

use super::mirror::{decode_report, Key, Record};
use super::wire::{self, Event, EventKind, WatchMessage};
use super::{Remote, Shared};
use crate::store::StoreError;

/// The first pause after a failure; it doubles up to [`MAX_PAUSE`], with jitter.
const MIN_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// How often the endpoint a watch streams from is asked a cheap question. A watch on a
/// quiet prefix sends nothing, so without this a silently lost member would go unnoticed.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// The most bytes of one unfinished watch message kept waiting for its end.
const MAX_PENDING: usize = 64 * 1024 * 1024;

/// Watches from `from` until the store is dropped (which aborts this task).
pub(super) async fn follow(shared: Arc<Shared>, sender: mpsc::Sender<Remote>, mut from: i64) {
    let mut failures: u32 = 0;
    loop {
        let why = watch(&shared, &sender, from, &mut failures).await;
        if sender.is_closed() {
            return;
        }
        tracing::warn!(etcd = %shared.gateway.endpoints(), %why, "etcd watch lost; re-reading and watching again");
        from = loop {
            failures = failures.saturating_add(1);
            tokio::time::sleep(pause(failures)).await;
            match resync(&shared, &sender).await {
                Ok(revision) => break revision + 1,
                Err(error) => tracing::warn!(%error, "cannot re-read etcd"),
            }
        };
    }
}

/// One watch stream, delivered until it fails; returns why it ended.
async fn watch(shared: &Shared, sender: &mpsc::Sender<Remote>, from: i64, failures: &mut u32) -> String {
    let request = wire::watch_request(shared.prefix.as_bytes(), from);
    let mut stream = match shared.gateway.watch(&request).await {
        Ok(stream) => stream,
        Err(error) => return error.to_string(),
    };
    let endpoint = stream.endpoint.clone();
    let probe = wire::range_request(shared.prefix.as_bytes(), true);
    let mut check = tokio::time::interval_at(tokio::time::Instant::now() + CHECK_EVERY, CHECK_EVERY);
    let mut reader = Reader::default();
    loop {
        let value = tokio::select! {
            value = reader.next(&mut stream.body) => value,
            _ = check.tick() => match shared.gateway.call_at(stream.index, "kv/range", &probe).await {
                Ok(()) => continue,
                Err(why) => return format!("{endpoint} stopped answering: {why}"),
            },
        };
        match value.and_then(wire::watch_message) {
            Ok(WatchMessage::Created) => {
                *failures = 0;
                tracing::info!(etcd = %endpoint, revision = from, "watching etcd");
            }
            Ok(WatchMessage::Events(events)) => {
                if deliver(shared, sender, events).await.is_err() {
                    return "the store was closed".to_owned();
                }
            }
            Ok(WatchMessage::Canceled(why)) => return format!("{endpoint}: {why}"),
            Err(why) => return format!("{endpoint}: {why}"),
        }
    }
}

/// Applies one batch of events to the mirror and tells the control loop. The state goes
/// first, so a registration and a report made together arrive in that order.
async fn deliver(
    shared: &Shared,
    sender: &mpsc::Sender<Remote>,
    events: Vec<Event>,
) -> Result<(), SendError<Remote>> {
    let mut changed = false;
    let mut reports = Vec::new();
    for event in events {
        let Some(key) = shared.relative(&event.kv.key) else { continue };
        match key {
            // A report's deletion is its lease running out. Every instance ages reports
            // out after the same TTL on its own clock, so there is nothing to pass on;
            // this instance's own reports (its leases) it already has.
            Key::Report(..) if event.kind == EventKind::Delete || shared.is_own_lease(event.kv.lease) => {}
            Key::Report(pool, server) => match decode_report(&pool, &server, &event.kv.value) {
                Ok(report) => reports.push(report),
                Err(why) => {
                    tracing::warn!(key = %key_text(&event), %why, "ignoring an invalid report in etcd")
                }
            },
            key => changed |= apply(shared, key, &event),
        }
    }
    if changed {
        sender.send(Remote::Persisted).await?;
    }
    if !reports.is_empty() {
        sender.send(Remote::Reports(reports)).await?;
    }
    Ok(())
}

/// Records a durable key's event in the mirror; returns whether the state changed.
fn apply(shared: &Shared, key: Key, event: &Event) -> bool {
    let record = match event.kind {
        EventKind::Delete => None,
        EventKind::Put => match Record::decode(&key, &event.kv.value) {
            Ok(record) => Some(record),
            Err(why) => {
                // Keeping the last valid value is safer than guessing at this one.
                tracing::warn!(key = %key_text(event), %why, "ignoring an invalid value written to etcd");
                return false;
            }
        },
    };
    shared.mirror().set(key, event.kv.mod_revision, record)
}

/// Re-reads everything after a lost watch; returns the revision the read saw.
async fn resync(shared: &Shared, sender: &mpsc::Sender<Remote>) -> Result<i64, StoreError> {
    let read = shared.read_all().await?;
    for (key, why) in &read.invalid {
        tracing::warn!(%key, %why, "ignoring an invalid value in etcd");
    }
    shared.mirror().reset(read.revision, read.records);
    // Whatever changed while the watch was down, the control loop takes the whole state.
    // A send fails only once the store is gone, which also ends this task.
    let _ = sender.send(Remote::Persisted).await;
    if !read.reports.is_empty() {
        let _ = sender.send(Remote::Reports(read.reports)).await;
    }
    Ok(read.revision)
}

fn key_text(event: &Event) -> String {
    String::from_utf8_lossy(&event.kv.key).into_owned()
}

/// `MIN_PAUSE × 2^(failures-1)`, capped at [`MAX_PAUSE`], less up to half at random so
/// instances that lost etcd together do not come back in step.
fn pause(failures: u32) -> Duration {
    let ceiling = MIN_PAUSE.saturating_mul(1 << failures.saturating_sub(1).min(10)).min(MAX_PAUSE);
    ceiling.mul_f64(1.0 - fastrand::f64() / 2.0)
}

/// Splits a watch body into its JSON messages, however the bytes are framed.
#[derive(Debug, Default)]
struct Reader {
    buffer: Vec<u8>,
    ready: VecDeque<Value>,
}

impl Reader {
    /// The next message. Cancel-safe: bytes read are kept in `self` between calls.
    async fn next(&mut self, body: &mut Incoming) -> Result<Value, String> {
        loop {
            if let Some(value) = self.ready.pop_front() {
                return Ok(value);
            }
            let frame = body.frame().await.ok_or("the stream ended")?.map_err(|e| e.to_string())?;
            if let Ok(data) = frame.into_data() {
                self.buffer.extend_from_slice(&data);
                self.ready.extend(take_values(&mut self.buffer)?);
            }
        }
    }
}

/// Takes every complete JSON value off the front of `buffer`, leaving a partial one.
fn take_values(buffer: &mut Vec<u8>) -> Result<Vec<Value>, String> {
    let mut values = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(buffer).into_iter::<Value>();
    loop {
        match stream.next() {
            Some(Ok(value)) => values.push(value),
            Some(Err(error)) if error.is_eof() => break,
            Some(Err(error)) => return Err(format!("malformed watch stream: {error}")),
            None => break,
        }
    }
    let used = stream.byte_offset();
    buffer.drain(..used);
    if buffer.len() > MAX_PENDING {
        return Err(format!("a watch message longer than {MAX_PENDING} bytes"));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_split_however_the_bytes_arrive() {
        let stream = b"{\"result\":{\"created\":true}}\n{\"result\":{\"events\":[]}}\n{\"res";
        let mut buffer = Vec::new();
        let mut seen = Vec::new();
        for chunk in stream.chunks(7) {
            buffer.extend_from_slice(chunk);
            seen.extend(take_values(&mut buffer).unwrap());
        }
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0]["result"]["created"], true);
        assert_eq!(buffer, b"{\"res");
        buffer.extend_from_slice(b"ult\":{}}\n");
        assert_eq!(take_values(&mut buffer).unwrap().len(), 1);
    }

    #[test]
    fn garbage_in_the_stream_is_an_error() {
        let mut buffer = b"{\"result\":{}}\n<html>".to_vec();
        assert!(take_values(&mut buffer).unwrap_err().contains("malformed"));
    }

    #[test]
    fn pauses_grow_and_are_capped() {
        for failures in 1..40 {
            let pause = pause(failures);
            assert!(pause <= MAX_PAUSE && pause >= MIN_PAUSE / 2, "{failures}: {pause:?}");
        }
        assert!(pause(1) <= MIN_PAUSE);
    }
}
