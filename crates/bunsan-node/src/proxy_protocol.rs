//! The PROXY protocol in the node: reading the header that starts a connection on a
//! listener with `accept_proxy`, and writing one to servers of pools with `send_proxy`.
//!
//! The header is read in chunks, so a read may take bytes past its end (the client's
//! first data); [`Rewind`] hands those back before reading on, so nothing is lost.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bunsan_config::ProxyVersion;
use bunsan_proto::proxy_header::{self, Parsed, ProxyHeader, ProxyHeaderError, Version};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How long a client has to send the whole header after connecting. A proxy sends it
/// at once, so this is short: it only bounds how long a client that sends nothing (or
/// dribbles) holds a connection task, and is half the TLS handshake's 10 s.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How much is read at a time while the header is incomplete: enough for any v1 header
/// and most v2 ones in one read.
const READ_CHUNK: usize = 512;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The bytes are not a valid header.
    #[error(transparent)]
    Malformed(#[from] ProxyHeaderError),
    /// The client closed before the header was whole.
    #[error("connection closed before the PROXY header was complete")]
    Closed,
    /// The header did not arrive within [`HEADER_TIMEOUT`].
    #[error("no complete PROXY header within {HEADER_TIMEOUT:?}")]
    TimedOut,
    /// Reading failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// The two ends of a client connection as the client sees them: with a PROXY header,
/// the addresses it names; else (or for LOCAL/UNKNOWN) the TCP connection's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends {
    /// The client.
    pub client: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
}

impl Ends {
    /// What `header` says, falling back to the TCP connection's `tcp` ends.
    fn from_header(header: ProxyHeader, tcp: Ends) -> Self {
        match header {
            ProxyHeader::Tcp { source, destination } => Self { client: source, local: destination },
            ProxyHeader::Local | ProxyHeader::Unknown => tcp,
        }
    }

    /// The header to send a server for this client.
    pub fn header(&self) -> ProxyHeader {
        ProxyHeader::tcp(self.client, self.local)
    }
}

/// Reads the PROXY header that starts `stream` within [`HEADER_TIMEOUT`]; returns the
/// connection's real ends and the stream, which replays any bytes read past the header.
pub async fn accept<S>(mut stream: S, tcp: Ends) -> Result<(Rewind<S>, Ends), AcceptError>
where
    S: AsyncRead + Unpin,
{
    let (header, rest) = tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream))
        .await
        .map_err(|_| AcceptError::TimedOut)??;
    Ok((Rewind::new(rest, stream), Ends::from_header(header, tcp)))
}

/// Reads until the bytes so far hold a whole header (or cannot start one); returns it
/// with whatever was read after it.
async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(ProxyHeader, Bytes), AcceptError> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        if let Parsed::Complete(header, len) = proxy_header::parse(&buf)? {
            return Ok((header, buf.split_off(len).freeze()));
        }
        // The parser bounds the header (107 bytes for v1, a capped length for v2), so
        // this cannot grow without limit.
        buf.reserve(READ_CHUNK);
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(AcceptError::Closed);
        }
    }
}

/// The header `version` for a connection with these ends, ready to write to a server.
pub fn encode(ends: &Ends, version: ProxyVersion) -> Vec<u8> {
    ends.header().encode(match version {
        ProxyVersion::V1 => Version::V1,
        ProxyVersion::V2 => Version::V2,
    })
}

/// A stream that first yields bytes already read from it, then reads on.
#[derive(Debug)]
pub struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    /// `inner`, with `prefix` to be read before it.
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }

    /// The bytes not yet read, and the stream after them.
    pub fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn tcp_ends() -> Ends {
        Ends { client: "127.0.0.1:50000".parse().unwrap(), local: "127.0.0.1:8080".parse().unwrap() }
    }

    /// Writes `chunks` one by one into a pipe and accepts from its other end.
    async fn accept_from(chunks: &[&[u8]]) -> Result<(Rewind<tokio::io::DuplexStream>, Ends), AcceptError> {
        let (client, server) = tokio::io::duplex(4096);
        let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
        tokio::spawn(async move {
            let mut client = client;
            for chunk in chunks {
                client.write_all(&chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            // Keep the pipe open a while, so "closed" is not what the tests see.
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        accept(server, tcp_ends()).await
    }

    #[tokio::test]
    async fn a_header_split_across_reads_keeps_the_bytes_after_it() {
        let result =
            accept_from(&[b"PROXY TCP4 203.0.113.7 192.0.2.1 4242", b" 443\r\nhello", b" world"]).await;
        let (mut stream, ends) = result.unwrap();
        assert_eq!(ends.client, "203.0.113.7:4242".parse().unwrap());
        assert_eq!(ends.local, "192.0.2.1:443".parse().unwrap());
        let mut data = [0u8; 11];
        stream.read_exact(&mut data).await.unwrap();
        assert_eq!(&data, b"hello world");
    }

    #[tokio::test]
    async fn local_and_unknown_keep_the_tcp_ends() {
        let result = accept_from(&[&ProxyHeader::Local.encode_v2()]).await;
        assert_eq!(result.unwrap().1, tcp_ends());
        let result = accept_from(&[b"PROXY UNKNOWN\r\n"]).await;
        assert_eq!(result.unwrap().1, tcp_ends());
    }

    #[tokio::test]
    async fn garbage_is_malformed() {
        let result = accept_from(&[b"GET / HTTP/1.1\r\n"]).await;
        assert!(matches!(result, Err(AcceptError::Malformed(ProxyHeaderError::BadSignature))));
    }

    #[tokio::test]
    async fn a_close_before_the_end_of_the_header_is_reported() {
        let (client, server) = tokio::io::duplex(64);
        let mut client = client;
        client.write_all(b"PROXY TCP4 ").await.unwrap();
        drop(client);
        assert!(matches!(accept(server, tcp_ends()).await, Err(AcceptError::Closed)));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_times_out() {
        let result = accept_from(&[b"PROXY "]).await;
        assert!(matches!(result, Err(AcceptError::TimedOut)));
    }

    #[test]
    fn encode_follows_the_configured_version() {
        let v1 = encode(&tcp_ends(), ProxyVersion::V1);
        assert_eq!(v1, b"PROXY TCP4 127.0.0.1 127.0.0.1 50000 8080\r\n");
        assert!(encode(&tcp_ends(), ProxyVersion::V2).starts_with(&proxy_header::V2_SIGNATURE));
    }
}
