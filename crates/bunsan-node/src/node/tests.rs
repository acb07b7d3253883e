//! Reload against a real node on loopback: what carries over, what is refused.

use std::sync::Arc;
use std::time::Duration;

use bunsan_config::Config;

use super::{Node, StartOptions};
use crate::NodeError;

fn config(body: &str) -> Config {
    bunsan_config::parse(body, "test.toml".as_ref()).expect("valid test config")
}

const LISTENER: &str = "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\npool = \"app\"\n";

fn pool(name: &str, extra: &str, servers: &[(&str, u16, u32)]) -> String {
    let mut text = format!("[[pool]]\nname = \"{name}\"\n{extra}\n");
    for (server, port, capacity) in servers {
        text.push_str(&format!(
            "[[pool.server]]\nname = \"{server}\"\naddr = \"127.0.0.1:{port}\"\ncapacity = {capacity}\n"
        ));
    }
    text
}

fn server(node: &Node, pool: &str, name: &str) -> Arc<crate::server::Server> {
    let topology = node.inner.board.topology();
    topology.pool(pool).and_then(|(_, p)| p.server(name)).cloned().expect("server exists")
}

#[tokio::test]
async fn unchanged_servers_are_kept_and_moved_ones_replaced() {
    let first = format!("{LISTENER}{}", pool("app", "", &[("a", 1, 1), ("b", 2, 1)]));
    let node = Node::start(&config(&first)).await.unwrap();
    let (a, b) = (server(&node, "app", "a"), server(&node, "app", "b"));
    a.counters.requests_total.fetch_add(7, std::sync::atomic::Ordering::Relaxed);

    let second = format!("{LISTENER}{}", pool("app", "", &[("a", 1, 3), ("b", 9, 1), ("c", 3, 1)]));
    let summary = node.handle().apply(config(&second)).await.unwrap();

    assert!(Arc::ptr_eq(&a, &server(&node, "app", "a")), "a kept");
    assert!(!Arc::ptr_eq(&b, &server(&node, "app", "b")), "b moved: a new server");
    assert_eq!(server(&node, "app", "a").capacity(), 3, "the new capacity went through the board");
    assert_eq!(a.counters.requests_total.load(std::sync::atomic::Ordering::Relaxed), 7);
    assert_eq!(summary.servers_changed, ["app/a"]);
    assert_eq!(summary.servers_added, ["app/b", "app/c"]);
    assert_eq!(summary.servers_removed, ["app/b"]);
    assert_eq!(summary.pools_changed, ["app"]);
}

#[tokio::test]
async fn removed_pools_are_gone_and_sessions_kept_only_when_allowed() {
    let affinity = "affinity = { mode = \"client-ip\" }";
    let two = pool("app", affinity, &[("a", 1, 1), ("b", 2, 1)]);
    let other = pool("other", "", &[("x", 5, 1)]);
    let node = Node::start(&config(&format!("{LISTENER}{two}{other}"))).await.unwrap();
    let table = |node: &Node| node.inner.board.topology().pool("app").unwrap().1.affinity.clone().unwrap();
    let before = table(&node);

    let capacity_only = pool("app", affinity, &[("a", 1, 2), ("b", 2, 1)]);
    let summary = node.handle().apply(config(&format!("{LISTENER}{capacity_only}"))).await.unwrap();
    assert_eq!(summary.pools_removed, ["other"]);
    assert!(node.inner.board.topology().pool("other").is_none());
    assert!(Arc::ptr_eq(&before, &table(&node)), "same servers: sessions kept");

    let grown = pool("app", affinity, &[("a", 1, 2), ("b", 2, 1), ("c", 3, 1)]);
    node.handle().apply(config(&format!("{LISTENER}{grown}"))).await.unwrap();
    assert!(!Arc::ptr_eq(&before, &table(&node)), "server list changed: a fresh table");
}

#[tokio::test]
async fn a_broken_config_file_is_refused_and_the_running_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bunsan.toml");
    let good = format!("{LISTENER}{}", pool("app", "", &[("a", 1, 1)]));
    std::fs::write(&path, &good).unwrap();
    let options = StartOptions { config_path: Some(path.clone()), ..StartOptions::default() };
    let node = Node::start_with(&config(&good), options).await.unwrap();
    let a = server(&node, "app", "a");

    std::fs::write(&path, good.replace("capacity = 1", "capacity = \"many\"")).unwrap();
    let refused = node.reload().await.unwrap_err();
    assert!(matches!(refused, NodeError::Config(_)), "{refused}");
    assert!(refused.to_string().contains("capacity"), "names the key: {refused}");
    assert!(Arc::ptr_eq(&a, &server(&node, "app", "a")));
}

#[tokio::test]
async fn listeners_are_added_and_removed_and_a_bind_failure_refuses_everything() {
    let base = format!("{LISTENER}{}", pool("app", "", &[("a", 1, 1)]));
    let node = Node::start(&config(&base)).await.unwrap();
    let web = node.listener_addrs()[0].1;

    let extra = "[[listener]]\nname = \"extra\"\nlisten = \"127.0.0.1:0\"\npool = \"app\"\n";
    let summary = node.handle().apply(config(&format!("{extra}{base}"))).await.unwrap();
    assert_eq!(summary.listeners_added, ["extra"]);
    let addrs = node.listener_addrs();
    let extra_addr = addrs.iter().find(|(n, _)| n == "extra").expect("extra listens").1;
    assert_eq!(addrs.iter().find(|(n, _)| n == "web").unwrap().1, web, "web kept its socket");
    tokio::net::TcpStream::connect(extra_addr).await.expect("extra accepts");

    let taken = format!("[[listener]]\nname = \"clash\"\nlisten = \"{web}\"\npool = \"app\"\n{extra}{base}");
    assert!(matches!(node.handle().apply(config(&taken)).await, Err(NodeError::Bind { .. })));
    assert_eq!(node.listener_addrs().len(), 2, "nothing changed");

    let summary = node.handle().apply(config(&base)).await.unwrap();
    assert_eq!(summary.listeners_removed, ["extra"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(tokio::net::TcpStream::connect(extra_addr).await.is_err(), "extra's socket is closed");
    tokio::net::TcpStream::connect(web).await.expect("web still accepts");
}
