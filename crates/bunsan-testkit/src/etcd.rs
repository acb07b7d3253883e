//! A real single-member etcd (Debian's `etcd-server`) on free loopback ports, for tests
//! of the control plane's scale-out. Killed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use crate::Client;

/// How long etcd may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running etcd.
pub struct Etcd {
    /// Its client address (`etcd://ADDR` for `bunsan control --store`).
    pub addr: SocketAddr,
    child: Child,
    peer: SocketAddr,
    data: PathBuf,
    /// Holds the data directory and etcd's log.
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd on free ports, trying again on fresh ports if one was taken meanwhile.
    /// Panics, saying how to install it, if etcd is not installed (`ETCD` may name it).
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for attempt in 0..5 {
            let (addr, peer) = (free_port(), free_port());
            let data = dir.path().join(format!("data-{attempt}"));
            let mut child = spawn(&data, addr, peer, dir.path());
            if answers(&mut child, addr).await {
                return Self { addr, child, peer, data, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("etcd did not start; its log:\n{}", log_of(dir.path()));
    }

    /// Kills it (its data stays for [`Etcd::restart`]).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same ports and data.
    pub async fn restart(&mut self) {
        self.kill();
        self.child = spawn(&self.data, self.addr, self.peer, self.dir.path());
        assert!(answers(&mut self.child, self.addr).await, "etcd did not restart; its log:\n{}", self.log());
    }

    /// `POST /v3/{call}` straight to etcd's JSON gateway; the answer if it was a 200
    /// within a second.
    pub async fn call(&self, call: &str, body: &Value) -> Option<Value> {
        gateway(self.addr, call, body).await
    }

    /// What etcd logged so far.
    pub fn log(&self) -> String {
        log_of(self.dir.path())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(data: &Path, addr: SocketAddr, peer: SocketAddr, dir: &Path) -> Child {
    let bin = std::env::var_os("ETCD").unwrap_or_else(|| "etcd".into());
    let (client_url, peer_url) = (format!("http://{addr}"), format!("http://{peer}"));
    let log =
        std::fs::OpenOptions::new().create(true).append(true).open(dir.join("etcd.log")).expect("etcd log");
    let spawned = Command::new(&bin)
        .arg("--data-dir")
        .arg(data)
        .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("default={peer_url}")])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("etcd log"))
        .stderr(log)
        .spawn();
    match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "etcd is not installed: this test needs a real etcd; install Debian's etcd-server \
             (apt-get install etcd-server; scripts/test does) or set ETCD to its path"
        ),
        Err(e) => panic!("cannot start {}: {e}", bin.to_string_lossy()),
    }
}

/// Waits until a range read answers; false if etcd exited or took too long.
async fn answers(child: &mut Child, addr: SocketAddr) -> bool {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        if gateway(addr, "kv/range", &serde_json::json!({"key": "AA=="})).await.is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// One gateway call with a one-second limit: a starting etcd may accept a connection
/// long before it answers on it.
async fn gateway(addr: SocketAddr, call: &str, body: &Value) -> Option<Value> {
    let req = Request::post(format!("/v3/{call}")).body(Full::new(Bytes::from(body.to_string()))).ok()?;
    let exchange = async { Client::http1(addr).await.ok()?.send(req).await.ok() };
    let reply = tokio::time::timeout(Duration::from_secs(1), exchange).await.ok()??;
    (reply.status == StatusCode::OK).then(|| serde_json::from_slice(&reply.body).ok()).flatten()
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default()
}

/// A port free a moment ago (bound, then released).
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("bound address")
}
