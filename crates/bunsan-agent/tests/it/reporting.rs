//! The reporting loop against the fake control: registration, periodic reports,
//! transitions at once, outages without storms or backlogs, and a lost registry.

use std::time::{Duration, Instant};

use bunsan_agent::{PartialConfig, Probe};
use bunsan_proto::control::{AgentRegistration, Health, Report};
use bunsan_testkit::{eventually, Backend};

use crate::fake::FakeControl;
use crate::{config, Running};

const WAIT: Duration = Duration::from_secs(20);

fn probing(interval: u64, probe_interval: u64) -> PartialConfig {
    PartialConfig {
        interval: Some(Duration::from_millis(interval)),
        probe: Some(Probe::Tcp),
        probe_interval: Some(Duration::from_millis(probe_interval)),
        fall: Some(1),
        rise: Some(1),
        ..PartialConfig::default()
    }
}

fn state_of(rows: &[Report]) -> Option<Health> {
    rows.iter().find(|r| r.server == "b1").map(|r| r.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_first_then_reports_every_interval_with_the_token() {
    let control = FakeControl::start().await;
    let backend = Backend::start("b1").await;
    let agent = Running::start(config(&[control.url()], &[("app/b1", backend.addr)], probing(100, 100)));
    assert!(eventually(WAIT, || control.reports().len() >= 4).await, "{:?}", control.seen());
    agent.stop().await;

    let seen = control.seen();
    assert_eq!(seen[0].path, "/v1/agents");
    let registration: AgentRegistration = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!((registration.agent.as_str(), registration.method.as_str()), ("test-agent", "sockets"));
    assert_eq!(registration.servers[0].addr, backend.addr.to_string());
    assert!(seen.iter().all(|s| s.authorization.as_deref() == Some("Bearer t0ken")));
    assert_eq!(seen.iter().filter(|s| s.path == "/v1/agents").count(), 1, "registers once");
    for (_, rows) in control.reports() {
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].pool.as_str(), rows[0].server.as_str(), rows[0].state),
            ("app", "b1", Health::Up)
        );
        assert!(rows[0].load >= 0.0);
    }
}

/// With a 60 s interval, every report within the test's 20 s waits is a transition's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_are_reported_at_once_not_at_the_next_interval() {
    let control = FakeControl::start().await;
    let backend = Backend::start("b1").await;
    let addr = backend.addr;
    let agent = Running::start(config(&[control.url()], &[("app/b1", addr)], probing(60_000, 50)));
    // The first sample is taken at start.
    assert!(eventually(WAIT, || control.reports().len() == 1).await);

    backend.stop();
    drop(backend);
    assert!(eventually(WAIT, || control.reports().len() == 2).await, "down is reported at once");
    assert_eq!(state_of(&control.reports()[1].1), Some(Health::Down));

    let _backend = Backend::start_on("b1", addr).await;
    assert!(eventually(WAIT, || control.reports().len() == 3).await, "up is reported at once");
    assert_eq!(state_of(&control.reports()[2].1), Some(Health::Up));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_causes_no_storm_and_then_one_current_report() {
    let control = FakeControl::start().await;
    let backend = Backend::start("b1").await;
    let agent = Running::start(config(&[control.url()], &[("app/b1", backend.addr)], probing(50, 50)));
    assert!(eventually(WAIT, || control.reports().len() >= 3).await);

    control.set_down(true);
    let outage = Instant::now();
    // While control is away the server goes down: the report after the outage must say so.
    backend.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = control.seen().iter().filter(|s| s.at >= outage && s.status == 503).count();
    let elapsed = outage.elapsed();
    control.set_down(false);
    // Every wait is at least 200 ms; at a 50 ms interval a loop without backoff would
    // have sent 60 or more.
    let bound = (elapsed.as_millis() / 200) as usize + 2;
    assert!(during <= bound, "{during} requests during a {elapsed:?} outage (at most {bound})");

    assert!(eventually(WAIT, || control.reports().iter().any(|(at, _)| *at > outage)).await);
    let reports = control.reports();
    let (back, first) = reports.iter().find(|(at, _)| *at > outage).unwrap();
    assert_eq!(state_of(first), Some(Health::Down), "the first report after the outage is current");
    // No backlog of the outage's 60 intervals: after the current report, only the usual
    // one per interval (plus a little slack) follows.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let soon = control.reports().iter().filter(|(at, _)| *at >= *back).count();
    let window = back.elapsed();
    let allowed = (window.as_millis() / 50) as usize + 5;
    assert!(soon <= allowed, "{soon} reports within {window:?} of recovery (at most {allowed})");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_that_lost_its_registry_gets_a_new_registration_and_the_report_again() {
    let control = FakeControl::start().await;
    let backend = Backend::start("b1").await;
    let agent = Running::start(config(&[control.url()], &[("app/b1", backend.addr)], probing(100, 100)));
    assert!(eventually(WAIT, || control.reports().len() >= 2).await);

    control.forget();
    let forgot = control.seen().len();
    assert!(eventually(WAIT, || control.seen().len() >= forgot + 3).await);
    agent.stop().await;
    let after: Vec<(String, u16)> =
        control.seen()[forgot..].iter().take(3).map(|s| (s.path.clone(), s.status)).collect();
    let expected = [("/v1/reports", 400), ("/v1/agents", 200), ("/v1/reports", 200)];
    assert_eq!(after, expected.map(|(p, s)| (p.to_owned(), s)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_control_is_found_again_and_registered_with() {
    let control = FakeControl::start().await;
    let addr = control.addr();
    let backend = Backend::start("b1").await;
    let agent = Running::start(config(&[control.url()], &[("app/b1", backend.addr)], probing(100, 100)));
    assert!(eventually(WAIT, || control.reports().len() >= 2).await);

    control.stop();
    drop(control);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = FakeControl::start_on(addr).await;
    assert!(eventually(WAIT, || !restarted.reports().is_empty()).await, "{:?}", restarted.seen());
    agent.stop().await;
    // Reports that reached the fresh registry before the agent registered again were
    // refused; then it registered and was accepted.
    let seen = restarted.seen();
    let registered = seen.iter().position(|s| s.path == "/v1/agents" && s.status == 200).unwrap();
    assert!(seen[..registered].iter().all(|s| s.status == 400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_control_is_skipped_for_the_next() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let control = FakeControl::start().await;
    let backend = Backend::start("b1").await;
    let agent =
        Running::start(config(&[dead, control.url()], &[("app/b1", backend.addr)], probing(100, 100)));
    assert!(eventually(WAIT, || control.reports().len() >= 2).await);
    agent.stop().await;
    assert_eq!(control.seen()[0].path, "/v1/agents");
}
