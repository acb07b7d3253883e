//! The access log (one JSON line per request) and PROXY headers sent by HTTP pools.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bunsan_proto::proxy_header::{self, Parsed, ProxyHeader};
use bunsan_testkit::{eventually, Bunsan, Client};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::upstream::read_response;
use crate::{backends, bin, http_config};

fn entries(node: &Bunsan) -> Vec<Value> {
    let text = std::fs::read_to_string(node.dir().join("access.log")).unwrap_or_default();
    text.lines().map(|line| serde_json::from_str(line).expect("every line is JSON")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_leaves_a_json_line_saying_whether_it_was_delivered() {
    let b = backends(&["logged"]).await;
    let config = http_config(&[(&b[0], 1)], "") + "\n[node]\naccess_log = \"access.log\"\n";
    let node = Bunsan::start(bin(), &config).await.unwrap();
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    let reply = client.get("/bytes/1000?q=1").await.unwrap();
    let id = reply.header("x-request-id").unwrap().to_owned();

    // A client that reads the head of a large body and goes away.
    let mut quitter = Client::http1(node.listener("web")).await.unwrap();
    let head = quitter.stream(http::Request::get("/bytes/50000000").body(Default::default()).unwrap()).await;
    assert_eq!(head.unwrap().status(), 200);
    drop(quitter);

    eventually(Duration::from_secs(5), || entries(&node).len() >= 2).await;
    let log = entries(&node);
    let first = &log[0];
    assert_eq!(first["request_id"], id.as_str());
    assert_eq!((first["method"].as_str(), first["path"].as_str()), (Some("GET"), Some("/bytes/1000?q=1")));
    assert_eq!((first["pool"].as_str(), first["server"].as_str()), (Some("app"), Some("logged")));
    assert_eq!((first["status"].as_u64(), first["bytes"].as_u64()), (Some(200), Some(1000)));
    assert_eq!(first["delivered"], true);
    assert_eq!(first["retries"], 0);
    assert!(first["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    let (connect, first_byte, total) = (
        first["connect_ms"].as_f64().unwrap(),
        first["first_byte_ms"].as_f64().unwrap(),
        first["total_ms"].as_f64().unwrap(),
    );
    assert!(connect > 0.0 && connect <= first_byte && first_byte <= total, "{first}");

    let cut = &log[1];
    assert_eq!(cut["path"], "/bytes/50000000");
    assert_eq!(cut["delivered"], false, "{cut}");
    assert!(cut["bytes"].as_u64().unwrap() < 50_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_answers_and_sessions_are_logged_too() {
    let b = backends(&["one"]).await;
    let extra = "affinity = { mode = \"cookie\", name = \"sid\" }";
    let config = http_config(&[(&b[0], 1)], extra) + "\n[node]\naccess_log = \"access.log\"\n";
    let node = Bunsan::start(bin(), &config).await.unwrap();
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    let reply = client.get("/").await.unwrap();
    let cookie = reply.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let req = http::Request::get("/").header("cookie", &cookie).body(Default::default()).unwrap();
    client.send(req).await.unwrap();
    b[0].stop();
    let mut fresh = Client::http1(node.listener("web")).await.unwrap();
    assert_eq!(fresh.get("/").await.unwrap().status.as_u16(), 502);

    eventually(Duration::from_secs(5), || entries(&node).len() >= 3).await;
    let log = entries(&node);
    assert_eq!(log[0]["session"]["event"], "new");
    assert_eq!(log[1]["session"]["event"], "continued");
    assert_eq!(log[0]["session"]["id"], log[1]["session"]["id"]);
    assert_eq!(log[0]["session"]["id"].as_str().unwrap().len(), 16);
    let secret = cookie.split_once('=').unwrap().1;
    let raw = std::fs::read_to_string(node.dir().join("access.log")).unwrap();
    assert!(!raw.contains(secret), "the session identifier itself is never logged");
    assert_eq!((log[2]["status"].as_u64(), log[2]["server"].is_null()), (Some(502), true));
    assert_eq!(log[2]["delivered"], true);
}

/// An HTTP/1.1 server that expects a PROXY header first and records its source.
async fn proxy_backend() -> (SocketAddr, Arc<Mutex<Vec<SocketAddr>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sources = Arc::new(Mutex::new(Vec::new()));
    let seen = sources.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some(header) = read_proxy_header(&mut stream).await else { return };
                seen.lock().unwrap().push(header.source().unwrap());
                let service = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"behind-proxy"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, sources)
}

/// Reads a PROXY header byte by byte, so no HTTP byte after it is consumed.
async fn read_proxy_header(stream: &mut TcpStream) -> Option<ProxyHeader> {
    let mut buf = Vec::new();
    loop {
        buf.push(stream.read_u8().await.ok()?);
        match proxy_header::parse(&buf) {
            Ok(Parsed::Complete(header, _)) => return Some(header),
            Ok(Parsed::Incomplete) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_pool_sends_each_client_connection_its_own_proxied_connection() {
    let (addr, sources) = proxy_backend().await;
    let config = format!(
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\npool = \"app\"\n\n\
         [[pool]]\nname = \"app\"\nsend_proxy = \"v2\"\n\n\
         [[pool.server]]\nname = \"p\"\naddr = \"{addr}\"\n"
    );
    let node = Bunsan::start(bin(), &config).await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(node.listener("web")).await.unwrap();
        for _ in 0..3 {
            stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
            let response = read_response(&mut stream).await;
            assert!(response.ends_with("behind-proxy"), "{response}");
        }
        clients.push(stream.local_addr().unwrap());
    }
    let sources = sources.lock().unwrap().clone();
    assert_eq!(sources, clients, "one server connection per client connection, naming that client");
}
