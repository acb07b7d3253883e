//! Shared by the integration tests: a control instance on an ephemeral port, JSON calls,
//! and a reader for watch streams.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bunsan_control::{Control, Settings, StoreLocation};
use bunsan_proto::control::{Event, ServerKey, Table, TableServer};
use bunsan_testkit::{Client, Reply};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Settings for a loopback instance keeping its store in `dir`.
pub fn settings(dir: &Path) -> Settings {
    let mut settings =
        Settings::new(SocketAddr::from(([127, 0, 0, 1], 0)), StoreLocation::File(dir.join("control.json")));
    settings.heartbeat = Duration::from_millis(200);
    settings
}

/// Starts an instance.
pub async fn start(settings: Settings) -> Control {
    Control::start(settings).await.expect("control starts")
}

/// One request with an optional bearer token and JSON body.
pub async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    call_raw(addr, method, path, token, body.into_bytes()).await
}

/// One request with a raw body.
pub async fn call_raw(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    Client::http1(addr).await.unwrap().send(req).await.unwrap()
}

/// The body as JSON.
pub fn body(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.text()))
}

/// The `error` message of a refused call, checking its status.
pub fn refused(reply: &Reply, status: StatusCode) -> String {
    assert_eq!(reply.status, status, "{}", reply.text());
    body(reply)["error"].as_str().expect("an error message").to_owned()
}

/// Registers agent `a1` watching `app/NAME` for each name.
pub async fn register(addr: SocketAddr, servers: &[&str]) {
    let servers: Vec<Value> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"pool": "app", "server": s, "addr": format!("10.0.0.{}:80", i + 1)}))
        .collect();
    let reply = call(
        addr,
        Method::POST,
        "/v1/agents",
        None,
        Some(json!({"agent": "a1", "method": "sockets", "servers": servers})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

/// Reports `(server, load, state)` for pool `app`.
pub async fn report(addr: SocketAddr, entries: &[(&str, f64, &str)]) {
    let batch: Vec<Value> = entries
        .iter()
        .map(|(s, l, st)| json!({"pool": "app", "server": s, "load": l, "state": st}))
        .collect();
    let reply = call(addr, Method::POST, "/v1/reports", None, Some(Value::Array(batch))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(body(&reply)["accepted"], entries.len());
}

/// Registers a subscriber; returns its id.
pub async fn subscribe(addr: SocketAddr, name: &str, delivery: &str, interval_ms: Option<u64>) -> String {
    let mut subscription = json!({"name": name, "kind": "node", "delivery": delivery});
    if let Some(ms) = interval_ms {
        subscription["interval_ms"] = json!(ms);
    }
    let reply = call(addr, Method::POST, "/v1/subscribers", None, Some(subscription)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    body(&reply)["id"].as_str().unwrap().to_owned()
}

/// `GET /v1/state`.
pub async fn state(addr: SocketAddr) -> Table {
    let reply = call(addr, Method::GET, "/v1/state", None, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    serde_json::from_slice(&reply.body).unwrap()
}

/// An open watch stream, read frame by frame.
pub struct Watch {
    pub status: StatusCode,
    pub content_type: String,
    body: Incoming,
    buffer: Vec<u8>,
    /// The table as a subscriber holds it: whole tables replace it, changes patch it.
    current: Option<Table>,
}

impl Watch {
    /// `GET path` with an optional `Accept`, keeping the body open.
    pub async fn open(addr: SocketAddr, path: &str, accept: Option<&str>) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let mut req = Request::get(path).header("host", addr.to_string());
        if let Some(accept) = accept {
            req = req.header("accept", accept);
        }
        let response = sender.send_request(req.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        Self {
            status: response.status(),
            content_type,
            body: response.into_body(),
            buffer: Vec::new(),
            current: None,
        }
    }

    /// The next chunk up to `separator` (exclusive), waiting at most [`PATIENCE`].
    pub async fn next_raw(&mut self, separator: &[u8]) -> String {
        loop {
            if let Some(at) = self.buffer.windows(separator.len()).position(|w| w == separator) {
                let chunk: Vec<u8> = self.buffer.drain(..at + separator.len()).take(at).collect();
                return String::from_utf8(chunk).unwrap();
            }
            let frame =
                tokio::time::timeout(PATIENCE, self.body.frame()).await.expect("the stream sends in time");
            let frame = frame.expect("the stream is still open").unwrap();
            if let Ok(data) = frame.into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }

    /// The next JSON-lines event.
    pub async fn next(&mut self) -> Event {
        let line = self.next_raw(b"\n").await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    /// The table after the next whole table or change, skipping heartbeats — what a
    /// subscriber holds. A change must apply to the version held.
    pub async fn next_table(&mut self) -> Table {
        loop {
            match self.next().await {
                Event::Table(table) => self.current = Some(table),
                Event::Changes { version, from, servers, removed } => {
                    self.patch(version, from, servers, removed)
                }
                Event::Heartbeat { .. } => continue,
            }
            return self.current.clone().expect("a table");
        }
    }

    fn patch(&mut self, version: u64, from: u64, servers: Vec<TableServer>, removed: Vec<ServerKey>) {
        let table = self.current.as_mut().expect("changes only after a whole table");
        assert_eq!(table.version, from, "changes must apply to the version the subscriber holds");
        let key = |r: &TableServer| (r.pool.clone(), r.server.clone());
        let gone: Vec<(String, String)> = removed.into_iter().map(|k| (k.pool, k.server)).collect();
        let changed: Vec<(String, String)> = servers.iter().map(key).collect();
        table.servers.retain(|r| !gone.contains(&key(r)) && !changed.contains(&key(r)));
        table.servers.extend(servers);
        table.servers.sort_by_key(key);
        table.version = version;
    }

    /// Whether the stream ended (within [`PATIENCE`]).
    pub async fn ended(&mut self) -> bool {
        loop {
            match tokio::time::timeout(PATIENCE, self.body.frame()).await {
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// The row of `app/server`.
pub fn row<'a>(table: &'a Table, server: &str) -> &'a bunsan_proto::control::TableServer {
    table.servers.iter().find(|r| r.pool == "app" && r.server == server).expect("the row exists")
}
