//! What the node speaks to its servers: HTTP/2 (h2c and over TLS), HTTP/1.1 over TLS,
//! gRPC-style trailers, WebSocket upgrades, and `X-Request-Id`.

use bunsan_testkit::{websocket, Backend, Bunsan, Client, SelfSigned};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::{backends, bin, http_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_pool_multiplexes_requests_over_one_connection_per_server() {
    let b = backends(&["h2-backend"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1)], "upstream = \"h2c\"")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let addr = node.listener("web");
        tasks.push(tokio::spawn(async move {
            let mut client = Client::http1(addr).await.unwrap();
            client.get(&format!("/sleep/50?n={i}")).await.unwrap()
        }));
    }
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "h2-backend"));
    }
    let seen = b[0].seen();
    assert_eq!(seen.len(), 20);
    assert!(seen.iter().all(|s| s.version == Version::HTTP_2), "{seen:?}");
    assert!(seen.iter().all(|s| s.uri.ends_with("/sleep/50?n=0") || s.uri.contains("/sleep/50?n=")));
    assert_eq!(b[0].connections(), 1, "twenty concurrent requests share one HTTP/2 connection");
}

/// A node directory holding `ca.pem` (the backends' certificate, as the CA to trust).
fn dir_with_ca(cert: &SelfSigned) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &cert.cert_pem).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_pool_speaks_http2_over_tls_and_verifies_the_server() {
    let cert = SelfSigned::generate();
    let backend = Backend::start_tls("tls-backend", &cert).await;
    let extra = "upstream = \"h2\"\nupstream_tls = { ca = \"ca.pem\", server_name = \"localhost\" }";
    let node =
        Bunsan::start_in(bin(), dir_with_ca(&cert), &http_config(&[(&backend, 1)], extra)).await.unwrap();
    let reply = bunsan_testkit::get(node.listener("web"), "/secure").await.unwrap();
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "tls-backend"));
    let seen = backend.seen();
    assert_eq!(seen[0].version, Version::HTTP_2);
    assert_eq!(seen[0].uri, format!("https://{}/secure", node.listener("web")));

    // The same server over HTTP/1.1 with TLS.
    let extra = "upstream_tls = { ca = \"ca.pem\", server_name = \"localhost\" }";
    let node =
        Bunsan::start_in(bin(), dir_with_ca(&cert), &http_config(&[(&backend, 1)], extra)).await.unwrap();
    let reply = bunsan_testkit::get(node.listener("web"), "/over-h1").await.unwrap();
    assert_eq!(reply.status.as_u16(), 200);
    assert_eq!(backend.seen().last().unwrap().version, Version::HTTP_11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_certificate_is_not_trusted_gets_no_request() {
    let (cert, stranger) = (SelfSigned::generate(), SelfSigned::generate());
    let backend = Backend::start_tls("untrusted", &cert).await;
    let extra = "upstream = \"h2\"\nupstream_tls = { ca = \"ca.pem\", server_name = \"localhost\" }";
    let node =
        Bunsan::start_in(bin(), dir_with_ca(&stranger), &http_config(&[(&backend, 1)], extra)).await.unwrap();
    let reply = bunsan_testkit::get(node.listener("web"), "/").await.unwrap();
    assert_eq!(reply.status.as_u16(), 502);
    assert_eq!(backend.hits(), 0);
    assert!(node.stderr().contains("TLS handshake"), "{}", node.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_style_trailers_pass_through_an_h2c_pool() {
    let b = backends(&["grpc"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1)], "upstream = \"h2c\"")).await.unwrap();
    let mut client = Client::h2c(node.listener("web")).await.unwrap();
    let req = Request::post("/trailers")
        .header("te", "trailers")
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let response = client.stream(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrive");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-trailer-from"], "grpc");
    assert_eq!(&collected.to_bytes()[..], b"ok");
    assert_eq!(b[0].seen()[0].headers["te"], "trailers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_echo_works_through_the_node() {
    let b = backends(&["ws"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1)], "")).await.unwrap();
    let mut socket = websocket::connect(node.listener("web"), "/chat").await.unwrap();
    for text in ["hello", "world"] {
        socket.send(Message::Text(text.into())).await.unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed, Message::Text(text.into()));
    }
    let blob = vec![7u8; 100_000];
    socket.send(Message::Binary(blob.clone())).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::Binary(blob));
    socket.close(None).await.unwrap();
    let seen = &b[0].seen()[0];
    assert_eq!(seen.headers["upgrade"], "websocket");
    assert_eq!(seen.headers["connection"], "upgrade");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_the_server_refuses_leaves_the_connection_http() {
    let b = backends(&["plain"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1)], "")).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(node.listener("web")).await.unwrap();
    // No Sec-WebSocket-Key: the backend answers 400, not 101.
    let head = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let first = read_response(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 400"), "{first}");
    stream.write_all(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let second = read_response(&mut stream).await;
    assert!(second.starts_with("HTTP/1.1 200") && second.ends_with("plain"), "{second}");
}

/// Reads one response with a `content-length` body from a raw connection.
pub async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed after {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
        let length = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if body.len() >= length {
            return text;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_passed_on_or_generated() {
    let b = backends(&["ids"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1)], "")).await.unwrap();
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    let req = Request::get("/").header("x-request-id", "trace-7f3a").body(Full::new(Bytes::new())).unwrap();
    let reply = client.send(req).await.unwrap();
    assert_eq!(reply.header("x-request-id"), Some("trace-7f3a"));
    assert_eq!(b[0].seen()[0].headers["x-request-id"], "trace-7f3a");

    let reply = client.get("/").await.unwrap();
    let generated = reply.header("x-request-id").unwrap().to_owned();
    assert_eq!(generated.len(), 32);
    assert_eq!(b[0].seen()[1].headers["x-request-id"], generated.as_str());

    let req = Request::get("/").header("x-request-id", "bad id\"").body(Full::new(Bytes::new())).unwrap();
    let reply = client.send(req).await.unwrap();
    assert_ne!(reply.header("x-request-id"), Some("bad id\""));
    assert_eq!(reply.header("x-request-id").unwrap().len(), 32);
}
