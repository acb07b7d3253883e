//! Failover of in-flight work and health checking (seed 002): a dying, resetting or
//! hanging server costs clients no safe request, unsafe requests are never replayed,
//! sessions follow the request, and the connection table is re-associated.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bunsan_testkit::faulty::{Hanger, Resetter};
use bunsan_testkit::process::BackendProcess;
use bunsan_testkit::{get, Backend, Bunsan, Client};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::{backends, bin, run};

/// A pool config over `servers` (name, addr) with `pool_extra` keys.
fn config(servers: &[(&str, std::net::SocketAddr)], pool_extra: &str) -> String {
    let mut text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\npool = \"app\"\n\n\
         [[pool]]\nname = \"app\"\n{pool_extra}\n"
    );
    for (name, addr) in servers {
        text.push_str(&format!("\n[[pool.server]]\nname = \"{name}\"\naddr = \"{addr}\"\n"));
    }
    text
}

async fn state_of(node: &Bunsan, server: &str) -> String {
    let pool: serde_json::Value =
        serde_json::from_str(&get(node.admin(), "/v1/pools/app").await.unwrap().text()).unwrap();
    let servers = pool["servers"].as_array().unwrap();
    servers.iter().find(|s| s["name"] == server).map(|s| s["state"].as_str().unwrap().to_owned()).unwrap()
}

