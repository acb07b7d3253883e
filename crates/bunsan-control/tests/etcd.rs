//! Several control instances sharing one real etcd (Debian's `etcd-server`, started here
//! on ephemeral loopback ports): pins, registrations, subscribers and reports made at
//! one instance show at the others, reports age out, and a restart keeps everything.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bunsan_control::{Control, Settings, StoreLocation};
use bunsan_proto::control::Source;
use bunsan_testkit::etcd::free_port;
use bunsan_testkit::Etcd;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;

/// The store location of `etcd`, with an optional `/PREFIX`.
fn store(etcd: &Etcd, prefix: &str) -> StoreLocation {
    format!("etcd://{}{prefix}", etcd.addr).parse().unwrap()
}

/// How many report keys etcd holds under the default prefix.
async fn reports_in_etcd(etcd: &Etcd) -> usize {
    // base64 of "/bunsan/control/reports/" and of its range end "/bunsan/control/reports0".
    let range =
        json!({"key": "L2J1bnNhbi9jb250cm9sL3JlcG9ydHMv", "range_end": "L2J1bnNhbi9jb250cm9sL3JlcG9ydHMw"});
    let answer = etcd.call("kv/range", &range).await.expect("etcd answers");
    answer["kvs"].as_array().map_or(0, Vec::len)
}

/// Settings for an instance on `etcd` under the default prefix.
fn on(etcd: &Etcd, dir: &Path) -> Settings {
    let mut settings = settings(dir);
    settings.store = store(etcd, "");
    settings
}

/// Polls `probe` until it gives something, failing the test after [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pin(addr: SocketAddr, server: &str, state: &str) -> StatusCode {
    let path = format!("/v1/pins/app/{server}");
    call(addr, Method::PUT, &path, None, Some(json!({"state": state}))).await.status
}

/// The state of `app/server` in `addr`'s table, if the row exists.
async fn shown(addr: SocketAddr, server: &str) -> Option<(Option<String>, Option<f64>, Source)> {
    let table = state(addr).await;
    table
        .servers
        .into_iter()
        .find(|r| r.pool == "app" && r.server == server)
        .map(|r| (r.state, r.load, r.source))
}

async fn registry(addr: SocketAddr) -> Value {
    body(&call(addr, Method::GET, "/v1/registry", None, None).await)
}

