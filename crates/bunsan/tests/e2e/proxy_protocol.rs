//! The PROXY protocol: listeners with `accept_proxy` take the client's address from the
//! header (and refuse connections without a good one), pools with `send_proxy` pass it on.

use std::net::SocketAddr;
use std::time::Duration;

use bunsan_proto::proxy_header::{ProxyHeader, Version};
use bunsan_testkit::{get, Backend, Bunsan, Client, ProxyHeaderEcho, SelfSigned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bin;

/// The client a proxy in front of the node claims to relay, and what it connected to.
fn claimed() -> ProxyHeader {
    ProxyHeader::tcp("203.0.113.7:4242".parse().unwrap(), "192.0.2.1:443".parse().unwrap())
}

/// One listener (`protocol`, with `accept_proxy` if asked) on a pool of one server at
/// `server`, with `send_proxy` if given; and an admin API for metrics.
fn config(protocol: &str, accept_proxy: bool, send_proxy: Option<&str>, server: SocketAddr) -> String {
    let send = send_proxy.map(|v| format!("send_proxy = \"{v}\"\n")).unwrap_or_default();
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[listener]]\nname = \"front\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"{protocol}\"\n\
         pool = \"app\"\naccept_proxy = {accept_proxy}\n\n\
         [[pool]]\nname = \"app\"\nconnect_timeout = \"1s\"\n{send}\n\
         [[pool.server]]\nname = \"s1\"\naddr = \"{server}\"\n"
    )
}

/// Sends `bytes`, closes the sending side, and returns everything that came back (an
/// error, e.g. a reset of a refused connection, counts as nothing).
async fn exchange(node: &Bunsan, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(node.listener("front")).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream.shutdown().await.unwrap();
    read_all(stream).await
}

/// Sends `bytes` (an HTTP request with `Connection: close`) and reads the reply to its
/// end; the sending side stays open, since an HTTP server takes a half-close for a
/// client that left.
async fn http_exchange(node: &Bunsan, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(node.listener("front")).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_all(stream).await
}

async fn read_all(mut stream: TcpStream) -> Vec<u8> {
    let mut back = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut back)).await;
    assert!(read.is_ok(), "the node kept the connection open");
    back
}

async fn header_errors(node: &Bunsan) -> String {
    let metrics = get(node.admin(), "/metrics").await.unwrap().text();
    let prefix = "bunsan_proxy_header_errors_total{listener=\"front\"} ";
    let line = metrics.lines().find_map(|l| l.strip_prefix(prefix));
    line.unwrap_or_else(|| panic!("no {prefix} in:\n{metrics}")).to_owned()
}

