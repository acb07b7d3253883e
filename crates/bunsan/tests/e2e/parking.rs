//! Parked connections: a quiet HTTP/1.1 keep-alive connection gives up its buffers and
//! still serves its next request, loses no byte a client sent, closes at the head
//! deadline, and 5,000 of them cost less than the README's bound.

use std::time::Duration;

use bunsan_testkit::{get, Bunsan, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backends;
use crate::limits::{closed_within, connections_allowed, node_with, pss_kib};

/// Longer than the node's park delay (200 ms), with room for a loaded machine.
pub const QUIET: Duration = Duration::from_millis(700);

/// `bunsan_client_connections_parked_total`.
pub async fn parked(node: &Bunsan) -> u64 {
    let metrics = get(node.admin(), "/metrics").await.unwrap().text();
    let line = metrics.lines().find_map(|l| l.strip_prefix("bunsan_client_connections_parked_total "));
    line.unwrap_or_else(|| panic!("no parked counter in:\n{metrics}")).trim().parse().unwrap()
}

/// Reads one response with a `Content-Length` body from `stream`; returns its text.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await;
        let n = n.expect("a response in time").expect("read");
        assert!(n > 0, "closed before a whole response: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        let Some(head_end) = text.find("\r\n\r\n") else { continue };
        let length: usize = text[..head_end]
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if got.len() >= head_end + 4 + length {
            return text;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_connection_is_parked_and_serves_its_next_request_as_the_same_client() {
    let b = backends(&["steady"]).await;
    let node = node_with(&b[0], "head_timeout = \"10s\"", "").await;
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    assert_eq!(client.get("/first").await.unwrap().status, 200);
    let before = parked(&node).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(parked(&node).await, before + 1, "the quiet connection was not parked");
    assert_eq!(client.get("/second").await.unwrap().status, 200);
    // One client connection throughout: the table entry survived the park.
    let table: serde_json::Value =
        serde_json::from_str(&get(node.admin(), "/v1/connections").await.unwrap().text()).unwrap();
    let sample = table["sample"].as_array().expect("a sample");
    assert_eq!(sample.len(), 1, "{table}");
    assert_eq!(sample[0]["requests"], 2, "{table}");
    assert_eq!(b[0].connections(), 1, "the pooled upstream connection served both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_sent_before_a_quiet_spell_are_not_lost() {
    let b = backends(&["steady"]).await;
    let node = node_with(&b[0], "head_timeout = \"10s\"", "").await;
    let before = parked(&node).await;
    // A head that stops halfway, then a quiet spell longer than the park delay.
    let mut stream = TcpStream::connect(node.listener("web")).await.unwrap();
    stream.write_all(b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    stream.write_all(b"GET /two HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(QUIET).await;
    stream.write_all(b"st: a\r\n\r\n").await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    // A second request pipelined behind the first, cut short, then quiet.
    stream.write_all(b"GET /three HTTP/1.1\r\nHost: a\r\n\r\nGET /four HTTP/1.1\r\nHost").await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(QUIET).await;
    stream.write_all(b": a\r\n\r\n").await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    let paths: Vec<String> = b[0].seen().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(paths, ["/one", "/two", "/three", "/four"]);
    assert_eq!(parked(&node).await, before, "a connection holding part of a request was parked");
    // Once whole requests are done and the client is quiet, it parks and still serves.
    tokio::time::sleep(QUIET).await;
    assert_eq!(parked(&node).await, before + 1);
    stream.write_all(b"GET /five HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_are_never_parked() {
    let b = backends(&["steady"]).await;
    let node = node_with(&b[0], "", "").await;
    let mut client = Client::h2c(node.listener("web")).await.unwrap();
    assert_eq!(client.get("/").await.unwrap().status, 200);
    tokio::time::sleep(QUIET).await;
    assert_eq!(client.get("/").await.unwrap().status, 200);
    assert_eq!(parked(&node).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_closes_at_the_head_deadline() {
    let b = backends(&["steady"]).await;
    let node = node_with(&b[0], "head_timeout = \"1s\"", "").await;
    let mut stream = TcpStream::connect(node.listener("web")).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    let closed = closed_within(&mut stream, Duration::from_secs(5)).await;
    let closed = closed.expect("a parked connection outlived its head deadline");
    assert!(closed >= Duration::from_millis(500), "closed after {closed:?}");
}

/// What a quiet keep-alive connection may cost the node, at most (README, "Limits and
/// hostile input"; bench/ S5 measures the release build).
const PARKED_BOUND_KIB: f64 = 8.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_quiet_keep_alive_connections_stay_under_the_memory_bound() {
    let count = connections_allowed(5_000);
    let b = backends(&["steady"]).await;
    let node = node_with(&b[0], "head_timeout = \"60s\", idle_timeout = \"60s\"", "").await;
    // Warm up: the pooled upstream connection and the runtime's own allocations.
    assert_eq!(get(node.listener("web"), "/").await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = pss_kib(node.pid());
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(node.listener("web")).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    // Parked after 200 ms; freed pages go back at the next housekeeping tick (1 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = pss_kib(node.pid());
    let per_connection = after.saturating_sub(before) as f64 / count as f64;
    eprintln!(
        "{count} quiet keep-alive connections: {before} KiB -> {after} KiB, {per_connection:.2} KiB each"
    );
    assert!(parked(&node).await >= count as u64, "not every connection was parked");
    assert!(per_connection <= PARKED_BOUND_KIB, "{per_connection:.2} KiB per connection");
    // Every one of them still serves.
    for stream in held.iter_mut().step_by(500) {
        stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        assert!(read_response(stream).await.starts_with("HTTP/1.1 200"));
    }
}
