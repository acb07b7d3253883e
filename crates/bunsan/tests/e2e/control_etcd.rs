//! Scale-out end to end: two `bunsan control` processes sharing one real etcd
//! (Debian's `etcd-server`, started here on ephemeral ports), one node subscribed to both.
//! Kill the instance the node follows; the node moves to the other and carries on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bunsan_testkit::{get, Bunsan, Client, Daemon, Etcd};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;

use crate::{backends, bin, http_config};

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
