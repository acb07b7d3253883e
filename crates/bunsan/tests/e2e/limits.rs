//! Limits against hostile clients: slowloris, idle and per-address connections, listener
//! connection slots, oversized requests and responses, and HTTP/2 rapid reset.

use std::time::{Duration, Instant};

use bunsan_testkit::{Backend, Bunsan, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::hostile::exchange;
use crate::hostile::h2::frame;
use crate::{backends, bin, http_config};

/// A node with one backend whose listener has `limits = { LIMITS }`.
pub async fn node_with(backend: &Backend, limits: &str, pool_extra: &str) -> Bunsan {
    let config = http_config(&[(backend, 1)], pool_extra).replace(
        "pool = \"app\"\n\n[[pool]]",
        &format!("pool = \"app\"\nlimits = {{ {limits} }}\n\n[[pool]]"),
    );
    Bunsan::start(bin(), &config).await.unwrap()
}

/// Reads until the peer closes; returns how long that took, or `None` within `wait`.
pub async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(wait.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_cut_at_the_head_deadline_while_others_are_served() {
    let b = backends(&["steady"]).await;
    let node = node_with(&b[0], "head_timeout = \"1s\"", "").await;
    let mut slow = TcpStream::connect(node.listener("web")).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let dripping = tokio::spawn(async move {
        // One header byte every 200 ms: never a complete head.
        for _ in 0..25 {
            if slow.write_all(b"X").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        closed_within(&mut slow, Duration::from_secs(1)).await
    });
    for _ in 0..5 {
        let reply = bunsan_testkit::get(node.listener("web"), "/").await.unwrap();
        assert_eq!(reply.status.as_u16(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dripping.await.unwrap().is_some(), "the slow client was not cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let b = backends(&["idle"]).await;
    let node = node_with(&b[0], "idle_timeout = \"1s\"", "").await;
    let mut conn = TcpStream::connect(node.listener("web")).await.unwrap();
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let closed = closed_within(&mut conn, Duration::from_secs(5)).await.expect("closed");
    assert!(closed >= Duration::from_millis(900), "closed after {closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_over_its_connection_limit_is_refused_and_others_are_not() {
    let b = backends(&["counted"]).await;
    let node = node_with(&b[0], "max_connections_per_client = 2", "").await;
    let first = TcpStream::connect(node.listener("web")).await.unwrap();
    let _second = TcpStream::connect(node.listener("web")).await.unwrap();
    let mut third = TcpStream::connect(node.listener("web")).await.unwrap();
    assert!(closed_within(&mut third, Duration::from_secs(2)).await.is_some(), "the third was kept");
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reply = bunsan_testkit::get(node.listener("web"), "/").await.unwrap();
    assert_eq!(reply.status.as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_makes_new_connections_wait_for_a_free_slot() {
    let b = backends(&["slots"]).await;
    let node = node_with(&b[0], "max_connections = 2", "").await;
    let first = TcpStream::connect(node.listener("web")).await.unwrap();
    let _second = TcpStream::connect(node.listener("web")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let addr = node.listener("web");
    let waiting = tokio::spawn(async move {
        let request = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        exchange(addr, request, Duration::from_secs(5)).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "served although the listener was full");
    drop(first);
    let seen = waiting.await.unwrap();
    assert_eq!(seen.statuses, [200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_targets_heads_and_bodies_are_refused_before_the_server() {
    let b = backends(&["guarded"]).await;
    let node = node_with(
        &b[0],
        "uri_bytes = \"1KiB\", header_bytes = \"16KiB\", header_count = 20",
        "max_body = \"1KiB\"",
    )
    .await;
    let addr = node.listener("web");
    let quiet = Duration::from_millis(500);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(2000));
    assert_eq!(exchange(addr, long_target.as_bytes(), quiet).await.statuses, [414]);
    let big_head = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "b".repeat(20_000));
    assert_eq!(exchange(addr, big_head.as_bytes(), quiet).await.statuses, [431]);
    let many: String = (0..30).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    assert_eq!(exchange(addr, many.as_bytes(), quiet).await.statuses, [431]);
    let declared =
        format!("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n{}", "c".repeat(2000));
    assert_eq!(exchange(addr, declared.as_bytes(), quiet).await.statuses, [413]);
    assert_eq!(b[0].hits(), 0, "nothing oversized reached the server");
    let chunk = "d".repeat(800);
    let chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    let seen = exchange(addr, chunked.as_bytes(), quiet).await;
    assert_eq!(seen.statuses, [413], "{}", seen.text);
    let fine = "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    assert_eq!(exchange(addr, fine.as_bytes(), quiet).await.statuses, [200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sending_an_oversized_head_gets_a_502() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nX-Huge: {}\r\nContent-Length: 2\r\n\r\nok",
                    "h".repeat(40_000)
                );
                let _ = stream.write_all(head.as_bytes()).await;
            });
        }
    });
    let config = format!(
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\npool = \"app\"\n\n\
         [[pool]]\nname = \"app\"\nresponse_header_bytes = \"16KiB\"\nretry = {{ attempts = 1 }}\n\n\
         [[pool.server]]\nname = \"huge\"\naddr = \"{server}\"\n"
    );
    let node = Bunsan::start(bin(), &config).await.unwrap();
    let reply = bunsan_testkit::get(node.listener("web"), "/").await.unwrap();
    assert_eq!(reply.status.as_u16(), 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_rapid_reset_client_gets_goaway() {
    let b = backends(&["reset"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1)], "")).await.unwrap();
    let mut conn = TcpStream::connect(node.listener("web")).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    // GET / for authority "a" (HPACK: indexed :method GET, :scheme http, :path /, and a
    // literal :authority), then RST_STREAM CANCEL at once — 2,000 times.
    let block = [0x82, 0x86, 0x84, 0x01, 0x01, b'a'];
    for i in 0..2000u32 {
        let stream = 2 * i + 1;
        out.extend(frame(0x1, 0x5, stream, &block));
        out.extend(frame(0x3, 0, stream, &8u32.to_be_bytes()));
    }
    let _ = conn.write_all(&out).await;
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 16384];
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
    assert!(goaway(&received), "no GOAWAY among {} bytes", received.len());
    assert!(b[0].hits() < 2000, "every reset stream reached the server: {}", b[0].hits());
    // The node still serves everyone else.
    let mut client = Client::h2c(node.listener("web")).await.unwrap();
    assert_eq!(client.get("/").await.unwrap().status.as_u16(), 200);
}

/// Whether the server's frames include a GOAWAY.
fn goaway(mut bytes: &[u8]) -> bool {
    while bytes.len() >= 9 {
        let len = (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2]);
        if bytes[3] == 0x7 {
            return true;
        }
        bytes = bytes.get(9 + len..).unwrap_or_default();
    }
    false
}

/// The node's proportional set size in KiB (`/proc/PID/smaps_rollup`).
pub fn pss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Raises this process's descriptor limit to its hard limit (the node inherits it; both
/// ends need a descriptor per connection) and returns how many of `wanted` connections
/// fit, at least 1,000.
pub fn connections_allowed(wanted: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    let count = wanted.min(hard.saturating_sub(500) as usize);
    assert!(count >= 1000, "RLIMIT_NOFILE {hard} is too low for this test");
    count
}

/// Memory a connection that sent part of a request head and went quiet may cost the node,
/// at most (README, "Limits and hostile input").
const IDLE_GARBAGE_BOUND_KIB: u64 = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_garbage_connections_stay_under_the_memory_bound() {
    let count = connections_allowed(10_000);
    let b = backends(&["quiet"]).await;
    let node = node_with(&b[0], "head_timeout = \"60s\", idle_timeout = \"60s\"", "").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = pss_kib(node.pid());
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        let mut stream = TcpStream::connect(node.listener("web")).await.unwrap();
        let garbage = format!("GET /{i} HTTP/1.1\r\nX-Garbage: {}", "g".repeat(100));
        stream.write_all(garbage.as_bytes()).await.unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = pss_kib(node.pid());
    let per_connection = after.saturating_sub(before) as f64 / count as f64;
    eprintln!("{count} idle garbage connections: {before} KiB -> {after} KiB, {per_connection:.2} KiB each");
    assert!(per_connection <= IDLE_GARBAGE_BOUND_KIB as f64, "{per_connection:.2} KiB per connection");
    // Still serving.
    let reply = bunsan_testkit::get(node.listener("web"), "/").await.unwrap();
    assert_eq!(reply.status.as_u16(), 200);
    drop(held);
}
