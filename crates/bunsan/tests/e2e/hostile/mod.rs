//! Hostile input, byte for byte: every case is sent raw through a real node to a real
//! backend, and asserts both what the client got and what the backend saw. The node
//! must never let a client and a server disagree about where a message ends.

mod cases;
pub mod h2;
mod responses;

use std::time::Duration;

use bunsan_testkit::{Backend, Bunsan};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{bin, http_config};

/// What a case must lead to.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// The node answers this status itself, closes the connection, and the backend sees
    /// no request at all.
    Reject(u16),
    /// The request reaches the backend exactly once, with this body (the backend's
    /// `/echo` sends it back), and the client gets a `200`.
    Forward(&'static str),
    /// Forwarded once with this body, framed the one way RFC 9112 §6.3 allows
    /// (`Transfer-Encoding` wins over `Content-Length`), and the connection closed
    /// after the answer, so nothing after the message can be read as another request.
    Normalised(&'static str),
    /// The head may have been forwarded but the body is broken: the client gets no
    /// success, its connection is closed, and the backend never sees a complete body.
    Broken,
}

/// One raw-byte case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub class: &'static str,
    pub name: &'static str,
    pub bytes: &'static [u8],
    pub expect: Expect,
}

/// What came back on a raw connection.
#[derive(Debug)]
pub struct Exchange {
    /// Every status line's code, in order.
    pub statuses: Vec<u16>,
    /// Everything the node sent.
    pub text: String,
    /// Whether the node closed the connection (within the wait).
    pub closed: bool,
}

/// Sends `bytes` on a fresh connection and reads until the node closes it or stays
/// silent for `quiet`.
pub async fn exchange(addr: std::net::SocketAddr, bytes: &[u8], quiet: Duration) -> Exchange {
    let mut stream = TcpStream::connect(addr).await.expect("node accepts");
    let _ = stream.write_all(bytes).await;
    let mut received = Vec::new();
    let mut closed = false;
    loop {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(quiet, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&received).into_owned();
    let statuses = text
        .split("\r\n")
        .filter_map(|line| line.strip_prefix("HTTP/1.1 ").or_else(|| line.strip_prefix("HTTP/1.0 ")))
        .filter_map(|rest| rest.get(..3)?.parse().ok())
        .collect();
    Exchange { statuses, text, closed }
}

/// Runs every case against one node and one backend (a fresh backend per case would be
/// cleaner but slower; each case's backend traffic is measured as a difference).
async fn run(cases: &[Case]) {
    let backend = Backend::start("echo").await;
    let node = Bunsan::start(bin(), &http_config(&[(&backend, 1)], "")).await.unwrap();
    let mut failures = Vec::new();
    for case in cases {
        let before = settled_hits(&backend).await;
        let seen = exchange(node.listener("web"), case.bytes, Duration::from_millis(300)).await;
        let hits = settled_hits(&backend).await - before;
        if let Err(why) = check(case, &seen, hits) {
            failures.push(format!("[{}] {}: {why}\n    got: {:?}", case.class, case.name, seen.text));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The backend's request count once it has stopped moving: a broken request's head may
/// reach the backend after the client already has its answer.
async fn settled_hits(backend: &Backend) -> u64 {
    let mut hits = backend.hits();
    loop {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let now = backend.hits();
        if now == hits {
            return hits;
        }
        hits = now;
    }
}

fn check(case: &Case, seen: &Exchange, hits: u64) -> Result<(), String> {
    match case.expect {
        Expect::Reject(status) => {
            if seen.statuses.first() != Some(&status) {
                return Err(format!("expected {status}, got {:?}", seen.statuses));
            }
            if !seen.closed {
                return Err("connection left open after a rejection".into());
            }
            if hits != 0 {
                return Err(format!("backend saw {hits} request(s)"));
            }
        }
        Expect::Forward(body) => {
            if seen.statuses != [200] {
                return Err(format!("expected exactly one 200, got {:?}", seen.statuses));
            }
            if hits != 1 {
                return Err(format!("backend saw {hits} requests, expected 1"));
            }
            let echoed = seen.text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
            if dechunk(echoed) != body {
                return Err(format!("backend got body {echoed:?}, expected {body:?}"));
            }
        }
        Expect::Normalised(body) => {
            check(&Case { expect: Expect::Forward(body), ..*case }, seen, hits)?;
            if !seen.closed {
                return Err("connection left open after a normalised message".into());
            }
        }
        Expect::Broken => {
            if seen.statuses.iter().any(|s| (200..300).contains(s)) {
                return Err(format!("a broken body got a success: {:?}", seen.statuses));
            }
            if !seen.closed {
                return Err("connection left open after a broken body".into());
            }
            if hits > 1 {
                return Err(format!("backend saw {hits} requests"));
            }
        }
    }
    Ok(())
}

/// The payload of a chunked body (or the text itself when it is not chunked).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { return body.to_owned() };
        if size == 0 {
            return out;
        }
        let Some(data) = after.get(..size) else { return body.to_owned() };
        out.push_str(data);
        rest = after.get(size + 2..).unwrap_or_default();
    }
    body.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_ambiguous_framing_or_malformed_heads_are_refused() {
    run(cases::REQUESTS).await;
}