/// Polls the admin API for up to 5 s until `server` is in `state`.
async fn reaches_state(node: &Bunsan, server: &str, state: &str) -> bool {
    for _ in 0..50 {
        if state_of(node, server).await == state {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn post(path: &str, body: &'static [u8]) -> Request<Full<Bytes>> {
    Request::post(path).body(Full::new(Bytes::from_static(body))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_costs_clients_nothing_and_takes_traffic_again_after_rise() {
    let mut procs = Vec::new();
    for name in ["host1", "host2", "host3"] {
        procs.push(BackendProcess::start(bin(), name).await);
    }
    let servers: Vec<(&str, _)> = procs.iter().map(|p| (p.name.as_str(), p.addr)).collect();
    let health = "algorithm = \"round-robin\"\n\
                  health = { kind = \"http\", path = \"/healthz\", interval = \"200ms\", timeout = \"200ms\", fall = 2, rise = 2 }";
    let node = Bunsan::start(bin(), &config(&servers, health)).await.unwrap();
    let addr = node.listener("web");

    // At least 200 requests a second for 30 s from 4 keep-alive clients.
    let failures = Arc::new(AtomicU64::new(0));
    let served: Arc<std::sync::Mutex<Vec<(Instant, String)>>> = Arc::default();
    let stop_at = Instant::now() + Duration::from_secs(30);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (failures, served) = (failures.clone(), served.clone());
        clients.push(tokio::spawn(async move {
            let mut client = Client::http1(addr).await.unwrap();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while Instant::now() < stop_at {
                tick.tick().await;
                match client.get("/work").await {
                    Ok(reply) if reply.status == 200 => {
                        let name = reply.header("x-backend").unwrap_or("?").to_owned();
                        served.lock().unwrap().push((Instant::now(), name));
                    }
                    _ => {
                        failures.fetch_add(1, SeqCst);
                        client = Client::http1(addr).await.unwrap();
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    let victim_addr = procs[1].addr;
    procs[1].kill9();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(state_of(&node, "host2").await, "down", "health checks should have marked host2 down");
    let restarted_at = Instant::now();
    procs[1] = BackendProcess::start_on(bin(), "host2", victim_addr).await;
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(state_of(&node, "host2").await, "ready");
    let served = served.lock().unwrap().clone();
    let total = served.len();
    assert!(total >= 200 * 30, "only {total} requests in 30 s");
    assert_eq!(failures.load(SeqCst), 0, "clients saw failures while host2 died");
    let back = served.iter().filter(|(at, name)| *at > restarted_at && name == "host2").count();
    assert!(back > 100, "the restarted server took {back} requests after it came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resetting_server_fails_a_post_once_and_gets_go_elsewhere() {
    let resetter = Resetter::start().await;
    let b = backends(&["host1", "host2"]).await;
    let servers = [("resetter", resetter.addr), ("host1", b[0].addr), ("host2", b[1].addr)];
    let extra = "algorithm = \"round-robin\"\noutlier = { consecutive_failures = 0 }";
    let node = Bunsan::start(bin(), &config(&servers, extra)).await.unwrap();
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    for _ in 0..30 {
        let reply = client.get("/read").await.unwrap();
        assert_eq!(reply.status, 200, "a GET that hit the resetting server must be replayed elsewhere");
    }
    assert!(resetter.requests() >= 10, "the resetting server should have been tried");

    let before = resetter.requests();
    let mut bad_gateways = 0;
    for _ in 0..6 {
        let mut client = Client::http1(node.listener("web")).await.unwrap();
        let reply = client.send(post("/order", b"one order, please")).await.unwrap();
        match reply.status.as_u16() {
            200 => {}
            502 => bad_gateways += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    let posts_at_resetter = resetter.requests() - before;
    let posts_at_backends: usize =
        b.iter().map(|s| s.seen().iter().filter(|r| r.method == http::Method::POST).count()).sum();
    assert_eq!(bad_gateways, 2, "one POST in three lands on the resetting server");
    assert_eq!(posts_at_resetter, 2);
    assert_eq!(posts_at_backends, 4, "a POST that reached the resetting server must not be replayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_server_costs_latency_not_errors() {
    let hanger = Hanger::start().await;
    let b = backends(&["host1", "host2"]).await;
    let servers = [("hanger", hanger.addr), ("host1", b[0].addr), ("host2", b[1].addr)];
    let extra =
        "algorithm = \"round-robin\"\nresponse_timeout = \"300ms\"\noutlier = { consecutive_failures = 0 }";
    let node = Bunsan::start(bin(), &config(&servers, extra)).await.unwrap();
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    for _ in 0..12 {
        assert_eq!(client.get("/").await.unwrap().status, 200);
    }
    assert!(hanger.requests() >= 4, "the hanging server should have been tried");
    // Not idempotent: a POST that timed out on the hanging server is answered, not replayed.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let mut client = Client::http1(node.listener("web")).await.unwrap();
        statuses.push(client.send(post("/pay", b"10 EUR")).await.unwrap().status.as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 504]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_buffered_bodies_are_replayed() {
    let resetter = Resetter::start().await;
    let b = backends(&["host1"]).await;
    let servers = [("resetter", resetter.addr), ("host1", b[0].addr)];
    let extra =
        "algorithm = \"round-robin\"\noutlier = { consecutive_failures = 0 }\nretry = { buffer = \"1KiB\" }";
    let node = Bunsan::start(bin(), &config(&servers, extra)).await.unwrap();
    let small = vec![b'x'; 512];
    let large = vec![b'y'; 4096];
    let mut results: HashMap<usize, Vec<u16>> = HashMap::new();
    for body in [&small, &large, &small, &large] {
        let mut client = Client::http1(node.listener("web")).await.unwrap();
        let req = Request::put("/doc").body(Full::new(Bytes::from(body.clone()))).unwrap();
        results.entry(body.len()).or_default().push(client.send(req).await.unwrap().status.as_u16());
    }
    assert_eq!(results[&512], [200, 200], "a PUT within retry.buffer is replayed");
    assert!(
        results[&4096].contains(&502),
        "a PUT over retry.buffer that hit the resetting server is not replayed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_session_follows_its_dead_server_to_a_second_one() {
    let b = backends(&["host1", "host2", "host3"]).await;
    let servers: Vec<(&str, _)> = b.iter().map(|s| (s.name.as_str(), s.addr)).collect();
    let extra = "algorithm = \"round-robin\"\naffinity = { mode = \"cookie\" }";
    let config = format!(
        "[node]\nsession_key = \"failover-test-session-key-0123456789\"\n\n{}",
        config(&servers, extra)
    );
    let node = Bunsan::start(bin(), &config).await.unwrap();
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    let first = client.get("/").await.unwrap();
    let cookie = first.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let home = first.header("x-backend").unwrap().to_owned();
    b.iter().find(|s| s.name == home).unwrap().stop();

    let with_cookie = |c: &str| Request::get("/").header("cookie", c).body(Full::new(Bytes::new())).unwrap();
    let moved = client.send(with_cookie(&cookie)).await.unwrap();
    assert_eq!(moved.status, 200, "the session's request must survive its server");
    let second = moved.header("x-backend").unwrap().to_owned();
    assert_ne!(second, home);
    let refreshed =
        moved.header("set-cookie").expect("a refreshed identifier").split(';').next().unwrap().to_owned();
    assert_ne!(refreshed, cookie);
    for _ in 0..5 {
        let reply = client.send(with_cookie(&refreshed)).await.unwrap();
        assert_eq!(reply.header("x-backend"), Some(second.as_str()));
        assert_eq!(reply.header("set-cookie"), None);
    }
    let sessions: serde_json::Value =
        serde_json::from_str(&get(node.admin(), "/v1/sessions").await.unwrap().text()).unwrap();
    assert_eq!(sessions["pools"][0]["active"], 1, "the session was re-bound, not replaced");
    let metrics = get(node.admin(), "/metrics").await.unwrap().text();
    assert!(metrics.contains("bunsan_sessions_moved_total{pool=\"app\"} 1"), "{metrics}");

    // The client's connection stayed open and its entry was re-associated, not deleted.
    let table: serde_json::Value =
        serde_json::from_str(&get(node.admin(), "/v1/connections").await.unwrap().text()).unwrap();
    let mine =
        table["sample"].as_array().unwrap().iter().find(|c| c["requests"].as_u64() >= Some(7)).unwrap();
    assert_eq!(mine["server"], second.as_str());
    assert_eq!(mine["failovers"], 1);
    let out = run(&["ctl", "--admin", &node.admin_url(), "connections"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(&format!("app/{second}")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_take_a_server_down_after_fall_and_back_after_rise() {
    let b = backends(&["host1", "host2"]).await;
    let victim = b[1].addr;
    let servers: Vec<(&str, _)> = b.iter().map(|s| (s.name.as_str(), s.addr)).collect();
    let health = "health = { kind = \"tcp\", interval = \"100ms\", timeout = \"100ms\", fall = 3, rise = 2 }";
    let node = Bunsan::start(bin(), &config(&servers, health)).await.unwrap();
    b[1].stop();
    assert!(reaches_state(&node, "host2", "down").await, "host2 was not marked down");
    for _ in 0..20 {
        assert_eq!(get(node.listener("web"), "/").await.unwrap().header("x-backend"), Some("host1"));
    }
    let _back = Backend::start_on("host2", victim).await;
    assert!(reaches_state(&node, "host2", "ready").await, "host2 did not come back after rise checks");
    let metrics = get(node.admin(), "/metrics").await.unwrap().text();
    assert!(
        metrics.contains("bunsan_server_state_changes_total{pool=\"app\",server=\"host2\"} 2"),
        "{metrics}"
    );
}
