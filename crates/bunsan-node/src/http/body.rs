//! Body types on both sides of the proxy: what goes to a server ([`ForwardBody`]) and
//! what goes back to the client ([`ResponseBody`]). Both stream frame by frame; neither
//! ever holds a whole body.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::access_log::{AccessLog, Entry};
use crate::affinity::Table;
use crate::server::InFlight;
use crate::upstream::Sender;

use super::local::LocalError;
use super::private::PrivateConn;

/// A client's request body on its way to a server: either buffered whole (so it can be
/// replayed) or streamed from the client, after whatever part was read while trying to
/// buffer it. A streamed body tells the proxy when it has been sent completely, because
/// the response timeout starts only then (a slow upload is not a slow server).
#[derive(Debug)]
pub struct ForwardBody {
    source: Source,
    sent: Option<oneshot::Sender<()>>,
    /// What went wrong on the client's side of a streamed body, if anything.
    client: Option<Arc<ClientBody>>,
    /// Bytes a streamed body may still carry (`max_body`).
    allowance: u64,
}

/// The client's side of a streamed request body: it failed (malformed chunking, a client
/// that went away) or outgrew the pool's `max_body`. Either way the exchange failed
/// through no fault of the server.
#[derive(Debug, Default)]
pub struct ClientBody {
    broke: AtomicBool,
    too_large: AtomicBool,
}

impl ClientBody {
    /// What to answer, if the client's body is why the exchange failed.
    pub fn fault(&self) -> Option<LocalError> {
        if self.too_large.load(Relaxed) {
            Some(LocalError::BodyTooLarge)
        } else if self.broke.load(Relaxed) {
            Some(LocalError::BadRequest("the request body was malformed or cut short"))
        } else {
            None
        }
    }
}

/// Why a forwarded body ended in an error.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    /// Reading the client's body failed.
    #[error("reading the request body failed: {0}")]
    Client(#[from] hyper::Error),
    /// The body grew past the pool's `max_body`.
    #[error("the request body is larger than the pool's max_body")]
    TooLarge,
}

#[derive(Debug)]
enum Source {
    Buffered { data: Option<Bytes>, trailers: Option<HeaderMap> },
    Streaming { prefix: Option<Bytes>, rest: Incoming },
}

impl ForwardBody {
    /// A body held in memory.
    pub(crate) fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        let data = (!data.is_empty()).then_some(data);
        Self { source: Source::Buffered { data, trailers }, sent: None, client: None, allowance: u64::MAX }
    }

    /// A body streamed from the client after `prefix`, of at most `limit` bytes; the
    /// receiver fires once it has been sent (or dropped), and [`ClientBody`] says if the
    /// client's side of it failed.
    pub(crate) fn streaming(
        prefix: Option<Bytes>,
        rest: Incoming,
        limit: Option<u64>,
    ) -> (Self, Option<oneshot::Receiver<()>>, Arc<ClientBody>) {
        let prefix = prefix.filter(|p| !p.is_empty());
        let client = Arc::new(ClientBody::default());
        let allowance = limit.unwrap_or(u64::MAX);
        let empty = prefix.is_none() && rest.is_end_stream();
        let source = Source::Streaming { prefix, rest };
        let body = |sent| Self { source, sent, client: Some(client.clone()), allowance };
        if empty {
            return (body(None), None, client);
        }
        let (tx, rx) = oneshot::channel();
        (body(Some(tx)), Some(rx), client)
    }

    /// Counts a data frame against the allowance; `false` once the body is too large.
    fn allow(&mut self, frame: &Frame<Bytes>) -> bool {
        let len = frame.data_ref().map_or(0, |d| d.len() as u64);
        match self.allowance.checked_sub(len) {
            Some(left) => {
                self.allowance = left;
                true
            }
            None => false,
        }
    }
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut polled: Poll<Option<Result<Frame<Bytes>, ForwardError>>> = match &mut self.source {
            Source::Buffered { data, trailers } => {
                let frame = data.take().map(Frame::data).or_else(|| trailers.take().map(Frame::trailers));
                Poll::Ready(frame.map(Ok))
            }
            Source::Streaming { prefix, rest } => match prefix.take() {
                Some(prefix) => Poll::Ready(Some(Ok(Frame::data(prefix)))),
                None => Pin::new(rest).poll_frame(cx).map_err(ForwardError::from),
            },
        };
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if !self.allow(frame) {
                polled = Poll::Ready(Some(Err(ForwardError::TooLarge)));
            }
        }
        if let (Poll::Ready(Some(Err(error))), Some(client)) = (&polled, &self.client) {
            let flag =
                if matches!(error, ForwardError::TooLarge) { &client.too_large } else { &client.broke };
            flag.store(true, Relaxed);
        }
        if matches!(polled, Poll::Ready(None)) {
            if let Some(sent) = self.sent.take() {
                let _receiver_gone_is_fine = sent.send(());
            }
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            Source::Streaming { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Source::Streaming { prefix, rest } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
        }
    }
}

