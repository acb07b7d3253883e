//! A small HTTP/1.1 client for etcd's JSON gateway: unary calls that fail over across
//! the endpoints, and the one long-lived watch stream.
//!
//! The first endpoint that answers is used until it fails; then the next one is tried.
//! A refusal (4xx) is not retried elsewhere: every member would refuse the same request.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use super::wire;
use crate::store::StoreError;

/// How long connecting to one endpoint may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one call (or a watch's first answer) may take at one endpoint.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read (a full range read of a big registry fits).
const MAX_ANSWER: usize = 64 * 1024 * 1024;
/// Connections kept open between calls.
const MAX_IDLE: usize = 4;

/// Why one attempt at one endpoint failed.
enum Failure {
    /// Unreachable, timed out, or a server-side error (5xx): another member may do better.
    Elsewhere(String),
    /// A refusal (4xx): every member would say the same.
    Refused(String),
}

/// A kept-open connection to one endpoint.
struct Idle {
    index: usize,
    sender: SendRequest<Full<Bytes>>,
}

/// The gateway client.
pub struct Gateway {
    endpoints: Vec<String>,
    /// The endpoint that answered last.
    current: AtomicUsize,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("endpoints", &self.endpoints).finish_non_exhaustive()
    }
}

/// An open watch stream.
pub struct Stream {
    /// The endpoint it came from (an index for [`Gateway::call_at`], and its name).
    pub index: usize,
    /// The endpoint's `HOST:PORT`.
    pub endpoint: String,
    /// The body: JSON messages, one after another.
    pub body: Incoming,
}

impl Gateway {
    /// A client for `endpoints` (`HOST:PORT`, at least one).
    pub fn new(endpoints: Vec<String>) -> Self {
        Self { endpoints, current: AtomicUsize::new(0), idle: Mutex::new(Vec::new()) }
    }

    /// The endpoints, for messages.
    pub fn endpoints(&self) -> String {
        self.endpoints.join(",")
    }

