//! Health checks against real servers on 127.0.0.1: single probes, and the checking loop.
//!
//! Loop tests use short real intervals and generous timeouts, and only ever wait for
//! something to happen (bounded so a failure does not hang); none asserts how fast it
//! happened. They stay off tokio's paused clock on purpose: it jumps to the next timer
//! whenever the runtime finds no I/O ready at the instant it would wait, so one loopback
//! event that is late by a hair would become a spurious timeout and break their exact
//! counts. The paused clock serves where check outcomes do not matter (first-check
//! spreading over a long interval).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bunsan_config::{HealthConfig, HealthKind};
use bunsan_testkit::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::*;

/// A timeout no loopback exchange comes near; only bounds a failing test.
const GENEROUS: Duration = Duration::from_secs(10);
/// Long enough that a check hanging on it is still in flight when the test ends.
const FOREVER: Duration = Duration::from_secs(3600);
/// Real interval of loop tests.
const TICK: Duration = Duration::from_millis(20);

fn http(path: &str) -> HealthKind {
    HealthKind::Http { path: path.to_owned(), host: None, expect: 200..=399 }
}

fn config(kind: HealthKind, interval: Duration, timeout: Duration, fall: u32, rise: u32) -> HealthConfig {
    HealthConfig { kind, interval, timeout, fall, rise }
}

fn target(server: &str, addr: SocketAddr) -> Target {
    Target::new("app", server, 0, addr, addr.to_string())
}

/// An address with nothing listening (bound, then closed).
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("bound address")
}

/// Waits (polling) until `done` holds; panics after a generous bound.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait).await.unwrap_or_else(|_| panic!("never: {what}"));
}

/// A TCP server running `handler` on every connection; counts connections accepted and
/// handlers finished. Dropping it closes everything.
struct RawServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    task: AbortHandle,
}

impl RawServer {
    async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("bound address");
        let (accepted, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let counts = (accepted.clone(), finished.clone());
        let task = tokio::spawn(async move {
            // Owning the connection tasks here means aborting this task closes them all.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                counts.0.fetch_add(1, SeqCst);
                let (work, finished) = (handler(stream), counts.1.clone());
                connections.spawn(async move {
                    work.await;
                    finished.fetch_add(1, SeqCst);
                });
            }
        });
        Self { addr, accepted, finished, task: task.abort_handle() }
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads and discards until the peer closes (or the connection fails).
async fn read_until_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// Accepts, reads the request, never answers.
async fn silent(mut stream: TcpStream) {
    read_until_closed(&mut stream).await;
}

/// Answers a request with bytes that are not HTTP.
async fn garbage(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    if stream.read(&mut buf).await.is_ok() && stream.write_all(b"SPAM SPAM SPAM\r\n\r\n").await.is_ok() {
        read_until_closed(&mut stream).await;
    }
}

/// Answers `200` announcing a gigabyte, sends 16 MiB of it, then stalls with the
/// connection open: only a reader that stops early finishes before its timeout.
async fn endless_body(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    let head = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n";
    if stream.read(&mut buf).await.is_err() || stream.write_all(head).await.is_err() {
        return;
    }
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..256 {
        if stream.write_all(&chunk).await.is_err() {
            return; // The checker closed the connection: what it should do.
        }
    }
    read_until_closed(&mut stream).await;
}

// ---- probe: tcp ----

#[tokio::test]
async fn tcp_probe_passes_against_a_listening_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound address");
    assert!(probe(&HealthKind::Tcp, addr, "x", GENEROUS).await.is_ok());
}

#[tokio::test]
async fn tcp_probe_reports_a_closed_port_as_refused() {
    let result = probe(&HealthKind::Tcp, closed_port().await, "x", GENEROUS).await;
    assert!(matches!(result, Err(ProbeFailure::Refused)), "{result:?}");
}

// Connect timeouts are not tested: no address is reliably unroutable everywhere, and
// the timeout wraps the connect the same way it wraps the HTTP exchange tested below.

// ---- probe: http ----

#[tokio::test]
async fn http_probe_passes_on_200() {
    let backend = Backend::start("b").await;
    assert!(probe(&http("/"), backend.addr, "b", GENEROUS).await.is_ok());
}

#[tokio::test]
async fn http_probe_fails_on_500_naming_the_status() {
    let backend = Backend::start("b").await;
    let result = probe(&http("/status/500"), backend.addr, "b", GENEROUS).await;
    assert!(matches!(result, Err(ProbeFailure::BadStatus(500))), "{result:?}");
    assert_eq!(result.map_err(|e| e.to_string()), Err("bad status 500".to_owned()));
}

