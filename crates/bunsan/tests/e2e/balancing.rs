//! Shares of traffic by algorithm and capacity.

use std::time::Duration;

use bunsan_testkit::{Bunsan, Client};

use crate::{backends, bin, http_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_gives_capacities_2_1_1_exactly_half_a_quarter_and_a_quarter() {
    let b = backends(&["host1", "host2", "host3"]).await;
    let config = http_config(&[(&b[0], 2), (&b[1], 1), (&b[2], 1)], "algorithm = \"round-robin\"");
    let node = Bunsan::start(bin(), &config).await.unwrap();
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    for _ in 0..400 {
        assert_eq!(client.get("/").await.unwrap().status, 200);
    }
    assert_eq!([b[0].hits(), b[1].hits(), b[2].hits()], [200, 100, 100]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_load_shares_follow_capacity_under_steady_concurrent_load() {
    let b = backends(&["host1", "host2", "host3"]).await;
    let config = http_config(&[(&b[0], 2), (&b[1], 1), (&b[2], 1)], "algorithm = \"least-load\"");
    let node = Bunsan::start(bin(), &config).await.unwrap();
    let addr = node.listener("web");
    // Equal latency everywhere (20 ms), 8 clients back to back: only capacity differs.
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(tokio::spawn(async move {
            let mut client = Client::http1(addr).await.unwrap();
            for _ in 0..60 {
                assert_eq!(client.get("/sleep/20").await.unwrap().status, 200);
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let hits = [b[0].hits(), b[1].hits(), b[2].hits()];
    let total: u64 = hits.iter().sum();
    assert_eq!(total, 480);
    let shares = hits.map(|h| h as f64 / total as f64);
    for (share, expected) in shares.iter().zip([0.5, 0.25, 0.25]) {
        assert!((share - expected).abs() < 0.06, "shares {shares:?} should be about 50/25/25");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_keeps_a_key_on_one_server_and_spreads_keys() {
    let b = backends(&["host1", "host2", "host3"]).await;
    let extra = "algorithm = \"maglev\"\nhash_key = \"header:x-user\"";
    let node =
        Bunsan::start(bin(), &http_config(&[(&b[0], 1), (&b[1], 1), (&b[2], 1)], extra)).await.unwrap();
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    let mut owners = std::collections::HashSet::new();
    for user in 0..30 {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5 {
            let req =
                http::Request::get("/").header("x-user", format!("user-{user}")).body(Default::default());
            let reply = client.send(req.unwrap()).await.unwrap();
            seen.insert(reply.header("x-backend").unwrap().to_owned());
        }
        assert_eq!(seen.len(), 1, "user-{user} moved between servers: {seen:?}");
        owners.extend(seen);
    }
    assert_eq!(owners.len(), 3, "30 keys should reach all three servers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_forwards_and_reuses_upstream_connections() {
    for algorithm in ["least-load", "round-robin", "least-conn", "p2c-ewma", "maglev", "random"] {
        let b = backends(&["host1", "host2"]).await;
        let extra = format!("algorithm = \"{algorithm}\"");
        let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1), (&b[1], 1)], &extra)).await.unwrap();
        let mut client = Client::http1(node.listener("web")).await.unwrap();
        for _ in 0..50 {
            assert_eq!(client.get("/").await.unwrap().status, 200, "{algorithm}");
        }
        // Sequential requests need one upstream connection per server, not one per request.
        let connections = b[0].connections() + b[1].connections();
        assert!(connections <= 4, "{algorithm}: {connections} upstream connections for 50 requests");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
