//! Agents, reports and the pulled table (claims 1 and 3), over real HTTP.

mod support;

use std::net::SocketAddr;

use bunsan_control::{ControlError, Settings, StoreLocation, Token, Tokens};
use bunsan_proto::control::Source;
use http::{Method, StatusCode};
use serde_json::json;
use support::*;

#[tokio::test]
async fn an_agent_registers_reports_and_the_table_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(settings(dir.path())).await;
    let addr = control.addr();
    register(addr, &["h1", "h2"]).await;
    let before = state(addr).await;
    assert_eq!(before.servers.len(), 2);
    assert!(before.servers.iter().all(|r| r.source == Source::None && r.state.is_none()));

    report(addr, &[("h1", 20.0, "up"), ("h2", 15.0, "down")]).await;
    let after = state(addr).await;
    assert!(after.version > before.version);
    let h1 = row(&after, "h1");
    assert_eq!((h1.state.as_deref(), h1.load, h1.source), (Some("ready"), Some(20.0), Source::Agent));
    assert_eq!(h1.addr.as_deref(), Some("10.0.0.1:80"));
    assert!(h1.age_ms.is_some_and(|ms| ms < 10_000));
    assert_eq!(row(&after, "h2").state.as_deref(), Some("down"));

    let registry = body(&call(addr, Method::GET, "/v1/registry", None, None).await);
    assert_eq!(registry["agents"][0]["agent"], "a1");
    assert!(registry["agents"][0]["last_report_ms"].is_u64());
    control.shutdown().await;
}

#[tokio::test]
async fn bad_reports_are_refused_whole_and_leave_the_table_alone() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(settings(dir.path())).await;
    let addr = control.addr();
    register(addr, &["h1"]).await;
    report(addr, &[("h1", 5.0, "up")]).await;
    let before = state(addr).await;

    let post = |body: Vec<u8>| call_raw(addr, Method::POST, "/v1/reports", None, body);
    let good = json!({"pool": "app", "server": "h1", "load": 9, "state": "up"});
    let cases = [
        (b"[{\"pool\":".to_vec(), "invalid JSON"),
        (json!({"pool": "app"}).to_string().into_bytes(), "JSON array"),
        (
            json!([good, {"pool": "app", "server": "h9", "load": 1, "state": "up"}]).to_string().into_bytes(),
            "report 1 (app/h9): unknown server: no agent registered app/h9",
        ),
        (
            json!([good, {"pool": "web", "server": "h1", "load": 1, "state": "up"}]).to_string().into_bytes(),
            "report 1 (web/h1): unknown server",
        ),
        (
            json!([good, {"pool": "app", "server": "h1", "load": -1, "state": "up"}])
                .to_string()
                .into_bytes(),
            "report 1 (app/h1): load must be a finite number ≥ 0, not -1",
        ),
        (br#"[{"pool":"app","server":"h1","load":NaN,"state":"up"}]"#.to_vec(), "invalid JSON"),
        (br#"[{"pool":"app","server":"h1","load":1e999,"state":"up"}]"#.to_vec(), "invalid JSON"),
        (
            json!([{"pool": "app", "server": "h1", "load": 1, "state": "sideways"}]).to_string().into_bytes(),
            "report 0 (app/h1): unknown variant `sideways`",
        ),
        (
            format!("[{}]", vec![good.to_string(); 10_001].join(",")).into_bytes(),
            "too many reports: 10001 (at most 10000 per request)",
        ),
        (vec![b' '; 1024 * 1024 + 1], "larger than 1024 KiB"),
    ];
    for (body, expected) in cases {
        let message = refused(&post(body).await, StatusCode::BAD_REQUEST);
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
    let after = state(addr).await;
    assert_eq!(after.version, before.version);
    assert_eq!(row(&after, "h1").load, Some(5.0));

    // Exactly 10,000 is fine.
    let most = format!("[{}]", vec![good.to_string(); 10_000].join(","));
    assert_eq!(post(most.into_bytes()).await.status, StatusCode::OK);
    control.shutdown().await;
}

#[tokio::test]
async fn bad_registrations_and_unknown_endpoints_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(settings(dir.path())).await;
    let addr = control.addr();
    let agent = |servers| json!({"agent": "a1", "method": "sockets", "servers": servers});
    let reply = call(
        addr,
        Method::POST,
        "/v1/agents",
        None,
        Some(agent(json!([{"pool": "a/b", "server": "h", "addr": "10.0.0.1:80"}]))),
    )
    .await;
    assert!(refused(&reply, StatusCode::BAD_REQUEST).contains("invalid pool name \"a/b\""));
    let reply = call(addr, Method::POST, "/v1/agents", None, Some(json!({"agent": "a1"}))).await;
    assert!(refused(&reply, StatusCode::BAD_REQUEST).contains("missing field"));
    let reply =
        call(addr, Method::POST, "/v1/subscribers", None, Some(json!({"name": "n", "kind": "phone"}))).await;
    assert!(refused(&reply, StatusCode::BAD_REQUEST).contains("unknown kind"));
    let reply = call(addr, Method::GET, "/v1/nothing", None, None).await;
    assert!(refused(&reply, StatusCode::NOT_FOUND).contains("/v1/nothing"));
    let reply = call(addr, Method::DELETE, "/v1/state", None, None).await;
    refused(&reply, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), Some("GET"));
    let reply = call(addr, Method::GET, "/v1/watch?subscriber=nobody", None, None).await;
    assert!(refused(&reply, StatusCode::BAD_REQUEST).contains("register first"));
    control.shutdown().await;
}

