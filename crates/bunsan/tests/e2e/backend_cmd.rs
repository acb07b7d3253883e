//! `bunsan backend`: the test server shipped in the binary, run as its own process.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bunsan_testkit::{get, BackendProcess, Client};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::bin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_answers_every_route_and_exits_0_on_sigterm() {
    let mut child = tokio::process::Command::new(bin())
        .args(["backend", "--listen", "127.0.0.1:0", "--name", "b1", "--latency", "20ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap();
    let line = line.expect("one line on stdout");
    let addr: SocketAddr = line.strip_prefix("listening on ").expect(&line).parse().unwrap();
    assert_ne!(addr.port(), 0);

    let started = Instant::now();
    let hello = get(addr, "/some/path").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(20), "--latency 20ms: {:?}", started.elapsed());
    assert_eq!(hello.status, StatusCode::OK);
    assert_eq!(hello.text(), "hello from b1 (you asked for /some/path)\n");
    assert_eq!(hello.header("x-backend"), Some("b1"));

    let unavailable = get(addr, "/status/503").await.unwrap();
    assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unavailable.header("x-backend"), Some("b1"));

    let mut client = Client::http1(addr).await.unwrap();
    let body = Bytes::from(vec![b'x'; 100_000]);
    let echo = client.send(Request::post("/echo").body(Full::new(body.clone())).unwrap()).await.unwrap();
    assert_eq!(echo.status, StatusCode::OK);
    assert_eq!(echo.body, body);
    // The same keep-alive connection carries the next request.
    let health = client.get("/healthz").await.unwrap();
    assert_eq!((health.status, health.text().as_str()), (StatusCode::OK, "ok\n"));
    assert_eq!(health.header("x-backend"), Some("b1"));

    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(lines.next_line().await.unwrap(), None, "exactly one line on stdout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_process_exits_0_on_terminate() {
    let mut backend = BackendProcess::start(bin(), "b1").await;
    assert_eq!(get(backend.addr, "/healthz").await.unwrap().header("x-backend"), Some("b1"));
    backend.terminate();
    let status = backend.wait_exit(Duration::from_secs(10)).await.expect("exits after SIGTERM");
    assert!(status.success(), "{status}: {}", backend.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_killed_with_sigkill_can_restart_on_the_same_port() {
    let mut first = BackendProcess::start(bin(), "b1").await;
    let addr = first.addr;
    let mut connected = Client::http1(addr).await.unwrap();
    connected.get("/").await.unwrap();
    first.kill9();
    assert!(connected.get("/").await.is_err(), "a killed backend cannot answer");

    let second = BackendProcess::start_on(bin(), "b2", addr).await;
    assert_eq!(second.addr, addr);
    let reply = get(addr, "/sleep/50").await.unwrap();
    assert_eq!(reply.header("x-backend"), Some("b2"));
    assert_eq!(reply.text(), "hello from b2 (you asked for /sleep/50)\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_rejects_a_bad_latency_and_reports_a_taken_port() {
    let output =
        crate::run(&["backend", "--listen", "127.0.0.1:0", "--name", "b", "--latency", "soon"]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--latency"));

    let taken = BackendProcess::start(bin(), "b1").await;
    let listen = taken.addr.to_string();
    let output = crate::run(&["backend", "--listen", &listen, "--name", "b2"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot listen on {listen}")), "{stderr}");
}
