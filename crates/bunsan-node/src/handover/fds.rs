//! Passing file descriptors over a Unix socket (SCM_RIGHTS), the one place in
//! bunsan-node that needs `unsafe`: taking ownership of the descriptors the kernel
//! installed in this process.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use tokio::io::Interest;
use tokio::net::UnixStream;

/// The most descriptors one message carries (listeners plus the admin API).
pub const MAX_FDS: usize = 64;
/// The largest payload one message carries.
const MAX_PAYLOAD: usize = 64 * 1024;

/// Sends `payload` with `fds` attached, in one message.
pub async fn send(stream: &UnixStream, payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
    if fds.len() > MAX_FDS || payload.len() > MAX_PAYLOAD {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many sockets to hand over"));
    }
    let raw = stream.as_raw_fd();
    let mut sent = stream
        .async_io(Interest::WRITABLE, || {
            let iov = [IoSlice::new(payload)];
            let cmsg = [ControlMessage::ScmRights(fds)];
            sendmsg::<()>(raw, &iov, &cmsg, MsgFlags::empty(), None).map_err(io::Error::from)
        })
        .await?;
    // The descriptors went with the first byte; the rest of the payload may follow alone.
    while sent < payload.len() {
        stream.writable().await?;
        match stream.try_write(&payload[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Receives one message: its first bytes, and the descriptors attached (owned, and
/// close-on-exec). Fails if the descriptors did not all fit.
pub async fn recv(stream: &UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let raw = stream.as_raw_fd();
    let mut buf = vec![0u8; MAX_PAYLOAD];
    let (bytes, fds) = stream
        .async_io(Interest::READABLE, || {
            let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(raw, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
                .map_err(io::Error::from)?;
            let mut fds = Vec::new();
            for cmsg in msg.cmsgs().map_err(io::Error::from)? {
                if let ControlMessageOwned::ScmRights(received) = cmsg {
                    fds.extend(received.into_iter().map(own));
                }
            }
            Ok((msg.bytes, fds))
        })
        .await?;
    buf.truncate(bytes);
    Ok((buf, fds))
}

/// Takes ownership of a descriptor that `recvmsg` just installed in this process.
#[allow(unsafe_code)]
fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: SCM_RIGHTS gives this process a new descriptor that nothing else in it
    // refers to; wrapping it at once makes it closed exactly once, when dropped.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
