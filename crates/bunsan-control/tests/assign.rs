//! [0051]'s second mode: control chooses each subscriber's server.

mod support;

use std::collections::HashMap;

use http::{Method, StatusCode};
use serde_json::json;
use support::*;

async fn assign(addr: std::net::SocketAddr, id: &str) -> Option<String> {
    let reply = call(addr, Method::GET, &format!("/v1/assign/app?subscriber={id}"), None, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let answer = body(&reply);
    assert_eq!(answer["pool"], "app");
    answer["server"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn subscribers_spread_over_equal_servers_never_onto_a_down_one_and_stick() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(settings(dir.path())).await;
    let addr = control.addr();
    register(addr, &["h1", "h2", "h3", "h4"]).await;
    report(addr, &[("h1", 10.0, "up"), ("h2", 10.0, "up"), ("h3", 10.0, "up"), ("h4", 0.0, "down")]).await;
    let mut ids = Vec::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in 0..30 {
        let id = subscribe(addr, &format!("n{i}"), "change", None).await;
        let server = assign(addr, &id).await.expect("a ready server");
        *counts.entry(server.clone()).or_default() += 1;
        ids.push((id, server));
    }
    assert!(!counts.contains_key("h4"), "never the down server: {counts:?}");
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|n| (8..=12).contains(n)), "roughly even: {counts:?}");
    for (id, server) in &ids[..5] {
        assert_eq!(assign(addr, id).await.as_ref(), Some(server), "sticks");
    }

    // A pinned-down server loses its subscribers to the others.
    let (moved_id, from) = ids[0].clone();
    let reply =
        call(addr, Method::PUT, &format!("/v1/pins/app/{from}"), None, Some(json!({"state": "down"}))).await;
    assert_eq!(reply.status, StatusCode::OK);
    let to = assign(addr, &moved_id).await.unwrap();
    assert!(to != from && to != "h4", "{from} -> {to}");
    control.shutdown().await;
}

#[tokio::test]
async fn no_ready_server_gives_null_and_mistakes_give_400() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(settings(dir.path())).await;
    let addr = control.addr();
    register(addr, &["h1"]).await;
    let id = subscribe(addr, "n1", "pull", None).await;
    assert_eq!(assign(addr, &id).await, None, "no report yet: nothing is ready");
    report(addr, &[("h1", 1.0, "up")]).await;
    assert_eq!(assign(addr, &id).await.as_deref(), Some("h1"));

    let get = |path: String| async move { call(addr, Method::GET, &path, None, None).await };
    assert!(refused(&get("/v1/assign/app".into()).await, StatusCode::BAD_REQUEST).contains("?subscriber=ID"));
    assert!(refused(&get("/v1/assign/app?subscriber=zz".into()).await, StatusCode::BAD_REQUEST)
        .contains("register first"));
    let unknown = get(format!("/v1/assign/web?subscriber={id}")).await;
    assert!(refused(&unknown, StatusCode::BAD_REQUEST).contains("unknown pool \"web\""));
    control.shutdown().await;
}
