//! Hot reload against a real node: SIGHUP, `POST /v1/reload` and `bunsan ctl reload` add
//! and remove servers, refuse a broken config (the running one stays), and keep what an
//! unchanged server had (its pin, its counters).

use std::time::Duration;

use bunsan_proto::admin::PoolDetail;
use bunsan_testkit::{get, Bunsan, Client};
use nix::sys::signal::Signal;

use crate::{backends, bin, ctl, http_config, served_by};

async fn pool(node: &Bunsan) -> PoolDetail {
    let reply = get(node.admin(), "/v1/pools/app").await.unwrap();
    serde_json::from_str(&reply.text()).unwrap()
}

const RR: &str = "algorithm = \"round-robin\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_a_server_and_removes_one() {
    let b = backends(&["one", "two", "three"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1), (&b[1], 1)], RR)).await.unwrap();
    assert!(served_by(&node, 10).await.contains(&"two".to_owned()));

    node.write_config(&http_config(&[(&b[0], 1), (&b[2], 1)], RR));
    node.signal(Signal::SIGHUP);
    let reloaded =
        bunsan_testkit::eventually(Duration::from_secs(10), || node.stderr().contains("config reloaded"));
    assert!(reloaded.await, "no reload:\n{}", node.stderr());

    let two_before = b[1].hits();
    let served = served_by(&node, 20).await;
    assert!(served.contains(&"three".to_owned()), "the added server gets traffic: {served:?}");
    assert!(!served.contains(&"two".to_owned()), "the removed server still gets traffic");
    assert_eq!(b[1].hits(), two_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_reload_reports_changes_and_refuses_a_broken_config() {
    let b = backends(&["one", "two"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1)], RR)).await.unwrap();

    node.write_config(&http_config(&[(&b[0], 1), (&b[1], 1)], RR));
    let (ok, out, err) = ctl(&node, &["reload"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("servers added: app/two"), "{out}");
    assert!(served_by(&node, 10).await.contains(&"two".to_owned()));

    let broken = http_config(&[(&b[0], 1), (&b[1], 1)], RR)
        .replace("capacity = 1\n\n[[pool.server]]", "capacity = \"lots\"\n\n[[pool.server]]");
    node.write_config(&broken);
    let (ok, _, err) = ctl(&node, &["reload"]).await;
    assert!(!ok, "a broken config was accepted");
    assert!(
        err.contains("bunsan.toml:") && err.contains("capacity"),
        "the error names the file, line and key: {err}"
    );
    assert!(node.stderr().contains("reload refused"), "the node logs the refusal");
    let served = served_by(&node, 10).await;
    assert!(served.contains(&"one".to_owned()) && served.contains(&"two".to_owned()), "old config serves");
    assert_eq!(pool(&node).await.servers.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_answers_the_summary_or_422() {
    let b = backends(&["one", "two"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1), (&b[1], 1)], RR)).await.unwrap();
    let post = || async {
        let mut client = Client::http1(node.admin()).await.unwrap();
        let req = http::Request::post("/v1/reload").header("host", "admin").body(Default::default()).unwrap();
        client.send(req).await.unwrap()
    };

    node.write_config(&http_config(&[(&b[0], 1)], RR));
    let reply = post().await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let summary: bunsan_proto::admin::ReloadSummary = serde_json::from_str(&reply.text()).unwrap();
    assert_eq!(summary.servers_removed, ["app/two"]);

    node.write_config("[[pool]]\nname = \"app\"\nbogus = 1\n");
    let reply = post().await;
    assert_eq!(reply.status, 422);
    assert!(reply.text().contains("bogus"), "{}", reply.text());
    assert_eq!(served_by(&node, 5).await, vec!["one"; 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_server_keeps_its_pin_and_counters() {
    let b = backends(&["one", "two"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1), (&b[1], 1)], RR)).await.unwrap();
    assert!(ctl(&node, &["server", "app/one", "maint", "--pin"]).await.0);
    served_by(&node, 10).await;
    let before = pool(&node).await;

    node.write_config(&http_config(&[(&b[0], 1), (&b[1], 4)], RR));
    let (ok, out, err) = ctl(&node, &["reload"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("servers changed: app/two"), "{out}");

    let after = pool(&node).await;
    let (one, two) = (&after.servers[0], &after.servers[1]);
    assert!(one.pinned && one.state == "maint", "the pin survived: {one:?}");
    assert_eq!(two.capacity, 4);
    assert_eq!(two.requests_total, before.servers[1].requests_total, "counters carried over");
    assert!(two.requests_total >= 10);
    assert_eq!(served_by(&node, 10).await, vec!["two"; 10], "the pinned server still gets nothing");
}
