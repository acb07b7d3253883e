//! Malicious backends: a response with ambiguous framing never reaches a client as a
//! success, and never poisons the client's connection (or the pooled upstream one) for
//! the next request.

use std::net::SocketAddr;
use std::time::Duration;

use bunsan_testkit::Bunsan;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::exchange;
use crate::bin;

/// What the client must get for `GET /bad`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The node answers `502` itself.
    BadGateway,
    /// The head was relayed and the body then broke: no complete response, and the client
    /// connection is closed.
    Cut,
    /// The response is relayed as one well-formed message.
    Relayed(u16),
    /// Either relayed as one message or cut: the server sent bytes after its response,
    /// and whether the node sees them before the end of the body is a race. Both outcomes
    /// are safe; what matters is that the extra bytes reach no one.
    RelayedOrCut(u16),
}

struct ResponseCase {
    name: &'static str,
    bytes: &'static [u8],
    want: Want,
}

const CASES: &[ResponseCase] = &[
    ResponseCase { name: "CL and TE, extra response after", bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled", want: Want::RelayedOrCut(200) },
    ResponseCase { name: "differing CL", bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 8\r\n\r\nhello", want: Want::BadGateway },
    ResponseCase { name: "CL with plus", bytes: b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", want: Want::BadGateway },
    ResponseCase { name: "CL not a number", bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello", want: Want::BadGateway },
    ResponseCase { name: "obsolete line folding", bytes: b"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 2\r\n\r\nok", want: Want::BadGateway },
    ResponseCase { name: "bare CR in value", bytes: b"HTTP/1.1 200 OK\r\nX-A: b\rc\r\nContent-Length: 2\r\n\r\nok", want: Want::BadGateway },
    ResponseCase { name: "NUL in value", bytes: b"HTTP/1.1 200 OK\r\nX-A: b\x00c\r\nContent-Length: 2\r\n\r\nok", want: Want::BadGateway },
    ResponseCase { name: "space in header name", bytes: b"HTTP/1.1 200 OK\r\nX A: b\r\nContent-Length: 2\r\n\r\nok", want: Want::BadGateway },
    ResponseCase { name: "status out of range", bytes: b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok", want: Want::BadGateway },
    ResponseCase { name: "not HTTP", bytes: b"SSH-2.0-OpenSSH_9.2\r\n", want: Want::BadGateway },
    ResponseCase { name: "unsolicited 101", bytes: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", want: Want::BadGateway },
    ResponseCase { name: "invalid chunk size", bytes: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", want: Want::Cut },
    ResponseCase { name: "body shorter than CL", bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhello", want: Want::Cut },
    ResponseCase { name: "two responses for one request", bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled", want: Want::RelayedOrCut(200) },
    ResponseCase { name: "no reason phrase", bytes: b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", want: Want::Relayed(200) },
    ResponseCase { name: "100 Continue first", bytes: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", want: Want::Relayed(200) },
];

/// A server answering `GET /bad` with `bytes` and anything else with `second-ok`; after
/// a `/bad` answer it keeps the connection open for a while (so a leftover can be read
/// as the next answer if anyone reuses it), then closes it.
async fn canned(bytes: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, bytes));
        }
    });
    addr
}

async fn serve(mut stream: TcpStream, bytes: &'static [u8]) {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let Ok(n) = stream.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let answer: &[u8] = if head.starts_with("GET /bad ") {
                bytes
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsecond-ok"
            };
            if stream.write_all(answer).await.is_err() {
                return;
            }
            if answer.len() < 60 && head.starts_with("GET /bad ") && bytes.ends_with(b"hello") {
                // A short body: end it by closing, as a server that died mid-body would.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_responses_never_reach_the_client_as_successes_nor_poison_a_connection() {
    let mut failures = Vec::new();
    for case in CASES {
        let addr = canned(case.bytes).await;
        let config = format!(
            "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\npool = \"app\"\n\n\
             [[pool]]\nname = \"app\"\nretry = {{ attempts = 1 }}\noutlier = {{ consecutive_failures = 0 }}\n\n\
             [[pool.server]]\nname = \"canned\"\naddr = \"{addr}\"\n"
        );
        let node = Bunsan::start(bin(), &config).await.unwrap();
        let request = b"GET /bad HTTP/1.1\r\nHost: a\r\n\r\n";
        let first = exchange(node.listener("web"), request, Duration::from_millis(500)).await;
        let verdict = match case.want {
            Want::BadGateway if first.statuses.first() != Some(&502) => {
                Err(format!("expected 502: {:?}", first.text))
            }
            Want::Cut if !first.closed || first.statuses.len() > 1 => {
                Err(format!("expected a cut: {:?}", first.text))
            }
            Want::Relayed(status) if first.statuses != [status] => {
                Err(format!("expected one {status}: {:?}", first.text))
            }
            _ if first.text.contains("smuggled") => {
                Err(format!("a leftover reached the client: {:?}", first.text))
            }
            _ => Ok(()),
        };
        // The next request, on a pooled upstream connection if one was kept, must get
        // its own answer.
        let second = exchange(
            node.listener("web"),
            b"GET /second HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            Duration::from_millis(500),
        )
        .await;
        let verdict = verdict.and_then(|()| {
            if second.statuses == [200] && second.text.ends_with("second-ok") {
                Ok(())
            } else {
                Err(format!("the next request got {:?}", second.text))
            }
        });
        if let Err(why) = verdict {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
