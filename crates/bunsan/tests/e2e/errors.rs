//! The error statuses of ARCHITECTURE §4: 503, 502, 504, 400.

use std::time::Duration;

use bunsan_testkit::{Bunsan, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{backends, bin, http_config, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_available_server_is_a_503_naming_the_pool() {
    let b = backends(&["host1", "host2"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1), (&b[1], 1)], "")).await.unwrap();
    for server in ["app/host1", "app/host2"] {
        let url = node.admin_url();
        assert!(run(&["ctl", "--admin", &url, "server", server, "maint"]).await.status.success());
    }
    let reply = bunsan_testkit::get(node.listener("web"), "/").await.unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(reply.text(), "503 Service Unavailable no server available in pool app\n");
    assert_eq!(b[0].hits() + b[1].hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_move_on_and_only_all_failing_is_a_502() {
    let b = backends(&["host1", "dead"]).await;
    b[1].stop();
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1), (&b[1], 1)], "")).await.unwrap();
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    for _ in 0..20 {
        let reply = client.get("/").await.unwrap();
        assert_eq!((reply.status.as_u16(), reply.header("x-backend")), (200, Some("host1")));
    }
    b[0].stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reply = bunsan_testkit::get(node.listener("web"), "/").await.unwrap();
    assert_eq!(reply.status, 502);
    assert!(reply.text().contains("pool app"), "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_slower_than_response_timeout_is_a_504() {
    let b = backends(&["slow"]).await;
    let node =
        Bunsan::start(bin(), &http_config(&[(&b[0], 1)], "response_timeout = \"300ms\"")).await.unwrap();
    let reply = bunsan_testkit::get(node.listener("web"), "/sleep/3000").await.unwrap();
    assert_eq!(reply.status, 504);
    let reply = bunsan_testkit::get(node.listener("web"), "/sleep/10").await.unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_host_is_a_400_and_the_connection_closes() {
    let b = backends(&["host1"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1)], "")).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(node.listener("web")).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(text.ends_with("bad request: missing Host header\n"), "{text}");
    assert_eq!(b[0].hits(), 0);
}