#[tokio::test]
async fn a_pin_made_at_one_instance_shows_in_the_others_table_and_watch() {
    let (etcd, dir) = (Etcd::start().await, tempfile::tempdir().unwrap());
    let a = start(on(&etcd, dir.path())).await;
    let b = start(on(&etcd, dir.path())).await;
    let mut watch = Watch::open(b.addr(), "/v1/watch", None).await;
    assert!(watch.next_table().await.servers.is_empty());

    assert_eq!(pin(a.addr(), "h1", "maint").await, StatusCode::OK);
    let table = watch.next_table().await;
    assert_eq!((row(&table, "h1").state.as_deref(), row(&table, "h1").pinned), (Some("maint"), true));

    let released = call(a.addr(), Method::DELETE, "/v1/pins/app/h1", None, None).await;
    assert_eq!(released.status, StatusCode::OK);
    assert!(watch.next_table().await.servers.is_empty(), "the release shows too");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn an_agent_registered_at_one_instance_may_report_to_the_other() {
    let (etcd, dir) = (Etcd::start().await, tempfile::tempdir().unwrap());
    let a = start(on(&etcd, dir.path())).await;
    let b = start(on(&etcd, dir.path())).await;
    register(a.addr(), &["h1"]).await;
    eventually("b learning of agent a1", || async {
        (registry(b.addr()).await["agents"][0]["agent"] == "a1").then_some(())
    })
    .await;
    report(b.addr(), &[("h1", 4.0, "up")]).await;
    let at_a = eventually("a seeing b's report", || async {
        shown(a.addr(), "h1").await.filter(|(_, load, _)| *load == Some(4.0))
    })
    .await;
    assert_eq!(at_a, (Some("ready".into()), Some(4.0), Source::Agent));
    assert!(registry(a.addr()).await["agents"][0]["last_report_ms"].is_u64());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_report_shows_at_the_other_instance_and_ages_out_when_no_more_come() {
    let (etcd, dir) = (Etcd::start().await, tempfile::tempdir().unwrap());
    let ttl = Duration::from_secs(2);
    let mut settings = on(&etcd, dir.path());
    settings.report_ttl = ttl;
    let a = start(settings.clone()).await;
    let b = start(settings).await;
    register(a.addr(), &["h1"]).await;
    eventually("b learning of h1", || async { shown(b.addr(), "h1").await }).await;

    report(a.addr(), &[("h1", 5.0, "up")]).await;
    let reported = Instant::now();
    eventually("b showing the report", || async {
        shown(b.addr(), "h1").await.filter(|(_, _, source)| *source == Source::Agent)
    })
    .await;
    assert_eq!(reports_in_etcd(&etcd).await, 1);
    eventually("the report ageing out at b", || async {
        shown(b.addr(), "h1").await.filter(|(_, _, source)| *source == Source::None)
    })
    .await;
    assert!(
        reported.elapsed() >= ttl - Duration::from_millis(300),
        "aged out early: {:?}",
        reported.elapsed()
    );
    // The lease (2 s, checked by etcd every 500 ms) takes the key with it.
    eventually("etcd dropping the report", || async { (reports_in_etcd(&etcd).await == 0).then_some(()) })
        .await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_report_outlives_the_instance_that_wrote_it_until_its_ttl() {
    let (etcd, dir) = (Etcd::start().await, tempfile::tempdir().unwrap());
    let mut settings = on(&etcd, dir.path());
    settings.report_ttl = Duration::from_secs(30);
    let a = start(settings.clone()).await;
    register(a.addr(), &["h1"]).await;
    report(a.addr(), &[("h1", 6.0, "up")]).await;
    a.shutdown().await;
    // The lease is the report's, not the writer's: the report stays for a newcomer.
    let c = start(settings).await;
    let at_c = eventually("c reading the report", || async {
        shown(c.addr(), "h1").await.filter(|(_, _, source)| *source == Source::Agent)
    })
    .await;
    assert_eq!(at_c.1, Some(6.0));
    c.shutdown().await;
}

#[tokio::test]
async fn a_restart_keeps_pins_registrations_subscribers_and_reports() {
    let (etcd, dir) = (Etcd::start().await, tempfile::tempdir().unwrap());
    let mut settings = on(&etcd, dir.path());
    settings.report_ttl = Duration::from_secs(30);
    let a = start(settings.clone()).await;
    register(a.addr(), &["h1", "h2"]).await;
    let id = subscribe(a.addr(), "n1", "change", None).await;
    assert_eq!(pin(a.addr(), "h2", "drain").await, StatusCode::OK);
    report(a.addr(), &[("h1", 3.0, "up")]).await;
    a.shutdown().await;

    let again = start(settings).await;
    assert_eq!(shown(again.addr(), "h2").await.unwrap().0.as_deref(), Some("drain"));
    let registry = registry(again.addr()).await;
    assert_eq!(registry["agents"][0]["servers"].as_array().unwrap().len(), 2);
    assert_eq!(registry["subscribers"][0]["id"], id.as_str());
    assert_eq!(subscribe(again.addr(), "n1", "change", None).await, id, "the same name keeps its id");
    let h1 = eventually("the report coming back", || async {
        shown(again.addr(), "h1").await.filter(|(_, _, source)| *source == Source::Agent)
    })
    .await;
    assert_eq!(h1.1, Some(3.0));
    again.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_of_one_instance_may_watch_at_another_under_its_id() {
    let (etcd, dir) = (Etcd::start().await, tempfile::tempdir().unwrap());
    let a = start(on(&etcd, dir.path())).await;
    let b = start(on(&etcd, dir.path())).await;
    let id = subscribe(a.addr(), "n1", "change", None).await;
    a.shutdown().await;
    eventually("b learning of the subscriber", || async {
        (registry(b.addr()).await["subscribers"][0]["id"] == id.as_str()).then_some(())
    })
    .await;
    let path = format!("/v1/watch?subscriber={id}");
    let mut watch = Watch::open(b.addr(), &path, None).await;
    assert_eq!(watch.status, StatusCode::OK, "b knows the subscriber a registered");
    watch.next_table().await;
    assert_eq!(subscribe(b.addr(), "n1", "change", None).await, id);
    assert_eq!(pin(b.addr(), "h1", "down").await, StatusCode::OK);
    assert_eq!(row(&watch.next_table().await, "h1").state.as_deref(), Some("down"));
    b.shutdown().await;
}

#[tokio::test]
async fn the_first_endpoint_that_answers_is_used_and_prefixes_keep_instances_apart() {
    let (etcd, dir) = (Etcd::start().await, tempfile::tempdir().unwrap());
    let mut settings = settings(dir.path());
    settings.store = format!("etcd://{},{}/team-a", free_port(), etcd.addr).parse().unwrap();
    let a = start(settings).await;
    let mut other = on(&etcd, dir.path());
    other.store = store(&etcd, "/team-b");
    let b = start(other).await;
    let c = start(on(&etcd, dir.path())).await;
    assert_eq!(pin(a.addr(), "h1", "maint").await, StatusCode::OK);
    assert_eq!(pin(b.addr(), "h2", "maint").await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (control, only) in [(&a, "h1"), (&b, "h2")] {
        let names: Vec<String> = state(control.addr()).await.servers.into_iter().map(|r| r.server).collect();
        assert_eq!(names, [only]);
    }
    assert!(state(c.addr()).await.servers.is_empty(), "the default prefix holds neither");
    for control in [a, b, c] {
        control.shutdown().await;
    }
}

#[tokio::test]
async fn an_unreachable_etcd_stops_the_start_naming_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let nobody = free_port();
    let mut settings = settings(dir.path());
    settings.store = format!("etcd://{nobody}").parse().unwrap();
    let error = Control::start(settings).await.unwrap_err().to_string();
    assert!(error.contains(&nobody.to_string()) && error.contains("no etcd endpoint answered"), "{error}");
}

#[tokio::test]
async fn a_corrupt_key_stops_the_start_naming_it() {
    let etcd = Etcd::start().await;
    // "/bunsan/control/pins/app/h1" → {"state":"off"}
    let put = json!({"key": "L2J1bnNhbi9jb250cm9sL3BpbnMvYXBwL2gx", "value": "eyJzdGF0ZSI6Im9mZiJ9"});
    etcd.call("kv/put", &put).await.expect("etcd takes the put");
    let dir = tempfile::tempdir().unwrap();
    let error = Control::start(on(&etcd, dir.path())).await.unwrap_err().to_string();
    assert!(error.contains("invalid value at /bunsan/control/pins/app/h1"), "{error}");
}

#[tokio::test]
async fn instances_carry_on_after_etcd_restarts() {
    let (mut etcd, dir) = (Etcd::start().await, tempfile::tempdir().unwrap());
    let a = start(on(&etcd, dir.path())).await;
    let b = start(on(&etcd, dir.path())).await;
    assert_eq!(pin(a.addr(), "h1", "maint").await, StatusCode::OK);
    eventually("b seeing the first pin", || async { shown(b.addr(), "h1").await }).await;

    etcd.kill();
    let reply = call(a.addr(), Method::PUT, "/v1/pins/app/h2", None, Some(json!({"state": "down"}))).await;
    let message = refused(&reply, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        message.contains("the change was not made") && message.contains(&etcd.addr.to_string()),
        "{message}"
    );
    assert_eq!(shown(b.addr(), "h1").await.unwrap().0.as_deref(), Some("maint"), "b keeps what it had");

    etcd.restart().await;
    eventually("a pin made after the restart", || async {
        (pin(a.addr(), "h2", "down").await == StatusCode::OK).then_some(())
    })
    .await;
    eventually("b seeing it through a new watch", || async { shown(b.addr(), "h2").await }).await;
    a.shutdown().await;
    b.shutdown().await;
}