fn tokens() -> Tokens {
    Tokens {
        agent: Some(Token::new("agent-t")),
        subscriber: Some(Token::new("sub-t")),
        operator: Some(Token::new("op-t")),
    }
}

#[tokio::test]
async fn each_role_needs_its_token_and_the_operator_may_do_anything() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path());
    settings.tokens = tokens();
    let control = start(settings).await;
    let addr = control.addr();
    let registration = json!({"agent": "a1", "method": "sockets", "servers": []});
    let calls: [(Method, &str, Option<serde_json::Value>, &str); 4] = [
        (Method::POST, "/v1/agents", Some(registration), "agent-t"),
        (Method::GET, "/v1/state", None, "sub-t"),
        (Method::GET, "/v1/assign/app?subscriber=x", None, "sub-t"),
        (Method::GET, "/v1/registry", None, "op-t"),
    ];
    for (method, path, body, token) in calls {
        let without = call(addr, method.clone(), path, None, body.clone()).await;
        assert!(refused(&without, StatusCode::UNAUTHORIZED).contains("bearer token"), "{path}");
        let wrong = call(addr, method.clone(), path, Some("agent-tx"), body.clone()).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{path}");
        for good in [token, "op-t"] {
            let reply = call(addr, method.clone(), path, Some(good), body.clone()).await;
            assert_ne!(reply.status, StatusCode::UNAUTHORIZED, "{path} with {good}: {}", reply.text());
        }
    }
    let reply = call(addr, Method::GET, "/v1/registry", Some("sub-t"), None).await;
    assert!(refused(&reply, StatusCode::UNAUTHORIZED).contains("operator token"));
    let reply = call(addr, Method::POST, "/v1/reports", Some("sub-t"), Some(json!([]))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    control.shutdown().await;
}

#[tokio::test]
async fn a_public_address_without_every_token_is_refused() {
    let public: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let missing = Tokens { subscriber: None, ..tokens() };
    let error = missing.check(public).unwrap_err();
    assert!(matches!(error, ControlError::MissingTokens { .. }));
    assert!(error.to_string().contains("without the subscriber token"), "{error}");
    assert!(tokens().check(public).is_ok());

    // Control::start refuses before binding anything.
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::new(public, StoreLocation::File(dir.path().join("c.json")));
    let error = bunsan_control::Control::start(settings).await.unwrap_err();
    assert!(
        error.to_string().contains("the agent token and the subscriber token and the operator token"),
        "{error}"
    );
}
