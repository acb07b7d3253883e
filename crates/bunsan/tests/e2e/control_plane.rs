//! Seed 001 end to end: agents report, the state manager keeps the table and pins,
//! nodes route by it — and keep routing when it dies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bunsan_testkit::{get, Backend, Bunsan, Client, Daemon};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::{backends, bin, run};

/// Starts `bunsan control` on `listen` with a file store in `dir`.
async fn control(listen: &str, store: &std::path::Path) -> Daemon {
    let store = format!("file:{}", store.display());
    let args = ["control", "--listen", listen, "--store", &store, "--report-ttl", "60s"];
    Daemon::start(bin(), &args).await.expect("bunsan control starts")
}

/// A node config: one listener, pool `app` with `algorithm` over `servers`
/// (backend, capacity), subscribed to `control` with `extra` keys in `[control]`.
fn node_config(servers: &[(&Backend, u32)], algorithm: &str, control: SocketAddr, extra: &str) -> String {
    let mut text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[control]\nurl = \"http://{control}\"\n{extra}\n\n\
         [[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\npool = \"app\"\n\n\
         [[pool]]\nname = \"app\"\nalgorithm = \"{algorithm}\"\n"
    );
    for (backend, capacity) in servers {
        let (name, addr) = (&backend.name, backend.addr);
        text.push_str(&format!(
            "\n[[pool.server]]\nname = \"{name}\"\naddr = \"{addr}\"\ncapacity = {capacity}\n"
        ));
    }
    text
}

/// Plays an agent: registers the servers, then reports `(server, load, up)` once.
async fn report(control: SocketAddr, servers: &[(&Backend, f64, bool)]) {
    let watched: Vec<serde_json::Value> = servers
        .iter()
        .map(|(b, _, _)| serde_json::json!({"pool": "app", "server": b.name, "addr": b.addr.to_string()}))
        .collect();
    let registration = serde_json::json!({"agent": "test-agent", "method": "scrape", "servers": watched});
    post_json(control, "/v1/agents", &registration).await;
    let reports: Vec<serde_json::Value> = servers
        .iter()
        .map(|(b, load, up)| {
            serde_json::json!({"pool": "app", "server": b.name, "load": load, "state": if *up { "up" } else { "down" }})
        })
        .collect();
    post_json(control, "/v1/reports", &serde_json::Value::Array(reports)).await;
}

async fn post_json(addr: SocketAddr, path: &str, body: &serde_json::Value) {
    let req = Request::post(path).body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let reply = Client::http1(addr).await.unwrap().send(req).await.unwrap();
    assert!(reply.status.is_success(), "{path}: {} {}", reply.status, reply.text());
}

/// The node's view of its servers, by name.
async fn servers_of(node: &Bunsan) -> HashMap<String, serde_json::Value> {
    let pool: serde_json::Value =
        serde_json::from_str(&get(node.admin(), "/v1/pools/app").await.unwrap().text()).unwrap();
    let servers = pool["servers"].as_array().unwrap().iter();
    servers.map(|s| (s["name"].as_str().unwrap().to_owned(), s.clone())).collect()
}

