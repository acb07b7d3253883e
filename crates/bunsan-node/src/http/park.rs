//! Parking idle HTTP/1.1 connections: a keep-alive connection that has been quiet for
//! [`PARK_AFTER`] gives up hyper's connection state (its 8 KiB read and 8 KiB write
//! buffers) and waits on the bare socket; its next byte starts a fresh hyper connection.
//!
//! Most keep-alive connections spend most of their life waiting for the client's next
//! request; holding ~20 KiB each for that made 10,000 idle clients cost 220 MiB. A
//! busy connection is never parked (its requests come faster than `PARK_AFTER`), so
//! the rebuild costs nothing under load.
//!
//! A connection is parked only when hyper provably holds no byte of it: nothing in
//! flight, no write waiting on the client, no byte read since its last response, and
//! the last read ended with the blank line that ends a request head (so hyper's
//! buffer cannot hold the start of a next request: a complete next head would be in
//! flight, and bytes after a head belong to a request that is). HTTP/2 connections
//! and upgraded ones are never parked.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::idle::Activity;

/// How long an HTTP/1.1 connection must be quiet before it is parked.
pub const PARK_AFTER: Duration = Duration::from_millis(200);

/// What the socket wrapper reports for the parking decision.
#[derive(Debug, Default)]
pub struct IoSignals {
    /// Reads that returned bytes.
    reads: AtomicU64,
    /// Whether the last of them ended with `\r\n\r\n`.
    read_ended_head: AtomicBool,
    /// Whether the last write or flush is waiting for the client to take bytes.
    write_blocked: AtomicBool,
    /// Set once the connection serves HTTP/2 (never parked).
    http2: AtomicBool,
    /// Set just before hyper is asked to close an idle connection so that it can be
    /// parked: its shutdown then leaves the socket open and hands it back.
    parking: AtomicBool,
}

impl IoSignals {
    /// Notes that the connection serves HTTP/2.
    pub fn saw_http2(&self) {
        self.http2.store(true, Relaxed);
    }
}

/// The socket, handed back by the wrapper when hyper drops it during a park.
pub type Slot<I> = Arc<Mutex<Option<I>>>;

/// The client socket as hyper sees it: it reports reads and writes to [`IoSignals`],
/// replays a byte read while parked, and returns the socket to its [`Slot`] instead of
/// closing it when a park is under way.
#[derive(Debug)]
pub struct ParkableIo<I> {
    inner: Option<I>,
    /// The byte that woke a parked connection, not yet given to hyper.
    held: Option<u8>,
    /// The last four bytes read, to tell whether a read ended a request head.
    tail: [u8; 4],
    signals: Arc<IoSignals>,
    slot: Slot<I>,
}

impl<I> ParkableIo<I> {
    /// Wraps `inner`, whose first byte (if it was read while parked) is `held`.
    pub fn new(inner: I, held: Option<u8>, signals: Arc<IoSignals>, slot: Slot<I>) -> Self {
        Self { inner: Some(inner), held, tail: [0; 4], signals, slot }
    }

    fn note_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let keep = 4usize.saturating_sub(bytes.len());
        self.tail.copy_within(4 - keep.., 0);
        let take = bytes.len().min(4);
        self.tail[keep..].copy_from_slice(&bytes[bytes.len() - take..]);
        // The wrapper is the counter's only writer, so no atomic read-modify-write is
        // needed on this per-read path.
        let reads = &self.signals.reads;
        reads.store(reads.load(Relaxed) + 1, Relaxed);
        self.signals.read_ended_head.store(&self.tail == b"\r\n\r\n", Relaxed);
    }

    fn note_write<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.signals.write_blocked.store(poll.is_pending(), Relaxed);
        poll
    }
}

impl<I: Unpin> ParkableIo<I> {
    fn inner(&mut self) -> io::Result<&mut I> {
        self.inner.as_mut().ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "socket handed back"))
    }
}

impl<I> Drop for ParkableIo<I> {
    fn drop(&mut self) {
        if self.signals.parking.load(Relaxed) {
            *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = self.inner.take();
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for ParkableIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(byte) = self.held.take() {
            buf.put_slice(&[byte]);
            self.note_read(&[byte]);
            return Poll::Ready(Ok(()));
        }
        let start = buf.filled().len();
        let poll = Pin::new(self.inner()?).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let this = &mut *self;
            this.note_read(&buf.filled()[start..]);
        }
        poll
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ParkableIo<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(self.inner()?).poll_write(cx, buf);
        self.note_write(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(self.inner()?).poll_write_vectored(cx, bufs);
        self.note_write(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(self.inner()?).poll_flush(cx);
        self.note_write(poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.signals.parking.load(Relaxed) {
            // hyper closing an idle connection we are parking: the socket stays open.
            return Poll::Ready(Ok(()));
        }
        Pin::new(self.inner()?).poll_shutdown(cx)
    }
}

/// Watches one connection and decides when it may be parked.
#[derive(Debug)]
pub struct ParkWatch {
    signals: Arc<IoSignals>,
    activity: Arc<Activity>,
}

impl ParkWatch {
    /// A watch over a connection's socket signals and requests.
    pub fn new(signals: Arc<IoSignals>, activity: Arc<Activity>) -> Self {
        Self { signals, activity }
    }

    /// Resolves once the connection has been quiet for [`PARK_AFTER`] in a state where
    /// hyper holds none of its bytes; never resolves for HTTP/2.
    pub async fn quiet(&self) {
        let mut reads = self.signals.reads.load(Relaxed);
        loop {
            tokio::time::sleep(PARK_AFTER).await;
            let now = self.signals.reads.load(Relaxed);
            if now == reads && self.parkable() {
                return;
            }
            reads = now;
        }
    }

    fn parkable(&self) -> bool {
        let signals = &self.signals;
        !signals.http2.load(Relaxed)
            && !signals.write_blocked.load(Relaxed)
            && signals.read_ended_head.load(Relaxed)
            && self.activity.idle_for().is_some_and(|idle| idle >= PARK_AFTER)
    }

    /// Marks the park as under way (hyper's close then hands the socket back) or, with
    /// `false`, called off.
    pub fn set_parking(&self, parking: bool) {
        self.signals.parking.store(parking, Relaxed);
    }
}

/// Waits on a parked socket until the client sends a byte (returned) or closes it
/// (`None`); the wait holds one byte of buffer.
pub async fn wait_for_byte<I: AsyncRead + Unpin>(io: &mut I) -> Option<u8> {
    let mut byte = [0u8; 1];
    match io.read(&mut byte).await {
        Ok(1) => Some(byte[0]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped() -> (ParkableIo<()>, Arc<IoSignals>) {
        let signals = Arc::new(IoSignals::default());
        (ParkableIo::new((), None, signals.clone(), Slot::default()), signals)
    }

    #[test]
    fn the_end_of_a_head_is_seen_across_reads_of_any_size() {
        let (mut io, signals) = wrapped();
        io.note_read(b"GET / HTTP/1.1\r\nHost: a\r\n\r");
        assert!(!signals.read_ended_head.load(Relaxed));
        io.note_read(b"\n");
        assert!(signals.read_ended_head.load(Relaxed), "a head's last byte alone still ends it");
        io.note_read(b"G");
        assert!(!signals.read_ended_head.load(Relaxed), "the start of a next request does not");
        io.note_read(b"ET / HTTP/1.1\r\n\r\n");
        assert!(signals.read_ended_head.load(Relaxed));
        assert_eq!(signals.reads.load(Relaxed), 4);
    }
}
