//! Operator pins (claim 5): they override reports, hold until released, survive a
//! restart, and are pushed like any change.

mod support;

use bunsan_proto::control::Source;
use http::{Method, StatusCode};
use serde_json::json;
use support::*;

#[tokio::test]
async fn a_pin_overrides_reports_until_released_and_is_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(settings(dir.path())).await;
    let addr = control.addr();
    register(addr, &["h1", "h2"]).await;
    report(addr, &[("h1", 20.0, "up"), ("h2", 15.0, "up")]).await;
    let mut watch = Watch::open(addr, "/v1/watch", None).await;
    watch.next_table().await;

    // [0059]'s example: host2 stopped, its load 0, its ratio 3.
    let pin = json!({"state": "down", "load": 0, "capacity": 3});
    let reply = call(addr, Method::PUT, "/v1/pins/app/h2", None, Some(pin)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let pinned = body(&reply);
    assert_eq!((pinned["state"].as_str(), pinned["capacity"].as_u64()), (Some("down"), Some(3)));
    assert_eq!((pinned["pinned"].as_bool(), pinned["source"].as_str()), (Some(true), Some("pin")));
    let pushed = watch.next_table().await;
    assert_eq!(row(&pushed, "h2").state.as_deref(), Some("down"));

    // Reports keep coming; the pin still wins.
    report(addr, &[("h2", 99.0, "up")]).await;
    let h2 = row(&state(addr).await, "h2").clone();
    assert_eq!((h2.state.as_deref(), h2.load, h2.source), (Some("down"), Some(0.0), Source::Pin));

    let released = call(addr, Method::DELETE, "/v1/pins/app/h2", None, None).await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.text());
    assert_eq!(body(&released)["source"], "agent");
    assert_eq!(body(&released)["load"], 99.0);
    let again = call(addr, Method::DELETE, "/v1/pins/app/h2", None, None).await;
    assert!(refused(&again, StatusCode::NOT_FOUND).contains("app/h2 is not pinned"));
    control.shutdown().await;
}

#[tokio::test]
async fn pins_and_registrations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(settings(dir.path())).await;
    register(first.addr(), &["h1"]).await;
    let id = subscribe(first.addr(), "n1", "periodic", Some(500)).await;
    let maint = json!({"state": "maint"});
    let reply = call(first.addr(), Method::PUT, "/v1/pins/app/h1", None, Some(maint)).await;
    assert_eq!(reply.status, StatusCode::OK);
    // A pin on a server no agent registered creates its row.
    let reply =
        call(first.addr(), Method::PUT, "/v1/pins/db/d1", None, Some(json!({"state": "drain"}))).await;
    assert_eq!(body(&reply)["state"], "drain");
    let last_version = state(first.addr()).await.version;
    first.shutdown().await;

    let second = start(settings(dir.path())).await;
    let table = state(second.addr()).await;
    assert!(table.version > last_version, "subscribers must not take the new tables for old ones");
    let h1 = row(&table, "h1");
    assert_eq!(
        (h1.state.as_deref(), h1.pinned, h1.addr.as_deref()),
        (Some("maint"), true, Some("10.0.0.1:80"))
    );
    let d1 = table.servers.iter().find(|r| r.pool == "db").unwrap();
    assert_eq!((d1.state.as_deref(), d1.addr.as_deref()), (Some("drain"), None));
    // The subscriber is still known, under the same id, and re-registering keeps it.
    let mut watch = Watch::open(second.addr(), &format!("/v1/watch?subscriber={id}"), None).await;
    assert_eq!(watch.status, StatusCode::OK);
    watch.next_table().await;
    assert_eq!(subscribe(second.addr(), "n1", "periodic", Some(500)).await, id);
    // Reports are not kept: the agent must report again.
    let reply = call(second.addr(), Method::DELETE, "/v1/pins/app/h1", None, None).await;
    assert_eq!(body(&reply)["source"], "none");
    second.shutdown().await;
}

#[tokio::test]
async fn bad_pins_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(settings(dir.path())).await;
    let addr = control.addr();
    let cases = [
        ("/v1/pins/app/h1", json!({"state": "stopped"}), "unknown server state"),
        ("/v1/pins/app/h1", json!({"state": "down", "load": -2}), "load must be"),
        ("/v1/pins/app/h1", json!({"state": "down", "capacity": 0}), "capacity must be 1 to 10000"),
        ("/v1/pins/app/h1", json!({"state": "down", "why": "x"}), "unknown field"),
        ("/v1/pins/app/h%201", json!({"state": "down"}), "invalid server name"),
    ];
    for (path, pin, expected) in cases {
        let reply = call(addr, Method::PUT, path, None, Some(pin)).await;
        let message = refused(&reply, StatusCode::BAD_REQUEST);
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
    assert!(state(addr).await.servers.is_empty());
    control.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_store_refuses_to_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.json");
    std::fs::write(&path, "{\"format\": 1, \"pins\": [").unwrap();
    let error = bunsan_control::Control::start(settings(dir.path())).await.unwrap_err().to_string();
    assert!(error.contains(&path.display().to_string()) && error.contains("corrupt"), "{error}");
}

#[tokio::test]
async fn a_change_that_cannot_be_saved_is_not_made() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path());
    settings.store = bunsan_control::StoreLocation::File(dir.path().join("missing-dir").join("c.json"));
    let control = start(settings).await;
    let reply =
        call(control.addr(), Method::PUT, "/v1/pins/app/h1", None, Some(json!({"state": "down"}))).await;
    let message = refused(&reply, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(message.contains("the change was not made: cannot write the store file"), "{message}");
    assert!(state(control.addr()).await.servers.is_empty());
    control.shutdown().await;
}
