//! Opening a connection to a server as its pool says: TCP, then the PROXY protocol
//! header if the pool sends one, then TLS if on, then the HTTP/1.1 or HTTP/2 handshake;
//! the connection is driven by its own task.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bunsan_config::UpstreamProtocol;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{ConnectError, Sender};
use crate::topology::PoolSettings;

/// Everything needed to open one connection to one server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dial<'a> {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The address as the operator wrote it (its host is the default TLS server name).
    pub addr_text: &'a str,
    /// The pool's settings: protocol, TLS, timeouts.
    pub settings: &'a PoolSettings,
    /// The PROXY protocol header to write first, for pools with `send_proxy`.
    pub proxy_header: Option<&'a [u8]>,
}

/// Opens a connection and drives it on its own task; the whole sequence (TCP, PROXY
/// header, TLS, HTTP handshake) must finish within the pool's connect timeout.
pub(crate) async fn connect(dial: Dial<'_>) -> Result<Sender, ConnectError> {
    let (addr, timeout) = (dial.addr, dial.settings.connect_timeout);
    // Boxed: the TLS and HTTP handshakes' state is ~8 KiB, and every request's future would
    // carry it inline although most requests reuse a connection and never connect.
    let establish = Box::pin(establish(dial));
    tokio::time::timeout(timeout, establish).await.map_err(|_| ConnectError::Timeout { addr, timeout })?
}

async fn establish(dial: Dial<'_>) -> Result<Sender, ConnectError> {
    let addr = dial.addr;
    let mut stream = connect_tcp(addr, dial.settings.connect_timeout).await?;
    if let Some(header) = dial.proxy_header {
        stream.write_all(header).await.map_err(|source| ConnectError::ProxyHeader { addr, source })?;
    }
    let protocol = dial.settings.upstream;
    let Some(tls) = &dial.settings.upstream_tls else {
        return handshake(stream, dial.settings, false, addr).await;
    };
    let name = tls
        .server_name(dial.addr_text)
        .ok_or_else(|| ConnectError::ServerName { addr, name: dial.addr_text.to_owned() })?;
    let stream =
        tls.connector().connect(name, stream).await.map_err(|source| ConnectError::Tls { addr, source })?;
    let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let wanted: &[u8] = if protocol == UpstreamProtocol::Http1 { b"http/1.1" } else { b"h2" };
    // A server that negotiates nothing is trusted to speak what the pool says; one that
    // picked another protocol would misread every byte.
    if alpn.as_deref().is_some_and(|alpn| alpn != wanted) {
        let got = String::from_utf8_lossy(alpn.as_deref().unwrap_or_default()).into_owned();
        return Err(ConnectError::Alpn { addr, got });
    }
    handshake(stream, dial.settings, true, addr).await
}

/// The HTTP handshake over an established stream.
async fn handshake<I>(
    io: I,
    settings: &PoolSettings,
    tls: bool,
    addr: SocketAddr,
) -> Result<Sender, ConnectError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let fail = |source| ConnectError::Handshake { addr, source };
    let io = TokioIo::new(io);
    let head_bytes = settings.response_header_bytes;
    if settings.upstream == UpstreamProtocol::Http1 {
        let mut builder = http1::Builder::new();
        builder.max_buf_size(usize::try_from(head_bytes).unwrap_or(usize::MAX));
        let (sender, conn) = builder.handshake(io).await.map_err(fail)?;
        // Upgrades (WebSocket) take the connection over after a `101`; without this hyper
        // would close it instead.
        tokio::spawn(drive(conn.with_upgrades(), addr));
        return Ok(Sender::Http1(sender));
    }
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .adaptive_window(true)
        .max_header_list_size(u32::try_from(head_bytes).unwrap_or(u32::MAX))
        .handshake(io)
        .await
        .map_err(fail)?;
    tokio::spawn(drive(conn, addr));
    Ok(Sender::Http2 { sender, tls })
}

async fn drive<F: std::future::Future<Output = Result<(), hyper::Error>>>(conn: F, addr: SocketAddr) {
    if let Err(error) = conn.await {
        tracing::debug!(%addr, %error, "upstream connection ended with an error");
    }
}

/// Opens a TCP connection with `TCP_NODELAY` set.
pub(crate) async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout { addr, timeout })?
        .map_err(|source: io::Error| ConnectError::Io { addr, source })?;
    // Latency matters more than packet count for a proxy; a failure here is harmless.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
