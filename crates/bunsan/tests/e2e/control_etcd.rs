//! Scale-out end to end: two `bunsan control` processes sharing one real etcd
//! (Debian's `etcd-server`, started here on ephemeral ports), one node subscribed to both.
//! Kill the instance the node follows; the node moves to the other and carries on.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bunsan_testkit::{get, Bunsan, Client, Daemon};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;

use crate::{backends, bin, http_config};

/// A single-member etcd on free loopback ports, killed when dropped.
struct Etcd {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd, on fresh ports again if one was taken meanwhile.
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for attempt in 0..5 {
            let (addr, peer) = (free_port(), free_port());
            let mut child = spawn_etcd(&dir.path().join(format!("data-{attempt}")), addr, peer, dir.path());
            if answers(&mut child, addr).await {
                return Self { child, addr, _dir: dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = std::fs::read_to_string(dir.path().join("etcd.log")).unwrap_or_default();
        panic!("etcd did not start; its log:\n{log}");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_etcd(data: &Path, addr: SocketAddr, peer: SocketAddr, dir: &Path) -> Child {
    let (client_url, peer_url) = (format!("http://{addr}"), format!("http://{peer}"));
    let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
    let spawned = Command::new(std::env::var_os("ETCD").unwrap_or_else(|| "etcd".into()))
        .arg("--data-dir")
        .arg(data)
        .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("default={peer_url}")])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn();
    match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "etcd is not installed: this test needs a real etcd; install Debian's etcd-server \
             (apt-get install etcd-server) or set ETCD to its path"
        ),
        Err(e) => panic!("cannot start etcd: {e}"),
    }
}

/// Waits until etcd answers a range read; false if it exited or took too long.
async fn answers(child: &mut Child, addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        let req = Request::post("/v3/kv/range").body(Full::new(Bytes::from(r#"{"key":"AA=="}"#))).unwrap();
        // A starting etcd may accept a connection long before it answers on it.
        let exchange = async { Client::http1(addr).await.ok()?.send(req).await.ok() };
        if let Ok(Some(reply)) = tokio::time::timeout(Duration::from_secs(1), exchange).await {
            if reply.status == 200 {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// `bunsan control` on a free port, keeping its state in `etcd`.
async fn control(etcd: &Etcd) -> Daemon {
    let store = format!("etcd://{}", etcd.addr);
    let args = ["control", "--listen", "127.0.0.1:0", "--store", &store, "--report-ttl", "5s"];
    Daemon::start(bin(), &args).await.expect("bunsan control starts")
}

/// A pin call (`PUT` with a state, or `DELETE`) at a control instance.
async fn pin(control: SocketAddr, method: Method, body: &str) {
    let req = Request::builder()
        .method(method)
        .uri("/v1/pins/app/host2")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let reply = Client::http1(control).await.unwrap().send(req).await.unwrap();
    assert!(reply.status.is_success(), "{} {}", reply.status, reply.text());
}

/// The node's state of `server`, as its admin API shows it.
async fn state_of(node: &Bunsan, server: &str) -> String {
    let pool: serde_json::Value =
        serde_json::from_str(&get(node.admin(), "/v1/pools/app").await.unwrap().text()).unwrap();
    let servers = pool["servers"].as_array().cloned().unwrap_or_default();
    let found = servers.iter().find(|s| s["name"] == server);
    found.and_then(|s| s["state"].as_str()).unwrap_or("").to_owned()
}

/// Polls until the node shows `server` in `state`, for up to `within`.
async fn shows(node: &Bunsan, server: &str, state: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if state_of(node, server).await == state {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Requests through the node every 20 ms until stopped, counting outcomes.
#[derive(Default)]
struct Traffic {
    stop: AtomicBool,
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Traffic {
    fn start(listener: SocketAddr) -> Arc<Self> {
        let traffic = Arc::new(Self::default());
        let this = traffic.clone();
        tokio::spawn(async move {
            while !this.stop.load(Relaxed) {
                match get(listener, "/").await {
                    Ok(reply) if reply.status == 200 => this.ok.fetch_add(1, Relaxed),
                    _ => this.failed.fetch_add(1, Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        traffic
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controls_on_one_etcd_a_subscriber_outlives_the_one_it_followed() {
    let etcd = Etcd::start().await;
    let mut c1 = control(&etcd).await;
    let c2 = control(&etcd).await;
    let b = backends(&["host1", "host2"]).await;
    let control = format!(
        "\n[control]\nurl = [\"http://{}\", \"http://{}\"]\nstale_after = \"30s\"\n",
        c1.addr, c2.addr
    );
    let config = http_config(&[(&b[0], 1), (&b[1], 1)], "algorithm = \"round-robin\"") + &control;
    let node = Bunsan::start(bin(), &config).await.unwrap();
    let traffic = Traffic::start(node.listener("web"));

    // The node follows c1; the pin is made at c2 and reaches it through etcd.
    pin(c2.addr, Method::PUT, r#"{"state":"maint"}"#).await;
    let pinned = shows(&node, "host2", "maint", Duration::from_secs(5)).await;
    assert!(pinned, "a pin made at c2 did not reach the node through c1: {}", state_of(&node, "host2").await);

    c1.kill9();
    pin(c2.addr, Method::DELETE, "").await;
    // The node's reconnect backoff is at most 10 s.
    let released = shows(&node, "host2", "ready", Duration::from_secs(15)).await;
    assert!(released, "the node did not move to c2: host2 is {:?}", state_of(&node, "host2").await);

    let before = b[1].hits();
    tokio::time::sleep(Duration::from_millis(500)).await;
    traffic.stop.store(true, Relaxed);
    assert!(b[1].hits() > before, "host2 gets work again once released");
    let (ok, failed) = (traffic.ok.load(Relaxed), traffic.failed.load(Relaxed));
    assert!(ok > 10 && failed == 0, "requests through the node: {ok} served, {failed} failed");
}