    /// `POST /v3/{call}` with `body` at the first endpoint that answers, read by `parse`.
    pub async fn call<T>(
        &self,
        call: &'static str,
        body: &Value,
        parse: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<T, StoreError> {
        let body = Bytes::from(body.to_string());
        let mut reasons = Vec::new();
        for index in self.rotation() {
            let endpoint = self.endpoints[index].clone();
            match self.attempt(index, call, &body).await {
                Ok(answer) => {
                    self.current.store(index, Relaxed);
                    return parse(&answer).map_err(|why| StoreError::EtcdAnswer { endpoint, call, why });
                }
                Err(Failure::Refused(why)) => return Err(StoreError::EtcdRefused { endpoint, call, why }),
                Err(Failure::Elsewhere(why)) => reasons.push(format!("{endpoint}: {why}")),
            }
        }
        Err(StoreError::EtcdUnreachable { call, why: reasons.join("; ") })
    }

    /// One call at endpoint `index` only (to check the endpoint a watch streams from).
    pub async fn call_at(&self, index: usize, call: &'static str, body: &Value) -> Result<(), String> {
        match self.attempt(index, call, &Bytes::from(body.to_string())).await {
            Ok(_) => Ok(()),
            Err(Failure::Elsewhere(why) | Failure::Refused(why)) => Err(why),
        }
    }

    /// Opens a `/v3/watch` stream at the first endpoint that accepts it.
    pub async fn watch(&self, body: &Value) -> Result<Stream, StoreError> {
        let body = Bytes::from(body.to_string());
        let mut reasons = Vec::new();
        for index in self.rotation() {
            let endpoint = self.endpoints[index].clone();
            let opened = tokio::time::timeout(CALL_TIMEOUT, self.open(index, &body)).await;
            match opened.unwrap_or_else(|_| Err(Failure::Elsewhere(timed_out()))) {
                Ok(body) => {
                    self.current.store(index, Relaxed);
                    return Ok(Stream { index, endpoint, body });
                }
                Err(Failure::Refused(why)) => {
                    return Err(StoreError::EtcdRefused { endpoint, call: "watch", why })
                }
                Err(Failure::Elsewhere(why)) => reasons.push(format!("{endpoint}: {why}")),
            }
        }
        Err(StoreError::EtcdUnreachable { call: "watch", why: reasons.join("; ") })
    }

    /// Every endpoint once, starting with the one that answered last.
    fn rotation(&self) -> impl Iterator<Item = usize> {
        let n = self.endpoints.len();
        let start = self.current.load(Relaxed) % n.max(1);
        (0..n).map(move |i| (start + i) % n)
    }

    async fn open(&self, index: usize, body: &Bytes) -> Result<Incoming, Failure> {
        let mut sender = connect(&self.endpoints[index]).await.map_err(Failure::Elsewhere)?;
        let request = self.request(index, "watch", body).map_err(Failure::Elsewhere)?;
        let response = sender.send_request(request).await.map_err(|e| Failure::Elsewhere(e.to_string()))?;
        let status = response.status();
        if status == StatusCode::OK {
            return Ok(response.into_body());
        }
        let answer = read(response.into_body()).await.map_err(Failure::Elsewhere)?;
        Err(judge(status, &answer))
    }

    /// One call at one endpoint, within [`CALL_TIMEOUT`]; the answer's body if it is a 200.
    async fn attempt(&self, index: usize, call: &'static str, body: &Bytes) -> Result<Bytes, Failure> {
        let exchange = tokio::time::timeout(CALL_TIMEOUT, self.exchange(index, call, body)).await;
        let (status, answer) = exchange.unwrap_or_else(|_| Err(timed_out())).map_err(Failure::Elsewhere)?;
        if status == StatusCode::OK {
            Ok(answer)
        } else {
            Err(judge(status, &answer))
        }
    }

    /// Sends on a kept connection if there is one, else (or if that fails: etcd may have
    /// closed it meanwhile) on a new one.
    async fn exchange(&self, index: usize, call: &str, body: &Bytes) -> Result<(StatusCode, Bytes), String> {
        if let Some(sender) = self.take_idle(index) {
            if let Ok(answer) = self.send(index, sender, call, body).await {
                return Ok(answer);
            }
        }
        let sender = connect(&self.endpoints[index]).await?;
        self.send(index, sender, call, body).await
    }

    async fn send(
        &self,
        index: usize,
        mut sender: SendRequest<Full<Bytes>>,
        call: &str,
        body: &Bytes,
    ) -> Result<(StatusCode, Bytes), String> {
        sender.ready().await.map_err(|e| e.to_string())?;
        let response =
            sender.send_request(self.request(index, call, body)?).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let answer = read(response.into_body()).await?;
        self.keep_idle(index, sender);
        Ok((status, answer))
    }

    fn request(&self, index: usize, call: &str, body: &Bytes) -> Result<Request<Full<Bytes>>, String> {
        Request::post(format!("/v3/{call}"))
            .header(header::HOST, &self.endpoints[index])
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())
    }

    fn take_idle(&self, index: usize) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|kept| !kept.sender.is_closed());
        let at = idle.iter().position(|kept| kept.index == index)?;
        Some(idle.swap_remove(at).sender)
    }

    fn keep_idle(&self, index: usize, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(Idle { index, sender });
        }
    }
}

/// A 5xx may be one member's trouble (no leader, shutting down): try another. A 4xx is
/// the request's fault.
fn judge(status: StatusCode, answer: &[u8]) -> Failure {
    let why = format!("answered {status}: {}", wire::error_message(answer));
    if status.is_client_error() {
        Failure::Refused(why)
    } else {
        Failure::Elsewhere(why)
    }
}

fn timed_out() -> String {
    format!("no answer within {CALL_TIMEOUT:?}")
}

async fn connect(endpoint: &str) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(format!("cannot connect: {error}")),
        Err(_) => return Err(format!("cannot connect within {CONNECT_TIMEOUT:?}")),
    };
    // Small requests and answers: waiting to coalesce them only adds latency.
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("HTTP handshake failed: {e}"))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "etcd connection ended with an error");
        }
    });
    Ok(sender)
}

async fn read(body: Incoming) -> Result<Bytes, String> {
    let collected = Limited::new(body, MAX_ANSWER).collect().await;
    collected.map(|c| c.to_bytes()).map_err(|e| format!("cannot read the answer: {e}"))
}
