//! Zero-copy byte relay between two TCP sockets through kernel pipes (`splice(2)`).
//!
//! The TCP relay spends nearly all its time moving bytes; copying them into user space
//! and back costs two copies and a buffer per direction. `splice` moves pages from one
//! socket into a pipe and from the pipe into the other socket without touching them,
//! so each direction costs one pipe (two descriptors, kernel memory only while bytes
//! are in flight) and no user-space buffer at all.
//!
//! Each direction alternates two steps: fill the (empty) pipe from the source socket,
//! then drain it into the destination until it is empty again. A direction that reads
//! end-of-stream shuts down the write half of its destination, so half-close passes
//! through; the relay ends when both directions have, or at the first error.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::unistd::pipe2;
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The pipe size asked for: large enough that one wakeup moves a burst of a fast
/// transfer (`bench/s6-cores`, three 4 GiB transfers each: median 2.32 GB/s with 1 MiB
/// pipes, 1.88 GB/s with the default 64 KiB, which also cost more proxy CPU). The
/// kernel may refuse or cap it (`/proc/sys/fs/pipe-max-size`, the per-user pipe budget);
/// the default pipe still works, with more wakeups.
const PIPE_BYTES: usize = 1 << 20;

/// One direction's pipe.
#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// The pipe's capacity, the most one fill moves.
    capacity: usize,
}

impl Pipe {
    /// A non-blocking pipe, enlarged towards [`PIPE_BYTES`] when the kernel allows.
    fn new() -> io::Result<Self> {
        let (read, write) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let requested = i32::try_from(PIPE_BYTES).unwrap_or(i32::MAX);
        let capacity = match fcntl(&write, FcntlArg::F_SETPIPE_SZ(requested)) {
            Ok(size) => usize::try_from(size).unwrap_or(PIPE_BYTES),
            // Over the per-user pipe budget or the system's cap: keep the default size.
            Err(_) => fcntl(&write, FcntlArg::F_GETPIPE_SZ)
                .map_or(1 << 16, |size| usize::try_from(size).unwrap_or(1 << 16)),
        };
        Ok(Self { read, write, capacity })
    }
}

/// The pipes of a relay, made before anything is relayed so that a process out of
/// descriptors can fall back to copying in user space.
#[derive(Debug)]
pub struct Pipes {
    to_server: Pipe,
    to_client: Pipe,
}

impl Pipes {
    /// Both directions' pipes, or the error that stopped making them (usually `EMFILE`).
    pub fn new() -> io::Result<Self> {
        Ok(Self { to_server: Pipe::new()?, to_client: Pipe::new()? })
    }

    /// Relays between `client` and `server` until both directions have ended; returns
    /// the bytes moved `(to_server, to_client)`.
    pub async fn relay(self, client: &TcpStream, server: &TcpStream) -> io::Result<(u64, u64)> {
        tokio::try_join!(one_way(client, server, &self.to_server), one_way(server, client, &self.to_client))
    }
}

/// Moves bytes from `from` to `to` until `from` ends, then shuts down `to`'s write half.
async fn one_way(from: &TcpStream, to: &TcpStream, pipe: &Pipe) -> io::Result<u64> {
    let mut moved = 0u64;
    loop {
        let filled = from.async_io(Interest::READABLE, || fill(from, pipe)).await?;
        if filled == 0 {
            // A peer that already went away cannot take the FIN; that is not an error.
            if let Err(error) = SockRef::from(to).shutdown(std::net::Shutdown::Write) {
                if error.kind() != io::ErrorKind::NotConnected {
                    return Err(error);
                }
            }
            return Ok(moved);
        }
        let mut pending = filled;
        while pending > 0 {
            let drained = to.async_io(Interest::WRITABLE, || drain(pipe, to, pending)).await?;
            if drained == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "the socket took no bytes"));
            }
            pending -= drained;
            moved += drained as u64;
        }
    }
}

/// Splices what `from` has (up to the pipe's capacity) into the empty pipe; 0 is the
/// end of `from`'s stream.
fn fill(from: &TcpStream, pipe: &Pipe) -> io::Result<usize> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    retry_interrupted(|| splice(from.as_fd(), None, pipe.write.as_fd(), None, pipe.capacity, flags))
}

/// Splices up to `pending` bytes from the pipe into `to`.
fn drain(pipe: &Pipe, to: &TcpStream, pending: usize) -> io::Result<usize> {
    // No SPLICE_F_MORE: it corks the socket, and the tail of a reply would wait for bytes
    // that may never come (request/response protocols). Measured, it made no difference
    // beyond the noise to a 1 GiB transfer.
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    retry_interrupted(|| splice(pipe.read.as_fd(), None, to.as_fd(), None, pending, flags))
}

/// Runs `call` again while a signal interrupts it; other errors become `io::Error`
/// (`EAGAIN` as `WouldBlock`, which makes tokio wait for readiness).
fn retry_interrupted(mut call: impl FnMut() -> nix::Result<usize>) -> io::Result<usize> {
    loop {
        match call() {
            Err(Errno::EINTR) => continue,
            result => return result.map_err(io::Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair of loopback sockets: (the end we hold, the end the relay gets).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (outer, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (outer.expect("connect"), accepted.expect("accept").0)
    }

    #[tokio::test]
    async fn moves_both_ways_and_passes_half_close_on() {
        let (mut client, client_side) = pair().await;
        let (mut server, server_side) = pair().await;
        let relay =
            tokio::spawn(async move { Pipes::new().expect("pipes").relay(&client_side, &server_side).await });
        let upload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = upload.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&upload).await.expect("upload");
            client.shutdown().await.expect("half-close");
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).await.expect("reply");
            reply
        });
        let mut received = Vec::new();
        server.read_to_end(&mut received).await.expect("server reads to the client's FIN");
        assert_eq!(received, expected, "every byte arrives, in order");
        server.write_all(b"after the client's half-close").await.expect("reply");
        server.shutdown().await.expect("server FIN");
        assert_eq!(writer.await.expect("writer"), b"after the client's half-close");
        let (to_server, to_client) = relay.await.expect("relay task").expect("relay");
        assert_eq!((to_server, to_client), (3_000_000, 29));
    }

    #[tokio::test]
    async fn a_reset_peer_ends_the_relay_with_an_error() {
        let (client, client_side) = pair().await;
        let (mut server, server_side) = pair().await;
        let relay =
            tokio::spawn(async move { Pipes::new().expect("pipes").relay(&client_side, &server_side).await });
        // Linger 0 makes close send RST rather than FIN.
        SockRef::from(&client).set_linger(Some(std::time::Duration::ZERO)).expect("linger");
        drop(client);
        let mut rest = Vec::new();
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), relay).await;
        assert!(outcome.expect("the relay ends").expect("task").is_err(), "a reset is reported");
        // The server side was closed by the relay's end, not left hanging.
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), server.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the server sees the relay go away");
    }
}
