//! Zero downtime: 30 s of constant load (keep-alive connections and new connections)
//! while the config is reloaded every second and, halfway, a second process takes the
//! sockets over from the first, which drains and exits 0. Not one request may fail and
//! not one connection may be refused.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bunsan_testkit::{Backend, Bunsan, Client};

use crate::{backends, bin, http_config};

const LOAD: Duration = Duration::from_secs(30);
const KEEP_ALIVE_CLIENTS: usize = 4;
const NEW_CONNECTION_CLIENTS: usize = 2;
/// Pause between one client's requests: with six clients, a few hundred requests/s.
const PACE: Duration = Duration::from_millis(10);

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    stop: AtomicBool,
}

impl Tally {
    fn fail(&self, what: &str) {
        if self.failed.fetch_add(1, Relaxed) < 5 {
            eprintln!("failed: {what}");
        }
    }
}

/// Sends requests over one connection, reconnecting when the node asks it to close
/// (as every HTTP/1.1 client does), until told to stop.
async fn keep_alive_client(addr: SocketAddr, tally: Arc<Tally>) {
    let mut client = None;
    while !tally.stop.load(Relaxed) {
        if client.is_none() {
            match Client::http1(addr).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tally.refused.fetch_add(1, Relaxed);
                    eprintln!("refused: {e}");
                    tokio::time::sleep(PACE).await;
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        match c.get("/").await {
            Ok(reply) if reply.status == 200 => {
                tally.ok.fetch_add(1, Relaxed);
                if reply.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
                    client = None;
                }
            }
            Ok(reply) => tally.fail(&format!("status {}", reply.status)),
            Err(e) => {
                tally.fail(&format!("keep-alive request: {e}"));
                client = None;
            }
        }
        tokio::time::sleep(PACE).await;
    }
}

/// One request per connection.
async fn new_connection_client(addr: SocketAddr, tally: Arc<Tally>) {
    while !tally.stop.load(Relaxed) {
        match Client::http1(addr).await {
            Err(e) => {
                tally.refused.fetch_add(1, Relaxed);
                eprintln!("refused: {e}");
            }
            Ok(mut c) => match c.get("/").await {
                Ok(reply) if reply.status == 200 => _ = tally.ok.fetch_add(1, Relaxed),
                Ok(reply) => tally.fail(&format!("status {}", reply.status)),
                Err(e) => tally.fail(&format!("new-connection request: {e}")),
            },
        }
        tokio::time::sleep(PACE).await;
    }
}

fn config(b: &[Backend], capacity: u32) -> String {
    http_config(&[(&b[0], capacity), (&b[1], 1), (&b[2], 1)], "algorithm = \"round-robin\"")
}

/// `POST /v1/reload` on whichever process holds the admin socket now.
async fn reload(admin: SocketAddr) -> u16 {
    let Ok(mut client) = Client::http1(admin).await else { return 0 };
    let req = http::Request::post("/v1/reload").header("host", "admin").body(Default::default()).unwrap();
    client.send(req).await.map_or(0, |r| r.status.as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_and_a_binary_upgrade_under_load_fail_no_request() {
    let b = backends(&["one", "two", "three"]).await;
    let mut old = Bunsan::start_upgradable(bin(), &config(&b, 1)).await.unwrap();
    let (addr, admin) = (old.listener("web"), old.admin());
    let tally = Arc::new(Tally::default());
    let mut clients = Vec::new();
    for _ in 0..KEEP_ALIVE_CLIENTS {
        clients.push(tokio::spawn(keep_alive_client(addr, tally.clone())));
    }
    for _ in 0..NEW_CONNECTION_CLIENTS {
        clients.push(tokio::spawn(new_connection_client(addr, tally.clone())));
    }

    let started = Instant::now();
    let (mut new, mut before_upgrade, mut at_old_exit, mut reloads) = (None, 0, 0, 0);
    for second in 1u32.. {
        tokio::time::sleep(Duration::from_secs(1)).await;
        old.write_config(&config(&b, 1 + second % 2));
        assert_eq!(reload(admin).await, 200, "reload {second} failed");
        reloads += 1;
        if new.is_none() && started.elapsed() >= LOAD / 2 {
            before_upgrade = tally.ok.load(Relaxed);
            new = Some(old.successor(bin(), "-2").await.unwrap());
            let status = old.wait_exit(Duration::from_secs(20)).await.expect("the old process exits");
            assert!(status.success(), "old process: {status}\n{}", old.stderr());
            at_old_exit = tally.ok.load(Relaxed);
        }
        if started.elapsed() >= LOAD {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    tally.stop.store(true, Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let new = new.expect("the upgrade ran");
    let (ok, failed, refused) =
        (tally.ok.load(Relaxed), tally.failed.load(Relaxed), tally.refused.load(Relaxed));
    eprintln!("{ok} ok, {failed} failed, {refused} refused, {reloads} reloads");
    assert_eq!((failed, refused), (0, 0), "old:\n{}\nnew:\n{}", old.stderr(), new.stderr());
    assert!(before_upgrade > 1000, "the old process served: {before_upgrade}");
    assert!(ok > at_old_exit + 1000, "the new process served: {} after the old one exited", ok - at_old_exit);
    assert!(new.stderr().contains("adopting the listening socket"), "{}", new.stderr());
    assert!(reloads >= 25);
}
