//! Servers that fail on purpose: [`Resetter`] resets each connection after reading a
//! request, [`Hanger`] reads a request and never answers.
//!
//! Both speak just enough HTTP/1.1 to know where a request ends, and record every
//! request head they received, so a test can tell "never reached the server" from
//! "reached it, then failed".

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};

/// A request head larger than this is not a request these servers will record.
const MAX_HEAD: usize = 64 * 1024;
/// How long the [`Resetter`] waits for a request body before resetting anyway.
const BODY_WAIT: Duration = Duration::from_millis(100);

/// One request as a faulty server received it.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// The request line and headers, without the final blank line.
    pub head: String,
    /// The body bytes that arrived (the [`Hanger`] does not read bodies).
    pub body: Vec<u8>,
}

impl RawRequest {
    /// The request line, e.g. `POST /upload HTTP/1.1`.
    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }
}

/// What a faulty server saw; shared with its connection tasks.
#[derive(Debug, Default)]
struct Log {
    connections: AtomicU64,
    requests: Mutex<Vec<RawRequest>>,
}

impl Log {
    fn record(&self, request: RawRequest) {
        if let Ok(mut requests) = self.requests.lock() {
            requests.push(request);
        }
    }

    fn requests(&self) -> Vec<RawRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// A listening faulty server; dropping it closes the listener and every connection.
/// What the faulty servers have in common: an address, and a log of what they received.
#[derive(Debug)]
pub struct FaultyServer {
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Log>,
    task: AbortHandle,
}

impl FaultyServer {
    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.seen().len() as u64
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<RawRequest> {
        self.log.requests()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.log.connections.load(SeqCst)
    }

    /// Binds `127.0.0.1:0` and runs `handle` for every accepted connection.
    async fn start<F, Fut>(handle: F) -> Self
    where
        F: Fn(TcpStream, Arc<Log>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("faulty server binds");
        let addr = listener.local_addr().expect("bound address");
        let log = Arc::new(Log::default());
        let task = tokio::spawn(accept(listener, log.clone(), handle)).abort_handle();
        Self { addr, log, task }
    }
}

impl Drop for FaultyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Owns every connection task, so aborting it closes them all.
async fn accept<F, Fut>(listener: TcpListener, log: Arc<Log>, handle: F)
where
    F: Fn(TcpStream, Arc<Log>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        log.connections.fetch_add(1, SeqCst);
        connections.spawn(handle(stream, log.clone()));
        while connections.try_join_next().is_some() {}
    }
}

/// A server that reads one request per connection (head and whatever body arrives
/// within 100 ms), records it, then resets the connection (RST, not FIN). Its log is
/// read through [`FaultyServer`].
#[derive(Debug)]
pub struct Resetter(FaultyServer);

impl Resetter {
    /// Starts a resetter on an ephemeral loopback port.
    pub async fn start() -> Self {
        Self(FaultyServer::start(reset).await)
    }
}

impl std::ops::Deref for Resetter {
    type Target = FaultyServer;
    fn deref(&self) -> &FaultyServer {
        &self.0
    }
}

/// Reads a request, records it, and closes with SO_LINGER 0 so the kernel sends RST.
async fn reset(mut stream: TcpStream, log: Arc<Log>) {
    if let Some((head, mut body)) = read_head(&mut stream).await {
        let wanted = content_length(&head).unwrap_or(0);
        // Without the body the request would not have fully "reached" the server; a
        // client that is slow to send it gets reset anyway.
        let _ = tokio::time::timeout(BODY_WAIT, read_body(&mut stream, &mut body, wanted)).await;
        body.truncate(wanted);
        log.record(RawRequest { head, body });
    }
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).expect("set SO_LINGER 0 for a reset");
    drop(stream);
}

/// A server that reads one request per connection, records it, and never answers; the
/// connection stays open until the client closes it or the hanger is dropped. Its log is
/// read through [`FaultyServer`].
#[derive(Debug)]
pub struct Hanger(FaultyServer);

impl Hanger {
    /// Starts a hanger on an ephemeral loopback port.
    pub async fn start() -> Self {
        Self(FaultyServer::start(hang).await)
    }
}

impl std::ops::Deref for Hanger {
    type Target = FaultyServer;
    fn deref(&self) -> &FaultyServer {
        &self.0
    }
}

async fn hang(mut stream: TcpStream, log: Arc<Log>) {
    if let Some((head, _)) = read_head(&mut stream).await {
        log.record(RawRequest { head, body: Vec::new() });
    }
    // Keep reading (and discarding) so a client's close ends the task instead of
    // leaving it to the drop of the whole server.
    let mut sink = vec![0u8; 16 * 1024];
    while let Ok(1..) = stream.read(&mut sink).await {}
}

/// Reads up to the blank line ending a request head; returns the head as text and any
/// bytes read past it, or `None` if the peer closed first or the head is too large.
async fn read_head(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            buf.truncate(end);
            return Some((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads until `body` holds `wanted` bytes or the peer stops sending.
async fn read_body(stream: &mut TcpStream, body: &mut Vec<u8>, wanted: usize) {
    let mut chunk = [0u8; 16 * 1024];
    while body.len() < wanted {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The `Content-Length` of a request head, if it has a valid one.
fn content_length(head: &str) -> Option<usize> {
    head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
    })
}
