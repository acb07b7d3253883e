//! The admin API and `bunsan ctl`: live status, state changes, pins, metrics, tokens.

use bunsan_testkit::{get, Bunsan, Client};

use crate::{backends, bin, ctl, http_config, served_by};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maint_stops_traffic_at_once_and_ready_brings_it_back() {
    let b = backends(&["host1", "host2", "host3"]).await;
    let config = http_config(&[(&b[0], 1), (&b[1], 1), (&b[2], 1)], "algorithm = \"round-robin\"");
    let node = Bunsan::start(bin(), &config).await.unwrap();

    let (ok, out, err) = ctl(&node, &["server", "app/host2", "maint"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "app/host2: maint\n");
    let served = served_by(&node, 60).await;
    assert!(!served.contains(&"host2".to_owned()), "host2 in maint still got traffic");
    assert_eq!(b[1].hits(), 0);

    assert!(ctl(&node, &["server", "app/host2", "ready"]).await.0);
    let served = served_by(&node, 60).await;
    assert_eq!(served.iter().filter(|s| *s == "host2").count(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_holds_until_released() {
    let b = backends(&["host1", "host2"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1), (&b[1], 1)], "")).await.unwrap();

    let (ok, out, _) = ctl(&node, &["server", "app/host1", "drain", "--pin"]).await;
    assert!(ok);
    assert_eq!(out, "app/host1: drain (pinned)\n");
    // An unpinned change does not override the pin.
    let (_, out, _) = ctl(&node, &["server", "app/host1", "ready"]).await;
    assert_eq!(out, "app/host1: drain (pinned)\n");
    assert!(served_by(&node, 20).await.iter().all(|s| s == "host2"));

    let (_, out, _) = ctl(&node, &["--json", "pool", "app"]).await;
    let pool: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pool["servers"][0]["state"], "drain");
    assert_eq!(pool["servers"][0]["pinned"], true);

    let (ok, out, _) = ctl(&node, &["unpin", "app/host1"]).await;
    assert!(ok);
    // Released: the last unpinned setting (ready) applies again.
    assert_eq!(out, "app/host1: ready\n");
    assert!(served_by(&node, 20).await.contains(&"host1".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_shows_tables_and_json_and_reports_mistakes() {
    let b = backends(&["host1"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 2)], "")).await.unwrap();
    served_by(&node, 3).await;

    let (ok, out, _) = ctl(&node, &["pools"]).await;
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("POOL  ALGORITHM   SERVERS  READY  IN-FLIGHT  REQUESTS"), "{out}");
    assert!(lines[1].starts_with("app   least-load  1        1      0          3"), "{out}");

    let (_, out, _) = ctl(&node, &["pool", "app"]).await;
    assert!(out.contains("host1") && out.contains(&b[0].addr.to_string()), "{out}");

    let (_, out, _) = ctl(&node, &["pools", "--json"]).await;
    let pools: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pools[0]["requests_total"], 3);

    let (ok, _, err) = ctl(&node, &["server", "app/nope", "maint"]).await;
    assert!(!ok);
    assert!(err.contains("404") && err.contains("no server named \"nope\""), "{err}");
    let (ok, _, err) = ctl(&node, &["server", "app/host1", "down"]).await;
    assert!(!ok);
    assert!(err.contains("cannot be set by an operator"), "{err}");
    let (ok, _, err) = ctl(&node, &["server", "host1", "maint"]).await;
    assert!(!ok && err.contains("expected POOL/SERVER"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_pool_server_and_status() {
    let b = backends(&["host1"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1)], "")).await.unwrap();
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    for _ in 0..7 {
        client.get("/").await.unwrap();
    }
    for _ in 0..2 {
        client.get("/status/404").await.unwrap();
    }
    let metrics = get(node.admin(), "/metrics").await.unwrap().text();
    for line in [
        "bunsan_requests_total{pool=\"app\",server=\"host1\",class=\"2xx\"} 7",
        "bunsan_requests_total{pool=\"app\",server=\"host1\",class=\"4xx\"} 2",
        "bunsan_in_flight{pool=\"app\",server=\"host1\"} 0",
        "bunsan_upstream_connect_errors_total{pool=\"app\",server=\"host1\"} 0",
        "bunsan_response_head_seconds_count{pool=\"app\",server=\"host1\"} 9",
        "bunsan_server_state{pool=\"app\",server=\"host1\",state=\"ready\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required() {
    let b = backends(&["host1"]).await;
    let config = http_config(&[(&b[0], 1)], "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"correct-horse-battery\"",
    );
    let node = Bunsan::start(bin(), &config).await.unwrap();
    assert_eq!(get(node.admin(), "/v1/pools").await.unwrap().status, 401);
    assert_eq!(get(node.admin(), "/metrics").await.unwrap().status, 401);
    let (ok, _, err) = ctl(&node, &["pools"]).await;
    assert!(!ok && err.contains("401"), "{err}");
    let (ok, _, err) = ctl(&node, &["--token", "correct-horse-battery", "pools"]).await;
    assert!(ok, "{err}");
    assert!(!node.stderr().contains("correct-horse-battery"), "the token leaked into the log");
}