/// What the client receives: a server's streamed body, or a short local one
/// (error pages, admin answers).
#[derive(Debug)]
pub struct ResponseBody {
    kind: Kind,
    log: Option<Box<LogTail>>,
    /// Counts the request as in flight on its client connection until the body is gone.
    _active: Option<super::idle::ActiveGuard>,
}

/// An access log entry waiting for the end of the response it describes.
#[derive(Debug)]
pub(crate) struct LogTail {
    /// The entry, complete but for bytes, total time and delivery.
    pub entry: Entry,
    /// When the request arrived.
    pub started: std::time::Instant,
    /// Where the entry goes.
    pub log: Arc<AccessLog>,
}

#[derive(Debug)]
enum Kind {
    Local(Option<Bytes>),
    Upstream(UpstreamBody),
}

/// Where a connection goes after a clean exchange.
#[derive(Debug)]
pub enum ConnHome {
    /// The server's shared idle pool.
    Pool,
    /// The slot of session `key` bound to server `index` (seed 000: the session keeps
    /// its established connection); the shared pool if the slot is taken, or the session
    /// has ended or moved to another server meanwhile.
    Session { table: Arc<Table>, key: [u8; 16], server: u32 },
    /// The client connection's private slot (pools that send a PROXY header, whose
    /// connections carry one client's address and so are never shared).
    Private(Arc<PrivateConn>),
}

/// A server's response body plus what must happen when it ends: the connection goes
/// home after a clean end, and the in-flight count drops either way.
#[derive(Debug)]
struct UpstreamBody {
    inner: Incoming,
    conn: Option<(Sender, Arc<crate::server::Server>)>,
    home: ConnHome,
    /// Set once the body yielded its end: hyper's `is_end_stream` stays false after a
    /// chunked body ends, so it alone cannot tell.
    finished: bool,
    _in_flight: InFlight,
}

impl ResponseBody {
    /// A complete body generated by the node.
    pub fn local(bytes: impl Into<Bytes>) -> Self {
        Self { kind: Kind::Local(Some(bytes.into())), log: None, _active: None }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self { kind: Kind::Local(None), log: None, _active: None }
    }

    /// The same body, keeping its request in flight on the client connection until it
    /// is dropped.
    pub(crate) fn while_active(mut self, active: super::idle::ActiveGuard) -> Self {
        self._active = Some(active);
        self
    }

    /// The same body, writing `tail` to the access log when it ends or is dropped.
    pub(crate) fn logged(mut self, tail: Option<Box<LogTail>>) -> Self {
        self.log = tail;
        self
    }

    /// A server's body; `sender` goes `home` after a clean end.
    pub(crate) fn upstream(inner: Incoming, sender: Sender, in_flight: InFlight, home: ConnHome) -> Self {
        let server = in_flight.server().clone();
        let conn = Some((sender, server));
        let body = UpstreamBody { inner, conn, home, finished: false, _in_flight: in_flight };
        Self { kind: Kind::Upstream(body), log: None, _active: None }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.kind {
            Kind::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(body) => {
                let polled = Pin::new(&mut body.inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => body.finished = true,
                    // The exchange broke: the connection's state is unknown, never reuse it.
                    Poll::Ready(Some(Err(_))) => body.conn = None,
                    _ => {}
                }
                polled
            }
        };
        if let (Some(tail), Poll::Ready(Some(Ok(frame)))) = (&mut this.log, &polled) {
            tail.entry.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Local(bytes) => bytes.is_none(),
            Kind::Upstream(body) => body.finished || body.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Local(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(body) => body.inner.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let Some(mut tail) = self.log.take() else { return };
        tail.entry.delivered = self.is_end_stream();
        tail.entry.total_ms = millis(tail.started.elapsed());
        tail.log.record(tail.entry);
    }
}

/// A duration in milliseconds, to the microsecond.
pub(crate) fn millis(duration: std::time::Duration) -> f64 {
    (duration.as_micros() as f64) / 1000.0
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Only a body read to its end leaves the connection ready for another request;
        // hyper may also skip polling bodies it knows are empty (HEAD, 204, 304), which
        // `is_end_stream` reports too.
        if self.finished || self.inner.is_end_stream() {
            if let Some((sender, server)) = self.conn.take() {
                let back = match &self.home {
                    ConnHome::Session { table, key, server: index } => {
                        table.put_conn(key, index, sender).err()
                    }
                    ConnHome::Pool => Some(sender),
                    // Never the shared pool: the connection carries this client's address.
                    ConnHome::Private(slot) => {
                        slot.put(&server, sender);
                        None
                    }
                };
                if let Some(sender) = back {
                    server.idle.put(sender);
                }
            }
        }
    }
}
