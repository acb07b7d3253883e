//! One health check of one server: a TCP connect, or an HTTP/1.1 `GET` whose status must
//! fall in the expected range.
//!
//! Everything a check does — connect, request, response head and the bounded body read —
//! happens within its timeout, and at most [`BODY_LIMIT`] bytes of a body are read, so a
//! misbehaving server can neither hang a checker nor make it read without end.

use std::io;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use bunsan_config::HealthKind;
use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// At most this many body bytes are read before the connection is dropped. Reading a
/// little lets a small response end cleanly (no reset in the server's logs); reading no
/// more keeps a health endpoint that streams without end from tying up the checker.
pub const BODY_LIMIT: usize = 4 * 1024;

/// The `User-Agent` of every HTTP check, so servers can tell checks from traffic.
const USER_AGENT_VALUE: &str = "bunsan-health";

/// Why a check failed; its `Display` is what logs and transition reports show.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeFailure {
    /// The server's port refused the connection (nothing listening).
    #[error("connection refused")]
    Refused,
    /// The TCP connect failed otherwise (unreachable, reset, …).
    #[error("connect failed: {0}")]
    Connect(#[source] io::Error),
    /// The check did not finish within its timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server answered with a status outside the expected range.
    #[error("bad status {0}")]
    BadStatus(u16),
    /// The server did not speak HTTP/1.1 properly (garbage, early close, …).
    #[error("protocol error: {0}")]
    Protocol(#[source] hyper::Error),
    /// The check request could not be built from the configuration (e.g. a host that is
    /// not a valid header value).
    #[error("invalid check request: {0}")]
    Request(#[source] http::Error),
}

/// Runs one check of `kind` against `addr` within `timeout`. For HTTP checks without a
/// configured host, `host_default` (the server's address as written) is the `Host` header.
pub async fn probe(
    kind: &HealthKind,
    addr: SocketAddr,
    host_default: &str,
    timeout: Duration,
) -> Result<(), ProbeFailure> {
    let check = async {
        match kind {
            HealthKind::Tcp => connect(addr).await.map(drop),
            HealthKind::Http { path, host, expect } => {
                let request = build_request(path, host.as_deref().unwrap_or(host_default))?;
                let status = exchange(addr, request).await?;
                judge(status, expect)
            }
        }
    };
    tokio::time::timeout(timeout, check).await.map_err(|_elapsed| ProbeFailure::Timeout(timeout))?
}

/// Opens a TCP connection, telling a refusal apart from other failures.
async fn connect(addr: SocketAddr) -> Result<TcpStream, ProbeFailure> {
    TcpStream::connect(addr).await.map_err(|e| match e.kind() {
        io::ErrorKind::ConnectionRefused => ProbeFailure::Refused,
        _ => ProbeFailure::Connect(e),
    })
}

/// `GET path` with the check's headers. `Connection: close` because a check connection
/// is never reused: each check must see whether a new connection works.
fn build_request(path: &str, host: &str) -> Result<Request<Empty<Bytes>>, ProbeFailure> {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(HOST, host)
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(CONNECTION, "close")
        .body(Empty::new())
        .map_err(ProbeFailure::Request)
}

/// Sends `request` on a new connection and returns the response status once at most
/// [`BODY_LIMIT`] body bytes have been read.
///
/// The connection is driven inside this future rather than on a task of its own, so
/// when the caller's timeout drops the future, the socket closes with it.
async fn exchange(addr: SocketAddr, request: Request<Empty<Bytes>>) -> Result<StatusCode, ProbeFailure> {
    let stream = connect(addr).await?;
    let (mut sender, connection) =
        http1::handshake(TokioIo::new(stream)).await.map_err(ProbeFailure::Protocol)?;
    let answer = async move {
        let response = sender.send_request(request).await.map_err(ProbeFailure::Protocol)?;
        let status = response.status();
        drain(response.into_body()).await.map_err(ProbeFailure::Protocol)?;
        Ok(status)
    };
    let mut answer = std::pin::pin!(answer);
    tokio::select! {
        biased;
        result = &mut answer => result,
        ended = connection => {
            // The connection may finish (cleanly, after `Connection: close`) in the same
            // poll that delivered the response; the answer is then already waiting.
            ended.map_err(ProbeFailure::Protocol)?;
            answer.await
        }
    }
}

/// Reads and discards body frames until the body ends or [`BODY_LIMIT`] bytes were read.
async fn drain(mut body: Incoming) -> Result<(), hyper::Error> {
    let mut read = 0;
    while read < BODY_LIMIT {
        let Some(frame) = body.frame().await else { break };
        if let Some(data) = frame?.data_ref() {
            read += data.len();
        }
    }
    Ok(())
}

/// Passes when `status` is in `expect`.
fn judge(status: StatusCode, expect: &RangeInclusive<u16>) -> Result<(), ProbeFailure> {
    if expect.contains(&status.as_u16()) {
        Ok(())
    } else {
        Err(ProbeFailure::BadStatus(status.as_u16()))
    }
}
