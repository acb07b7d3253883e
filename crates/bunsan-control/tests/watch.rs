//! Distribution (claims 2 and 4, and pull subscribers' silence) and staleness, watched
//! over real HTTP streams.

mod support;

use std::time::Duration;

use bunsan_proto::control::{Event, Source};
use http::StatusCode;
use support::*;

#[tokio::test]
async fn a_change_watcher_gets_the_table_then_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(settings(dir.path())).await;
    let addr = control.addr();
    register(addr, &["h1"]).await;
    let id = subscribe(addr, "n1", "change", None).await;
    let mut watch = Watch::open(addr, &format!("/v1/watch?subscriber={id}"), None).await;
    assert_eq!((watch.status, watch.content_type.as_str()), (StatusCode::OK, "application/x-ndjson"));
    let first = watch.next_table().await;
    assert_eq!(row(&first, "h1").source, Source::None);

    report(addr, &[("h1", 3.0, "up")]).await;
    let second = watch.next_table().await;
    assert!(second.version > first.version);
    assert_eq!(row(&second, "h1").load, Some(3.0));

    let registry = body(&call(addr, http::Method::GET, "/v1/registry", None, None).await);
    assert_eq!(registry["subscribers"][0]["connected"], true);
    control.shutdown().await;
    assert!(watch.ended().await, "shutdown ends the stream");
}

#[tokio::test]
async fn an_anonymous_watch_behaves_as_change_and_is_quiet_between_changes() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(settings(dir.path())).await;
    let addr = control.addr();
    register(addr, &["h1"]).await;
    let mut watch = Watch::open(addr, "/v1/watch", None).await;
    let first = watch.next_table().await;
    // Nothing changes: only heartbeats (every 200 ms here) carry the same version.
    for _ in 0..2 {
        assert_eq!(watch.next().await, Event::Heartbeat { version: first.version });
    }
    report(addr, &[("h1", 1.0, "down")]).await;
    assert_eq!(row(&watch.next_table().await, "h1").state.as_deref(), Some("down"));
    control.shutdown().await;
}

#[tokio::test]
async fn a_change_watcher_only_ever_moves_forward_to_the_newest_table() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(settings(dir.path())).await;
    let addr = control.addr();
    register(addr, &["h1"]).await;
    let mut watch = Watch::open(addr, "/v1/watch", None).await;
    watch.next_table().await;
    for load in 1..=50 {
        report(addr, &[("h1", f64::from(load), "up")]).await;
    }
    // Whatever it skipped, each table it gets is newer than the one before, and the last
    // is the newest.
    let mut last = 0;
    loop {
        let table = watch.next_table().await;
        assert!(table.version > last, "{} after {last}", table.version);
        last = table.version;
        if row(&table, "h1").load == Some(50.0) {
            break;
        }
    }
    control.shutdown().await;
}

#[tokio::test]
async fn a_periodic_watcher_gets_a_table_every_interval() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(settings(dir.path())).await;
    let addr = control.addr();
    register(addr, &["h1"]).await;
    let id = subscribe(addr, "n1", "periodic", Some(50)).await;
    let mut watch = Watch::open(addr, &format!("/v1/watch?subscriber={id}"), None).await;
    let started = std::time::Instant::now();
    let mut versions = Vec::new();
    for _ in 0..5 {
        versions.push(watch.next_table().await.version);
    }
    // Five tables with no change in between: they come from the period, not from changes.
    assert!(versions.windows(2).all(|w| w[0] == w[1]), "{versions:?}");
    assert!(started.elapsed() >= Duration::from_millis(4 * 50), "one per interval, not faster");
    control.shutdown().await;
}

#[tokio::test]
async fn a_pull_subscriber_gets_only_heartbeats_and_pulls_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(settings(dir.path())).await;
    let addr = control.addr();
    register(addr, &["h1"]).await;
    let id = subscribe(addr, "n1", "pull", None).await;
    let mut watch = Watch::open(addr, &format!("/v1/watch?subscriber={id}"), None).await;
    assert!(matches!(watch.next().await, Event::Heartbeat { .. }));
    report(addr, &[("h1", 2.0, "up")]).await;
    let version = state(addr).await.version;
    // Even after a change, the stream carries heartbeats only; they show the new version.
    loop {
        match watch.next().await {
            Event::Heartbeat { version: v } if v == version => break,
            Event::Heartbeat { .. } => continue,
            other => panic!("a pull subscriber was pushed a table: {other:?}"),
        }
    }
    assert!(matches!(watch.next().await, Event::Heartbeat { .. }));
    control.shutdown().await;
}

#[tokio::test]
async fn server_sent_events_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(settings(dir.path())).await;
    let addr = control.addr();
    register(addr, &["h1"]).await;
    let mut watch = Watch::open(addr, "/v1/watch", Some("text/event-stream")).await;
    assert_eq!(watch.content_type, "text/event-stream");
    for _ in 0..2 {
        let event = watch.next_raw(b"\n\n").await;
        let data = event.strip_prefix("data: ").unwrap_or_else(|| panic!("{event:?}"));
        assert!(!data.contains('\n'));
        serde_json::from_str::<Event>(data).unwrap();
    }
    control.shutdown().await;
}

#[tokio::test]
async fn stale_reports_empty_their_row_and_move_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path());
    settings.report_ttl = Duration::from_millis(300);
    let control = start(settings).await;
    let addr = control.addr();
    register(addr, &["h1"]).await;
    let mut watch = Watch::open(addr, "/v1/watch", None).await;
    watch.next_table().await;
    report(addr, &[("h1", 4.0, "up")]).await;
    let fresh = watch.next_table().await;
    assert_eq!(row(&fresh, "h1").source, Source::Agent);
    // No report follows: within the TTL plus a check period the row empties, pushed.
    let stale = watch.next_table().await;
    assert!(stale.version > fresh.version);
    let h1 = row(&stale, "h1");
    assert_eq!((h1.state.as_deref(), h1.load, h1.source), (None, None, Source::None));
    assert!(h1.age_ms.is_some_and(|ms| ms >= 300), "{h1:?}");
    assert_eq!(state(addr).await.version, stale.version);
    control.shutdown().await;
}

#[tokio::test]
async fn a_change_is_sent_as_just_the_changed_rows_and_a_slow_watcher_gets_the_whole_table() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(settings(dir.path())).await;
    let addr = control.addr();
    register(addr, &["h1", "h2", "h3"]).await;
    let mut watch = Watch::open(addr, "/v1/watch", None).await;
    let first = watch.next_table().await;
    report(addr, &[("h2", 7.0, "down")]).await;
    let event = loop {
        match watch.next().await {
            Event::Heartbeat { .. } => continue,
            other => break other,
        }
    };
    let Event::Changes { from, servers, removed, .. } = event else {
        panic!("expected changes, got {event:?}")
    };
    assert_eq!(from, first.version);
    assert_eq!(servers.len(), 1, "only the changed row: {servers:?}");
    assert_eq!((servers[0].server.as_str(), servers[0].state.as_deref()), ("h2", Some("down")));
    assert!(removed.is_empty());

    // A watcher that has not read for a while is past the version a change applies to:
    // it must be sent the whole table, never a change it cannot apply.
    let mut slow = Watch::open(addr, "/v1/watch", None).await;
    slow.next_table().await;
    for load in 1..=20 {
        report(addr, &[("h1", f64::from(load), "up")]).await;
    }
    let mut last = slow.next_table().await;
    while row(&last, "h1").load != Some(20.0) {
        last = slow.next_table().await;
    }
    assert_eq!(last.version, state(addr).await.version);
    control.shutdown().await;
}