#[tokio::test]
async fn http_probe_applies_a_custom_status_range() {
    let backend = Backend::start("b").await;
    let exact = |path: &str, expect| HealthKind::Http { path: path.to_owned(), host: None, expect };
    let result = probe(&exact("/status/204", 200..=200), backend.addr, "b", GENEROUS).await;
    assert!(matches!(result, Err(ProbeFailure::BadStatus(204))), "{result:?}");
    let result = probe(&exact("/status/503", 500..=599), backend.addr, "b", GENEROUS).await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn http_probe_reports_a_closed_port_as_refused() {
    let result = probe(&http("/"), closed_port().await, "x", GENEROUS).await;
    assert!(matches!(result, Err(ProbeFailure::Refused)), "{result:?}");
}

#[tokio::test]
async fn http_probe_times_out_on_a_server_that_never_answers() {
    let server = RawServer::start(silent).await;
    let timeout = Duration::from_millis(300);
    let result = probe(&http("/"), server.addr, "x", timeout).await;
    assert!(matches!(result, Err(ProbeFailure::Timeout(t)) if t == timeout), "{result:?}");
}

#[tokio::test]
async fn http_probe_fails_on_garbage_as_a_protocol_error() {
    let server = RawServer::start(garbage).await;
    let result = probe(&http("/"), server.addr, "x", GENEROUS).await;
    assert!(matches!(result, Err(ProbeFailure::Protocol(_))), "{result:?}");
}

#[tokio::test]
async fn http_probe_reads_only_a_bounded_part_of_an_endless_body() {
    let server = RawServer::start(endless_body).await;
    let result = probe(&http("/"), server.addr, "x", GENEROUS).await;
    assert!(result.is_ok(), "{result:?}");
    // The probe hung up rather than reading on: the server sees the close.
    until("the server sees the probe close", || server.finished.load(SeqCst) == 1).await;
}

#[tokio::test]
async fn http_probe_sends_the_configured_host_and_its_own_headers() {
    let backend = Backend::start("b").await;
    let kind = HealthKind::Http {
        path: "/healthz?deep=1".to_owned(),
        host: Some("app.example".to_owned()),
        expect: 200..=399,
    };
    assert!(probe(&kind, backend.addr, "10.0.0.1:80", GENEROUS).await.is_ok());
    let seen = backend.seen();
    let [request] = seen.as_slice() else { panic!("one request expected: {seen:?}") };
    assert_eq!(request.method, http::Method::GET);
    assert_eq!(request.uri, "/healthz?deep=1");
    assert_eq!(request.version, http::Version::HTTP_11);
    let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(header("host"), Some("app.example"));
    assert_eq!(header("user-agent"), Some("bunsan-health"));
    assert_eq!(header("connection"), Some("close"));
}

#[tokio::test]
async fn http_probe_defaults_the_host_to_the_server_address_as_written() {
    let backend = Backend::start("b").await;
    assert!(probe(&http("/"), backend.addr, "backend-1.internal:8080", GENEROUS).await.is_ok());
    let host = backend.seen().first().and_then(|s| s.headers.get("host").cloned());
    assert_eq!(host, Some(http::HeaderValue::from_static("backend-1.internal:8080")));
}

// ---- the loop ----

/// One call of the report callback, with the server's counters at that moment.
#[derive(Debug)]
struct Report {
    server: String,
    transition: Transition,
    why: String,
    checks: u64,
    failures: u64,
}

/// A report callback sending every call to the returned receiver.
fn recorder() -> (impl Fn(&Target, Transition, &str) + Send + Sync + 'static, mpsc::UnboundedReceiver<Report>)
{
    let (tx, rx) = mpsc::unbounded_channel();
    let report = move |target: &Target, transition: Transition, why: &str| {
        let counters = &target.counters;
        let report = Report {
            server: target.server.clone(),
            transition,
            why: why.to_owned(),
            checks: counters.checks(),
            failures: counters.failures(),
        };
        // A test that stopped listening has seen all it needed.
        let _ = tx.send(report);
    };
    (report, rx)
}

async fn next_report(reports: &mut mpsc::UnboundedReceiver<Report>) -> Report {
    let next = tokio::time::timeout(Duration::from_secs(60), reports.recv()).await;
    next.expect("a report in time").expect("the checker is running")
}

async fn stop(shutdown: CancellationToken, task: tokio::task::JoinHandle<()>) {
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(60), task).await;
    stopped.expect("checkers stop on shutdown").expect("checkers did not panic");
}

#[tokio::test]
async fn a_stopped_server_goes_down_after_fall_failures_and_up_after_rise_passes() {
    let backend = Backend::start("b").await;
    let addr = backend.addr;
    let target = target("b", addr);
    let counters = target.counters.clone();
    let (report, mut reports) = recorder();
    let shutdown = CancellationToken::new();
    let task = spawn(vec![target], config(http("/"), TICK, GENEROUS, 3, 2), report, shutdown.clone());

    until("three passed checks", || counters.checks() >= 3).await;
    assert_eq!(counters.failures(), 0);
    backend.stop();
    let down = next_report(&mut reports).await;
    assert_eq!((down.server.as_str(), down.transition), ("b", Transition::Down));
    assert_eq!(down.failures, 3, "down at exactly `fall` failures");
    assert!(down.why.starts_with("3 consecutive checks failed, last: "), "{}", down.why);

    let _restarted = Backend::start_on("b", addr).await;
    let up = next_report(&mut reports).await;
    assert_eq!(up.transition, Transition::Up);
    let passes = |r: &Report| r.checks - r.failures;
    assert_eq!(passes(&up) - passes(&down), 2, "up at exactly `rise` passes");
    assert_eq!(up.why, "2 consecutive checks passed");

    until("more passed checks", || counters.checks() >= up.checks + 5).await;
    stop(shutdown, task).await;
    assert!(reports.recv().await.is_none(), "one transition each way");
    assert_eq!(counters.transitions(), 2);
}

#[tokio::test]
async fn tcp_checks_of_a_closed_port_go_down_with_the_refusal_as_reason() {
    let target = target("gone", closed_port().await);
    let counters = target.counters.clone();
    let (report, mut reports) = recorder();
    let shutdown = CancellationToken::new();
    let task = spawn(vec![target], config(HealthKind::Tcp, TICK, GENEROUS, 2, 2), report, shutdown.clone());

    let down = next_report(&mut reports).await;
    assert_eq!(down.transition, Transition::Down);
    assert_eq!(down.why, "2 consecutive checks failed, last: connection refused");
    until("more failed checks", || counters.failures() >= 5).await;
    stop(shutdown, task).await;
    assert!(reports.recv().await.is_none(), "down once, however many failures follow");
    assert_eq!(counters.checks(), counters.failures());
}

#[tokio::test]
async fn a_hanging_server_does_not_delay_checks_of_another() {
    let hanging = RawServer::start(silent).await;
    let backend = Backend::start("ok").await;
    let (slow, fast) = (target("hanging", hanging.addr), target("ok", backend.addr));
    let (slow_counters, fast_counters) = (slow.counters.clone(), fast.counters.clone());
    let shutdown = CancellationToken::new();
    let ignore = |_: &Target, _: Transition, _: &str| {};
    // Every check of the hanging server lasts as long as the test: a checker that waited
    // for it would never check the other server again.
    let task = spawn(vec![slow, fast], config(http("/"), TICK, FOREVER, 2, 2), ignore, shutdown.clone());

    until("the hanging server is being checked", || hanging.accepted.load(SeqCst) == 1).await;
    until("many checks of the other server", || fast_counters.checks() >= 20).await;
    assert_eq!(fast_counters.failures(), 0);
    assert_eq!(slow_counters.checks(), 0, "its first check is still in flight");
    stop(shutdown, task).await;
}

#[tokio::test]
async fn shutdown_stops_checks_in_flight_and_waiting() {
    let hanging = RawServer::start(silent).await;
    let backend = Backend::start("ok").await;
    let (slow, fast) = (target("hanging", hanging.addr), target("ok", backend.addr));
    let fast_counters = fast.counters.clone();
    let shutdown = CancellationToken::new();
    let ignore = |_: &Target, _: Transition, _: &str| {};
    let task = spawn(vec![slow, fast], config(http("/"), TICK, FOREVER, 2, 2), ignore, shutdown.clone());
    until("a check in flight", || hanging.accepted.load(SeqCst) == 1).await;
    until("a few checks", || fast_counters.checks() >= 2).await;

    stop(shutdown, task).await;
    until("the check in flight hangs up", || hanging.finished.load(SeqCst) == 1).await;
    let (checks, connections) = (fast_counters.checks(), backend.connections());
    tokio::time::sleep(TICK * 5).await;
    assert_eq!(fast_counters.checks(), checks, "no checks after shutdown");
    assert_eq!(backend.connections(), connections, "nor any check started");
}

#[tokio::test(start_paused = true)]
async fn first_checks_spread_over_one_interval() {
    // Check results do not matter here (the paused clock may time them out), only when
    // each server's first check comes.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound address");
    let targets: Vec<Target> = (0..30).map(|i| target(&format!("s{i}"), addr)).collect();
    let counters: Vec<_> = targets.iter().map(|t| t.counters.clone()).collect();
    let checked = || counters.iter().filter(|c| c.checks() > 0).count();
    let shutdown = CancellationToken::new();
    let interval = Duration::from_secs(100);
    let ignore = |_: &Target, _: Transition, _: &str| {};
    let task = spawn(
        targets,
        config(HealthKind::Tcp, interval, Duration::from_secs(1), 2, 2),
        ignore,
        shutdown.clone(),
    );

    tokio::time::sleep(interval / 2).await;
    let halfway = checked();
    // With 30 uniform first delays, all in one half has a chance of 2 in 2^30.
    assert!(0 < halfway && halfway < 30, "{halfway} of 30 checked after half an interval");
    tokio::time::sleep(interval / 2 + Duration::from_secs(2)).await;
    assert_eq!(checked(), 30, "every server checked within one interval");
    stop(shutdown, task).await;
}
