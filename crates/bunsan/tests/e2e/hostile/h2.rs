//! HTTP/2 requests a server behind the node must never see as HTTP/1.1: CR, LF or NUL in
//! names and values, upper-case names, connection-specific headers, and a body that
//! disagrees with its content-length. Frames are written by hand (HPACK literals without
//! Huffman coding), since a well-behaved client library refuses to send them.

use std::time::Duration;

use bunsan_testkit::{Backend, Bunsan};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{bin, http_config};

/// One HTTP/2 frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A header field as raw name and value bytes.
type Field<'a> = (&'a [u8], &'a [u8]);

/// A request header block: `POST /echo` for authority `a` plus `extra` fields as
/// literals without indexing.
fn block(extra: &[Field]) -> Vec<u8> {
    // :method POST (3), :scheme http (6), :path / is replaced by a literal /echo (4).
    let mut out = vec![0x83, 0x86, 0x04, 5];
    out.extend_from_slice(b"/echo");
    out.extend_from_slice(&[0x01, 1, b'a']);
    for (name, value) in extra {
        out.push(0x00);
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.push(value.len() as u8);
        out.extend_from_slice(value);
    }
    out
}

/// Frames the node sent back: (type, stream, first payload byte).
async fn exchange(addr: std::net::SocketAddr, frames: Vec<u8>) -> Vec<(u8, u32, Option<u8>)> {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    out.extend(frames);
    let _ = conn.write_all(&out).await;
    let mut received = Vec::new();
    let mut buf = [0u8; 16384];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), conn.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
    }
    let mut frames = Vec::new();
    let mut rest = &received[..];
    while rest.len() >= 9 {
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
        let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        frames.push((rest[3], stream, rest.get(9).copied()));
        rest = rest.get(9 + len..).unwrap_or_default();
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http2_requests_never_reach_the_server() {
    let backend = Backend::start("h2-guarded").await;
    let node = Bunsan::start(bin(), &http_config(&[(&backend, 1)], "")).await.unwrap();
    let cases: [(&str, &[Field]); 7] = [
        ("CR in a value", &[(b"x-a", b"b\rc")]),
        ("LF in a value", &[(b"x-a", b"b\nx-injected: 1")]),
        ("NUL in a value", &[(b"x-a", b"b\0c")]),
        ("upper-case name", &[(b"X-Upper", b"1")]),
        ("connection header", &[(b"connection", b"keep-alive")]),
        ("transfer-encoding header", &[(b"transfer-encoding", b"chunked")]),
        ("te other than trailers", &[(b"te", b"gzip")]),
    ];
    // The control: the same frames, well-formed, get a 200 from the server.
    let frames = exchange(node.listener("web"), frame(0x1, 0x5, 1, &block(&[(b"x-fine", b"1")]))).await;
    assert!(
        frames.iter().any(|&(kind, stream, first)| kind == 0x1 && stream == 1 && first == Some(0x88)),
        "{frames:?}"
    );
    assert_eq!(backend.hits(), 1);
    let mut failures = Vec::new();
    for (name, extra) in cases {
        let before = backend.hits();
        let frames = exchange(node.listener("web"), frame(0x1, 0x5, 1, &block(extra))).await;
        // 0x88 is `:status 200` from HPACK's static table: a success.
        let succeeded =
            frames.iter().any(|&(kind, stream, first)| kind == 0x1 && stream == 1 && first == Some(0x88));
        let refused = frames.iter().any(|&(kind, _, _)| kind == 0x3 || kind == 0x7)
            || frames.iter().any(|&(kind, stream, first)| kind == 0x1 && stream == 1 && first != Some(0x88));
        if succeeded || !refused || backend.hits() != before {
            failures.push(format!("{name}: frames {frames:?}, backend hits {}", backend.hits() - before));
        }
    }
    // A body shorter than its content-length: the stream is refused, and the server never
    // gets a complete request.
    let mut frames = frame(0x1, 0x4, 1, &block(&[(b"content-length", b"10")]));
    frames.extend(frame(0x0, 0x1, 1, b"12345"));
    let answer = exchange(node.listener("web"), frames).await;
    let succeeded =
        answer.iter().any(|&(kind, stream, first)| kind == 0x1 && stream == 1 && first == Some(0x88));
    if succeeded {
        failures.push(format!("content-length mismatch: {answer:?}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The node still serves well-formed HTTP/2.
    let mut client = bunsan_testkit::Client::h2c(node.listener("web")).await.unwrap();
    assert_eq!(client.get("/").await.unwrap().status.as_u16(), 200);
}
