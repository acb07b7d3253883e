//! Fan-out of the state manager (seed 001): 1,000 subscribers watching a table of
//! 100 pools × 10 servers. Measures, for a server going down (or up again) at an agent,
//! the time until each subscriber has the new table and until *every* subscriber has it,
//! and the state manager's memory.
//!
//! `cargo bench -p bunsan --bench control_fanout` (add `-- SUBSCRIBERS EVENTS` to change
//! the defaults 1000 and 30). The state manager runs as its own `bunsan control` process;
//! the subscribers share this process, so on a small machine they compete with it for CPU.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bunsan_testkit::{Client, Daemon};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use tokio::sync::watch;

const POOLS: usize = 100;
const SERVERS: usize = 10;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let subscribers = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let events = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(bench(subscribers, events));
}

async fn bench(subscribers: usize, events: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("file:{}", dir.path().join("control.json").display());
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_bunsan"));
    let args = ["control", "--listen", "127.0.0.1:0", "--store", &store, "--report-ttl", "1h"];
    let control = Daemon::start(bin, &args).await.expect("bunsan control starts");
    let addr = control.addr;
    let rss_empty = rss_kib(control.pid());
    register_agent(addr).await;
    report(addr, None).await;
    let rss_table = rss_kib(control.pid());

    let (newest_tx, _) = watch::channel(0u64);
    let arrivals: Arc<Vec<AtomicU64>> = Arc::new((0..subscribers).map(|_| AtomicU64::new(0)).collect());
    let epoch = Instant::now();
    for i in 0..subscribers {
        tokio::spawn(subscriber(addr, i, arrivals.clone(), epoch));
    }
    wait_all_connected(addr, subscribers).await;
    let rss_watched = rss_kib(control.pid());
    drop(newest_tx);

    let mut everyone = Vec::new();
    let mut each = Vec::new();
    for event in 0..events {
        let before = version(addr).await;
        for a in arrivals.iter() {
            a.store(0, SeqCst);
        }
        let sent = epoch.elapsed().as_micros() as u64;
        report(addr, Some(event)).await;
        let all = wait_arrivals(&arrivals, before, Duration::from_secs(30)).await;
        let latencies: Vec<u64> = all.iter().map(|&t| t.saturating_sub(sent)).collect();
        everyone.push(*latencies.iter().max().unwrap_or(&0));
        each.extend(latencies);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    print_results(subscribers, events, &mut each, &mut everyone, [rss_empty, rss_table, rss_watched]);
    drop(control);
}

fn print_results(subscribers: usize, events: usize, each: &mut [u64], everyone: &mut [u64], rss: [u64; 3]) {
    each.sort_unstable();
    everyone.sort_unstable();
    let ms = |v: u64| v as f64 / 1000.0;
    println!("control fan-out: {subscribers} subscribers, {POOLS} pools x {SERVERS} servers, {events} down/up events");
    println!(
        "  one subscriber has the change:  p50 {:.1} ms  p99 {:.1} ms",
        ms(pct(each, 50.0)),
        ms(pct(each, 99.0))
    );
    println!(
        "  every subscriber has it:        p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        ms(pct(everyone, 50.0)),
        ms(pct(everyone, 99.0)),
        ms(*everyone.last().unwrap_or(&0))
    );
    println!("  control RSS: {} MiB empty, {} MiB with the table, {} MiB with {subscribers} watchers ({:.1} KiB per watcher)",
        rss[0] / 1024, rss[1] / 1024, rss[2] / 1024, (rss[2].saturating_sub(rss[1])) as f64 / subscribers as f64);
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    let index = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted.get(index).copied().unwrap_or(0)
}

/// One subscriber: registers, watches, and records when it sees each new version.
async fn subscriber(addr: std::net::SocketAddr, i: usize, arrivals: Arc<Vec<AtomicU64>>, epoch: Instant) {
    let body = format!(r#"{{"name":"sub-{i}","kind":"node","delivery":"change"}}"#);
    let reply = post(addr, "/v1/subscribers", body).await;
    let id: serde_json::Value = serde_json::from_slice(&reply).expect("subscribed");
    let id = id["id"].as_str().expect("an id").to_owned();
    let mut client = Client::http1(addr).await.expect("connect");
    let response = client
        .stream(
            Request::get(format!("/v1/watch?subscriber={id}"))
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("watch");
    let mut body = response.into_body();
    let mut carry = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else { continue };
        carry.extend_from_slice(&data);
        while let Some(end) = carry.iter().position(|&b| b == b'\n') {
            if let Some(v) = line_version(&carry[..end]) {
                arrivals[i].fetch_max(encode(v, epoch.elapsed().as_micros() as u64), SeqCst);
            }
            carry.drain(..=end);
        }
    }
}

/// Arrival records pack the version's low 24 bits above the arrival time (40 bits of µs).
fn encode(version: u64, micros: u64) -> u64 {
    ((version & 0xff_ffff) << 40) | (micros & 0xff_ffff_ffff)
}

/// The `version` of a whole-table or changes line, read from its prefix (a subscriber
/// here need not parse 1,000 rows to know it has the new version).
fn line_version(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line.get(..64.min(line.len()))?).ok()?;
    let rest = text
        .strip_prefix(r#"{"type":"table","version":"#)
        .or_else(|| text.strip_prefix(r#"{"type":"changes","version":"#))?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

async fn wait_arrivals(arrivals: &[AtomicU64], before: u64, limit: Duration) -> Vec<u64> {
    let deadline = Instant::now() + limit;
    loop {
        let seen: Vec<u64> = arrivals.iter().map(|a| a.load(SeqCst)).collect();
        let fresh = |r: &u64| *r != 0 && (r >> 40) != (before & 0xff_ffff);
        if seen.iter().all(fresh) || Instant::now() > deadline {
            return seen.iter().map(|r| r & 0xff_ffff_ffff).collect();
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

async fn wait_all_connected(addr: std::net::SocketAddr, n: usize) {
    for _ in 0..600 {
        let registry: serde_json::Value =
            serde_json::from_slice(&get(addr, "/v1/registry").await).expect("registry");
        let connected = registry["subscribers"]
            .as_array()
            .map_or(0, |s| s.iter().filter(|s| s["connected"] == true).count());
        if connected >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not all {n} subscribers connected");
}

async fn register_agent(addr: std::net::SocketAddr) {
    let servers: Vec<serde_json::Value> = (0..POOLS)
        .flat_map(|p| (0..SERVERS).map(move |s| serde_json::json!({"pool": format!("p{p}"), "server": format!("s{s}"), "addr": format!("10.{p}.0.{s}:80")})))
        .collect();
    let body = serde_json::json!({"agent": "bench", "method": "sockets", "servers": servers});
    post(addr, "/v1/agents", body.to_string()).await;
}

/// Reports every server up with a fixed load, except that event `n` flips one server.
async fn report(addr: std::net::SocketAddr, event: Option<usize>) {
    let flipped = event.map(|n| (n % POOLS, (n / POOLS) % SERVERS, n % 2 == 0));
    let reports: Vec<serde_json::Value> = (0..POOLS)
        .flat_map(|p| (0..SERVERS).map(move |s| (p, s)))
        .map(|(p, s)| {
            let down = flipped.is_some_and(|(fp, fs, down)| fp == p && fs == s && down);
            serde_json::json!({"pool": format!("p{p}"), "server": format!("s{s}"), "load": 10.0, "state": if down { "down" } else { "up" }})
        })
        .collect();
    post(addr, "/v1/reports", serde_json::Value::Array(reports).to_string()).await;
}

async fn version(addr: std::net::SocketAddr) -> u64 {
    let state: serde_json::Value = serde_json::from_slice(&get(addr, "/v1/state").await).expect("state");
    state["version"].as_u64().unwrap_or(0)
}

async fn post(addr: std::net::SocketAddr, path: &str, body: String) -> Bytes {
    let req = Request::post(path).body(Full::new(Bytes::from(body))).expect("request");
    let reply = Client::http1(addr).await.expect("connect").send(req).await.expect("send");
    assert!(reply.status.is_success(), "{path}: {} {}", reply.status, reply.text());
    reply.body
}

async fn get(addr: std::net::SocketAddr, path: &str) -> Bytes {
    Client::http1(addr).await.expect("connect").get(path).await.expect("get").body
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}
