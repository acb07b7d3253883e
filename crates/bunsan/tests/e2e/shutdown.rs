//! SIGTERM/SIGINT: stop accepting, finish in-flight work up to the deadline, exit 0.

use std::time::{Duration, Instant};

use bunsan_testkit::{Bunsan, Client};
use nix::sys::signal::Signal;

use crate::{backends, bin, http_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_0() {
    let b = backends(&["slow"]).await;
    let mut node = Bunsan::start(bin(), &http_config(&[(&b[0], 1)], "")).await.unwrap();
    let addr = node.listener("web");
    let mut client = Client::http1(addr).await.unwrap();
    let in_flight = tokio::spawn(async move { client.get("/sleep/1500").await });
    assert!(bunsan_testkit::eventually(Duration::from_secs(5), || b[0].hits() == 1).await);

    node.signal(Signal::SIGTERM);
    let refused =
        bunsan_testkit::eventually(Duration::from_secs(5), || std::net::TcpStream::connect(addr).is_err());
    assert!(refused.await, "the node kept accepting after SIGTERM");

    let reply = in_flight.await.unwrap().unwrap();
    assert_eq!(reply.status, 200, "the in-flight request was cut");
    let status = node.wait_exit(Duration::from_secs(10)).await.expect("the node exits");
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_deadline_bounds_the_wait() {
    let b = backends(&["slow"]).await;
    let config = format!("[node]\nshutdown_timeout = \"500ms\"\n\n{}", http_config(&[(&b[0], 1)], ""));
    let mut node = Bunsan::start(bin(), &config).await.unwrap();
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    let in_flight = tokio::spawn(async move { client.get("/sleep/30000").await });
    assert!(bunsan_testkit::eventually(Duration::from_secs(5), || b[0].hits() == 1).await);

    let started = Instant::now();
    node.signal(Signal::SIGINT);
    let status = node.wait_exit(Duration::from_secs(10)).await.expect("the node exits");
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(in_flight.await.unwrap().is_err(), "a request past the deadline cannot complete");
}