/// Polls `node` for up to `within` until `check` holds for its servers.
async fn until(
    node: &Bunsan,
    within: Duration,
    check: impl Fn(&HashMap<String, serde_json::Value>) -> bool,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check(&servers_of(node).await) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Which servers `n` sequential requests to `node` went to.
async fn served(node: &Bunsan, n: usize) -> HashMap<String, usize> {
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let reply = client.get("/").await.unwrap();
        assert_eq!(reply.status, 200);
        *counts.entry(reply.header("x-backend").unwrap().to_owned()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001s_own_example_sends_new_work_to_host1() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = control("127.0.0.1:0", &dir.path().join("control.json")).await;
    let b = backends(&["host1", "host2", "host3"]).await;
    b[2].stop();
    let config = node_config(&[(&b[0], 2), (&b[1], 1), (&b[2], 2)], "least-load", ctl.addr, "");
    let node = Bunsan::start(bin(), &config).await.unwrap();
    // Loads 20, 15 and 0; the third stopped: relative loads 20÷2 = 10 and 15÷1 = 15.
    report(ctl.addr, &[(&b[0], 20.0, true), (&b[1], 15.0, true), (&b[2], 0.0, false)]).await;
    let applied = until(&node, Duration::from_secs(5), |s| {
        s["host1"]["load_source"] == "control" && s["host3"]["state"] == "down"
    });
    assert!(applied.await, "the node did not receive the table: {:?}", servers_of(&node).await);
    assert_eq!(servers_of(&node).await["host1"]["load"], 20.0);
    let counts = served(&node, 30).await;
    assert_eq!(counts.get("host1"), Some(&30), "new work must go to host1: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_stops_traffic_on_every_node_survives_a_control_restart_and_release_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("control.json");
    let mut ctl = control("127.0.0.1:0", &store).await;
    let url = format!("http://{}", ctl.addr);
    let b = backends(&["host1", "host2", "host3"]).await;
    let servers = [(&b[0], 1), (&b[1], 1), (&b[2], 1)];
    let node_a = Bunsan::start(bin(), &node_config(&servers, "round-robin", ctl.addr, "")).await.unwrap();
    let node_b = Bunsan::start(bin(), &node_config(&servers, "round-robin", ctl.addr, "")).await.unwrap();

    let out = run(&["ctl", "control", "--control", &url, "pin", "app/host2", "maint"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for node in [&node_a, &node_b] {
        let pinned = until(node, Duration::from_secs(1), |s| s["host2"]["state"] == "maint");
        assert!(pinned.await, "a node still sends work to host2 a second after the pin");
        assert_eq!(served(node, 30).await.get("host2"), None);
    }

    // The pin is stored: a restarted state manager still has it.
    let addr = ctl.addr.to_string();
    ctl.kill9();
    let ctl = control(&addr, &store).await;
    let out = run(&["ctl", "--json", "control", "--control", &url, "state"]).await;
    let table: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let host2 = table["servers"].as_array().unwrap().iter().find(|r| r["server"] == "host2").cloned();
    assert_eq!(host2.as_ref().map(|r| &r["pinned"]), Some(&serde_json::Value::Bool(true)), "{table}");
    assert!(until(&node_a, Duration::from_secs(15), |s| s["host2"]["state"] == "maint").await);

    let out = run(&["ctl", "control", "--control", &url, "unpin", "app/host2"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for node in [&node_a, &node_b] {
        // The nodes reconnect to the restarted state manager with backoff.
        let released = until(node, Duration::from_secs(15), |s| s["host2"]["state"] == "ready");
        assert!(released.await, "release did not reach a node");
        assert_eq!(served(node, 30).await.get("host2"), Some(&10));
    }
    drop(ctl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_control_leaves_nodes_on_their_last_table_until_it_goes_stale() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctl = control("127.0.0.1:0", &dir.path().join("control.json")).await;
    let b = backends(&["host1", "host2"]).await;
    let config = node_config(&[(&b[0], 1), (&b[1], 1)], "least-load", ctl.addr, "stale_after = \"3s\"");
    let node = Bunsan::start(bin(), &config).await.unwrap();
    report(ctl.addr, &[(&b[0], 0.0, true), (&b[1], 1000.0, true)]).await;
    assert!(until(&node, Duration::from_secs(5), |s| s["host2"]["load"] == 1000.0).await);

    ctl.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = served(&node, 20).await;
    assert_eq!(counts.get("host1"), Some(&20), "the last table still routes everything to host1: {counts:?}");

    // Past stale_after the node's own observation takes over: both servers get work.
    let stale = until(&node, Duration::from_secs(10), |s| s["host2"]["load_source"] == "node");
    assert!(stale.await, "reported loads were never dropped");
    let counts = served(&node, 40).await;
    assert!(counts.get("host2").is_some_and(|&n| n > 0), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_agent_reports_a_stopped_server_and_nodes_route_around_it() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = control("127.0.0.1:0", &dir.path().join("control.json")).await;
    let b = backends(&["host1", "host2"]).await;
    let control_url = format!("http://{}", ctl.addr);
    let mut agent = tokio::process::Command::new(bin())
        .args([
            "agent",
            "--control",
            &control_url,
            "--name",
            "agent-1",
            "--interval",
            "200ms",
            "--probe",
            "tcp",
        ])
        .args([
            "--server",
            &format!("app/host1={}", b[0].addr),
            "--server",
            &format!("app/host2={}", b[1].addr),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let config = node_config(&[(&b[0], 1), (&b[1], 1)], "round-robin", ctl.addr, "");
    let node = Bunsan::start(bin(), &config).await.unwrap();
    let reported = until(&node, Duration::from_secs(10), |s| s["host1"]["load_source"] == "control");
    assert!(reported.await, "the agent's reports never reached the node");

    b[1].stop();
    let down = until(&node, Duration::from_secs(10), |s| s["host2"]["state"] == "down");
    assert!(down.await, "the agent's down report never reached the node");
    assert_eq!(served(&node, 20).await.get("host1"), Some(&20));
    let _ = agent.start_kill();
}
