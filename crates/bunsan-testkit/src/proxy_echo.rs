//! A TCP server that expects a PROXY protocol header: it records the header each
//! connection starts with, then echoes every byte after it (so tests can check both the
//! addresses a node sent and that the data behind the header arrived intact).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bunsan_proto::proxy_header::{self, Parsed, ProxyHeader, ProxyHeaderError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// One connection's header, as received.
#[derive(Debug, Clone)]
pub struct HeaderSeen {
    /// The TCP peer (the node).
    pub peer: SocketAddr,
    /// The header's exact bytes.
    pub raw: Vec<u8>,
    /// What it says, or why it was refused (the connection is then closed).
    pub header: Result<ProxyHeader, ProxyHeaderError>,
}

impl HeaderSeen {
    /// True for a binary (v2) header, false for a text (v1) one.
    pub fn is_v2(&self) -> bool {
        self.raw.starts_with(&proxy_header::V2_SIGNATURE)
    }
}

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct ProxyHeaderEcho {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<HeaderSeen>>>,
    task: AbortHandle,
}

impl ProxyHeaderEcho {
    /// Starts the server on an ephemeral loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy echo binds");
        let addr = listener.local_addr().expect("bound address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                tokio::spawn(serve(stream, peer, record.clone()));
            }
        });
        Self { addr, seen, task: task.abort_handle() }
    }

    /// Every connection's header so far (a connection closed before a header shows
    /// nothing), in arrival order.
    pub fn seen(&self) -> Vec<HeaderSeen> {
        self.seen.lock().expect("proxy echo lock").clone()
    }
}

impl Drop for ProxyHeaderEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, peer: SocketAddr, seen: Arc<Mutex<Vec<HeaderSeen>>>) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let (header, len) = loop {
        match proxy_header::parse(&buf) {
            Ok(Parsed::Complete(header, len)) => break (Ok(header), len),
            Err(error) => break (Err(error), buf.len()),
            Ok(Parsed::Incomplete) => {}
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let ok = header.is_ok();
    seen.lock().expect("proxy echo lock").push(HeaderSeen { peer, raw: buf[..len].to_vec(), header });
    if ok && stream.write_all(&buf[len..]).await.is_ok() {
        echo_rest(stream, chunk).await;
    }
}

/// Echoes until the client closes its side, then closes ours (half-close honoured).
async fn echo_rest(mut stream: TcpStream, mut chunk: Vec<u8>) {
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown().await;
}
