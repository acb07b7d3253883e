//! Zero-downtime binary upgrade: a new process takes the listening sockets over from the
//! running one through a Unix socket (the "upgrade socket"), so no connection is refused
//! while one process replaces the other.
//!
//! The exchange, new process (N) to old process (O), one line or message each:
//!
//! 1. N connects to the upgrade socket and sends `SOCKETS`.
//! 2. O answers `{"sockets": [NAME, …]}` with the listening sockets attached (SCM_RIGHTS),
//!    in the same order; both processes now hold the same kernel sockets and both accept.
//! 3. N starts serving on them (adopting each whose name and address fit its config),
//!    then sends `TAKEN`.
//! 4. O answers `OK`, stops accepting and drains ([`crate::Node::hand_over`]).
//!
//! Until step 4 nothing changes in O: if N fails or disconnects first, O keeps serving.
//! N then binds the upgrade socket itself (a new file renamed over the path), so the next
//! upgrade finds N. A path that nobody answers on is a leftover: N starts afresh.

mod fds;

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use crate::NodeHandle;

/// How long either side waits for the other's next line.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a takeover failed. The old process keeps serving in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandoverError {
    /// The upgrade socket exists but could not be used.
    #[error("upgrade socket {path}: {source}")]
    Socket {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The other process answered something unexpected or broke off.
    #[error("the other process broke the handover protocol: {0}")]
    Protocol(String),
    /// The other process did not answer in time.
    #[error("the other process did not answer within {0:?}")]
    Timeout(Duration),
}

/// What the old process sends with the sockets.
#[derive(Debug, Serialize, Deserialize)]
struct Offer {
    /// Socket names, in the order of the attached descriptors.
    sockets: Vec<String>,
}

/// The new process's side: sockets received, takeover not yet confirmed.
#[derive(Debug)]
pub struct Takeover {
    stream: BufReader<UnixStream>,
    sockets: HashMap<String, std::net::TcpListener>,
}

/// Asks the process serving on `path` for its listening sockets. `Ok(None)` when nobody
/// answers there (no file, or a leftover of a process that is gone).
pub async fn take_over(path: &Path) -> Result<Option<Takeover>, HandoverError> {
    let socket_error = |source| HandoverError::Socket { path: path.to_owned(), source };
    let stream = match UnixStream::connect(path).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) =>
        {
            tracing::info!(path = %path.display(), "no running process on the upgrade socket; starting afresh");
            return Ok(None);
        }
        Err(e) => return Err(socket_error(e)),
    };
    let mut stream = BufReader::new(stream);
    stream.get_mut().write_all(b"SOCKETS\n").await.map_err(socket_error)?;
    let (payload, fds) = step(fds::recv(stream.get_ref())).await?.map_err(socket_error)?;
    let offer: Offer = serde_json::from_slice(&payload)
        .map_err(|e| HandoverError::Protocol(format!("bad socket list: {e}")))?;
    if offer.sockets.len() != fds.len() {
        let (names, got) = (offer.sockets.len(), fds.len());
        return Err(HandoverError::Protocol(format!("{names} socket names but {got} sockets")));
    }
    let sockets = offer.sockets.into_iter().zip(fds.into_iter().map(std::net::TcpListener::from)).collect();
    tracing::info!(path = %path.display(), "received the listening sockets of the running process");
    Ok(Some(Takeover { stream, sockets }))
}

impl Takeover {
    /// The sockets received, by name (listener names and [`crate::ADMIN_SOCKET`]).
    pub fn sockets(&mut self) -> HashMap<String, std::net::TcpListener> {
        std::mem::take(&mut self.sockets)
    }

    /// Tells the old process that this one serves now; it stops accepting and drains.
    pub async fn confirm(mut self) -> Result<(), HandoverError> {
        let io = |e| HandoverError::Protocol(format!("cannot confirm the takeover: {e}"));
        self.stream.get_mut().write_all(b"TAKEN\n").await.map_err(io)?;
        let answer = step(read_line(&mut self.stream)).await?.map_err(io)?;
        if answer != "OK" {
            return Err(HandoverError::Protocol(format!("expected OK, got {answer:?}")));
        }
        tracing::info!("the old process stopped accepting; this one serves now");
        Ok(())
    }
}

/// The old process's side: resolves once a new process has taken the sockets over.
#[derive(Debug)]
pub struct UpgradeSocket {
    taken: oneshot::Receiver<()>,
}

impl UpgradeSocket {
    /// Listens on `path` (replacing whatever file is there atomically) and hands `node`'s
    /// sockets to the first process that completes a takeover.
    pub fn listen(path: &Path, node: NodeHandle) -> Result<Self, HandoverError> {
        let socket_error = |source| HandoverError::Socket { path: path.to_owned(), source };
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let fresh = path.with_file_name(format!(".{file_name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&fresh);
        let listener = UnixListener::bind(&fresh).map_err(socket_error)?;
        std::fs::rename(&fresh, path).map_err(socket_error)?;
        let (done, taken) = oneshot::channel();
        tokio::spawn(serve(listener, node, done));
        tracing::info!(path = %path.display(), "upgrade socket ready");
        Ok(Self { taken })
    }

    /// Waits until another process has taken over.
    pub async fn taken_over(&mut self) {
        if (&mut self.taken).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Answers takeover attempts one at a time until one completes.
async fn serve(listener: UnixListener, node: NodeHandle, done: oneshot::Sender<()>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "upgrade socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match offer(BufReader::new(stream), &node).await {
            Ok(()) => {
                let _ = done.send(());
                return;
            }
            Err(error) => tracing::warn!(%error, "takeover abandoned; still serving"),
        }
    }
}

/// One takeover attempt, from `SOCKETS` to `OK`.
async fn offer(mut stream: BufReader<UnixStream>, node: &NodeHandle) -> Result<(), HandoverError> {
    let io = |e: std::io::Error| HandoverError::Protocol(e.to_string());
    let request = step(read_line(&mut stream)).await?.map_err(io)?;
    if request != "SOCKETS" {
        return Err(HandoverError::Protocol(format!("expected SOCKETS, got {request:?}")));
    }
    let sockets = node.sockets().await;
    let offer = Offer { sockets: sockets.iter().map(|(name, _)| name.clone()).collect() };
    let payload = serde_json::to_vec(&offer).map_err(|e| HandoverError::Protocol(e.to_string()))?;
    let raw: Vec<_> = sockets.iter().map(|(_, socket)| socket.as_raw_fd()).collect();
    fds::send(stream.get_ref(), &payload, &raw).await.map_err(io)?;
    tracing::info!(sockets = ?offer.sockets, "handed the listening sockets to a new process");
    // The new process starts serving now; it may take a while (TLS files, name lookups).
    let confirmed = step(read_line(&mut stream)).await?.map_err(io)?;
    if confirmed != "TAKEN" {
        return Err(HandoverError::Protocol(format!("expected TAKEN, got {confirmed:?}")));
    }
    stream.get_mut().write_all(b"OK\n").await.map_err(io)?;
    Ok(())
}

/// One line, without its end; an error if the other side closed first.
async fn read_line(stream: &mut BufReader<UnixStream>) -> std::io::Result<String> {
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the other process hung up"));
    }
    Ok(line.trim_end().to_owned())
}

async fn step<T>(future: impl std::future::Future<Output = T>) -> Result<T, HandoverError> {
    tokio::time::timeout(STEP_TIMEOUT, future).await.map_err(|_| HandoverError::Timeout(STEP_TIMEOUT))
}
