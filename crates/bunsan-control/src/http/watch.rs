//! `GET /v1/watch`: the push side of seed 001 (claims 2 and 4) as a stream `curl` can
//! follow: JSON lines, or server-sent events when the client asks for them.
//!
//! Each stream has its own task writing into a one-slot channel. A change-mode stream
//! reads the newest published table whenever it can send again, so a slow subscriber
//! skips versions instead of building a backlog.

use std::convert::Infallible;
use std::pin::Pin as StdPin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bunsan_proto::control::{Delivery, Event};
use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderValue, Request, StatusCode};
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::reply::{query, with_type, Reply};
use super::Context;
use crate::error::RequestError;
use crate::manager::{event_line, Manager};
use crate::validate::DEFAULT_INTERVAL_MS;

/// How a stream frames each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `application/x-ndjson`: one JSON document per line.
    Lines,
    /// `text/event-stream`: `data: <json>` and a blank line.
    Sse,
}

impl Format {
    fn of(req: &Request<Incoming>) -> Self {
        let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        if accept.contains("text/event-stream") {
            Self::Sse
        } else {
            Self::Lines
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Lines => "application/x-ndjson",
            Self::Sse => "text/event-stream",
        }
    }

    fn frame(self, line: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(line.len() + 8);
        if self == Self::Sse {
            out.put_slice(b"data: ");
        }
        out.put_slice(line);
        out.put_slice(if self == Self::Sse { b"\n\n" } else { b"\n" });
        out.freeze()
    }
}

/// What one stream sends.
#[derive(Debug)]
struct Plan {
    /// The subscriber, if the stream named one (else an anonymous change-mode watcher).
    id: Option<String>,
    delivery: Delivery,
    period: Duration,
    heartbeat: Duration,
}

/// Starts a stream: checks the subscriber, then hands the body to a task.
pub fn start(ctx: &Context, req: &Request<Incoming>) -> Result<Reply, RequestError> {
    let (id, delivery, period) = match query(req, "subscriber") {
        Some(id) => {
            let subscription = ctx.manager.subscription(id)?;
            let period = subscription.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS);
            (Some(id.to_owned()), subscription.delivery, Duration::from_millis(period))
        }
        None => (None, Delivery::Change, Duration::from_millis(DEFAULT_INTERVAL_MS)),
    };
    let format = Format::of(req);
    let (tx, rx) = mpsc::channel(1);
    let plan = Plan { id, delivery, period, heartbeat: ctx.heartbeat };
    let out = Out { tx, format, shutdown: ctx.shutdown.clone(), last: Instant::now() };
    ctx.tracker.spawn(pump(ctx.manager.clone(), plan, out));
    let mut reply = with_type(StatusCode::OK, ChannelBody { rx }.boxed(), format.content_type());
    reply.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(reply)
}

/// The writing end of a stream.
struct Out {
    tx: mpsc::Sender<Bytes>,
    format: Format,
    shutdown: CancellationToken,
    /// When something was last sent, for the heartbeat.
    last: Instant,
}

impl Out {
    /// Sends one event line; `false` once the client or the server is gone.
    async fn send(&mut self, line: &[u8]) -> bool {
        let frame = self.format.frame(line);
        let sent = tokio::select! {
            () = self.shutdown.cancelled() => false,
            sent = self.tx.send(frame) => sent.is_ok(),
        };
        self.last = Instant::now();
        sent
    }
}

/// Feeds one stream until the client leaves or the server stops.
async fn pump(manager: Arc<Manager>, plan: Plan, mut out: Out) {
    let _connected = manager.connect(plan.id.as_deref());
    let mut changes = manager.watch();
    let mut ticks = (plan.delivery == Delivery::Periodic).then(|| every(plan.period));
    // Marked seen before rendering, so a change racing the first table is sent after it
    // rather than lost; the first table is rendered fresh so its ages are current.
    changes.borrow_and_update();
    let mut sent = 0;
    if plan.delivery != Delivery::Pull {
        let table = manager.table();
        sent = table.version;
        if !out.send(&event_line(&Event::Table(table))).await {
            return;
        }
    }
    loop {
        let line = tokio::select! {
            () = out.shutdown.cancelled() => return,
            () = out.tx.closed() => return,
            changed = changes.changed(), if plan.delivery == Delivery::Change => {
                if changed.is_err() {
                    return;
                }
                let published = changes.borrow_and_update().clone();
                // The fresh first table may already be this version: send each one once.
                if published.version <= sent {
                    continue;
                }
                // Only the change when this watcher holds exactly the version it applies
                // to; a watcher that skipped versions (it was slow) gets the whole table.
                let line = match &published.changes {
                    Some((from, changes)) if *from == sent => changes.clone(),
                    _ => published.line.clone(),
                };
                sent = published.version;
                line
            }
            () = tick(&mut ticks) => event_line(&Event::Table(manager.table())),
            () = tokio::time::sleep_until(out.last + plan.heartbeat) => {
                event_line(&Event::Heartbeat { version: manager.version() })
            }
        };
        if !out.send(&line).await {
            return;
        }
    }
}

/// An interval whose first tick is one period away (the first table was sent already).
fn every(period: Duration) -> Interval {
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    // A subscriber that fell behind gets the next table on time, not a burst.
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// The next periodic tick, or never for a stream without a period.
async fn tick(ticks: &mut Option<Interval>) {
    match ticks {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The response body: whatever the stream's task sends, until it drops its end.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: StdPin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|line| line.map(|bytes| Ok(Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::Format;

    #[test]
    fn frames() {
        assert_eq!(&Format::Lines.frame(b"{}")[..], b"{}\n");
        assert_eq!(&Format::Sse.frame(b"{}")[..], b"data: {}\n\n");
    }
}