/// A TCP listener taking `version` headers in front of a pool sending `version` headers.
async fn tcp_relays_the_claimed_client(version: Version, name: &str) {
    let echo = ProxyHeaderEcho::start().await;
    let node = Bunsan::start(bin(), &config("tcp", true, Some(name), echo.addr)).await.unwrap();
    let data = b"first bytes right behind the header\r\n\0\xff and more";
    let mut sent = claimed().encode(version);
    sent.extend_from_slice(data);

    let mut stream = TcpStream::connect(node.listener("front")).await.unwrap();
    stream.write_all(&sent).await.unwrap();
    let mut back = vec![0; data.len()];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut back)).await;
    assert!(read.is_ok(), "the data after the header did not come back");
    assert_eq!(back, data, "the data after the header did not survive");
    // While it is open, the connection table knows the connection by the claimed client.
    let table: serde_json::Value =
        serde_json::from_str(&get(node.admin(), "/v1/connections").await.unwrap().text()).unwrap();
    assert_eq!(table["sample"][0]["client"], "203.0.113.7:4242");
    stream.shutdown().await.unwrap();
    assert!(read_all(stream).await.is_empty());
    let seen = echo.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].is_v2(), version == Version::V2);
    assert_eq!(seen[0].header, Ok(claimed()), "the server saw another client");
    assert_eq!(header_errors(&node).await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_header_in_becomes_a_v2_header_out_with_the_data_intact() {
    tcp_relays_the_claimed_client(Version::V2, "v2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_header_in_becomes_a_v1_header_out_with_the_data_intact() {
    tcp_relays_the_claimed_client(Version::V1, "v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_listener_forwards_the_claimed_client_as_x_forwarded_for() {
    let backend = Backend::start("host1").await;
    let node = Bunsan::start(bin(), &config("http", true, None, backend.addr)).await.unwrap();
    for version in [Version::V1, Version::V2] {
        let mut sent = claimed().encode(version);
        sent.extend_from_slice(b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n");
        let reply = String::from_utf8(http_exchange(&node, &sent).await).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    let seen = backend.seen();
    assert_eq!(seen.len(), 2);
    for request in seen {
        assert_eq!(request.headers.get("x-forwarded-for").unwrap(), "203.0.113.7");
    }
    // A plain request, without a header, never reaches the backend.
    let refused =
        http_exchange(&node, b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n").await;
    assert!(refused.is_empty(), "{}", String::from_utf8_lossy(&refused));
    assert_eq!(backend.hits(), 2);
    assert_eq!(header_errors(&node).await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_comes_before_tls() {
    let backend = Backend::start("host1").await;
    let cert = SelfSigned::generate();
    let dir = tempfile::tempdir().unwrap();
    cert.write_to(dir.path());
    let config = config("http", true, None, backend.addr).replace(
        "accept_proxy = true\n",
        "accept_proxy = true\ntls = { cert = \"cert.pem\", key = \"key.pem\" }\n",
    );
    let node = Bunsan::start_in(bin(), dir, &config).await.unwrap();
    let header = claimed().encode_v2();
    let mut client =
        Client::tls_after(node.listener("front"), &header, &cert.cert_der, &["h2"]).await.unwrap();
    assert_eq!(client.get("/").await.unwrap().status, 200);
    let seen = backend.seen();
    assert_eq!(seen[0].headers["x-forwarded-for"], "203.0.113.7");
    assert_eq!(seen[0].headers["x-forwarded-proto"], "https");
}

/// Sends a valid header one byte every 500 ms: whole, it would take half a minute.
async fn dribble(node: &Bunsan) -> Vec<u8> {
    let mut stream = TcpStream::connect(node.listener("front")).await.unwrap();
    for byte in claimed().encode_v1() {
        if stream.write_all(&[byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    read_all(stream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_connections_are_closed_counted_and_never_forwarded() {
    let echo = ProxyHeaderEcho::start().await;
    let node = Bunsan::start(bin(), &config("tcp", true, Some("v2"), echo.addr)).await.unwrap();
    let endless_line = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
    let silent = async {
        let stream = TcpStream::connect(node.listener("front")).await.unwrap();
        read_all(stream).await
    };
    let (no_header, garbage, endless, silent, dribbled) = tokio::join!(
        exchange(&node, b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"),
        exchange(&node, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
        exchange(&node, &endless_line),
        silent,
        dribble(&node),
    );
    for (case, back) in [("no header", no_header), ("garbage", garbage), ("endless v1 line", endless)] {
        assert!(back.is_empty(), "{case}: got {back:?}");
    }
    assert!(silent.is_empty() && dribbled.is_empty());
    assert!(echo.seen().is_empty(), "a refused connection reached the server: {:?}", echo.seen());
    assert_eq!(header_errors(&node).await, "5");

    let mut sent = claimed().encode_v2();
    sent.extend_from_slice(b"still serving");
    assert_eq!(exchange(&node, &sent).await, b"still serving");
    assert_eq!(echo.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_listener_sends_the_real_client_address() {
    let echo = ProxyHeaderEcho::start().await;
    let node = Bunsan::start(bin(), &config("tcp", false, Some("v1"), echo.addr)).await.unwrap();
    let mut stream = TcpStream::connect(node.listener("front")).await.unwrap();
    let client = stream.local_addr().unwrap();
    stream.write_all(b"ping").await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(read_all(stream).await, b"ping");
    let seen = echo.seen();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].is_v2());
    assert_eq!(seen[0].header, Ok(ProxyHeader::tcp(client, node.listener("front"))));
    assert_eq!(header_errors(&node).await, "0");
}
