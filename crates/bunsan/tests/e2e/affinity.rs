//! Session affinity (seed 000): signed identifiers, stickiness, idle expiry counted from
//! the client's disconnect, forged identifiers, several nodes sharing a key.

use std::collections::HashMap;
use std::time::Duration;

use bunsan_testkit::{get, Backend, Bunsan, Client, Reply, SelfSigned};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{backends, bin, http_config, run};

const KEY: &str = "an-e2e-test-session-key-of-40-characters";

/// A round-robin pool (so a client without affinity would move every request) with
/// `affinity` and an inline key.
fn sticky_config(servers: &[&Backend], affinity: &str) -> String {
    let servers: Vec<(&Backend, u32)> = servers.iter().map(|b| (*b, 1)).collect();
    let pool = format!("algorithm = \"round-robin\"\naffinity = {{ {affinity} }}");
    format!("[node]\nsession_key = \"{KEY}\"\n\n{}", http_config(&servers, &pool))
}

/// The `name=value` part of a `Set-Cookie` header, if the reply has one.
fn issued_cookie(reply: &Reply) -> Option<String> {
    let header = reply.header("set-cookie")?;
    header.split(';').next().map(str::to_owned)
}

async fn get_with(client: &mut Client, header: (&str, &str)) -> Reply {
    let req = Request::get("/").header(header.0, header.1).body(Full::new(Bytes::new())).unwrap();
    client.send(req).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_keeping_client_stays_on_one_server_over_its_own_upstream_connection() {
    let b = backends(&["host1", "host2", "host3"]).await;
    let node =
        Bunsan::start(bin(), &sticky_config(&[&b[0], &b[1], &b[2]], "mode = \"cookie\"")).await.unwrap();
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    let first = client.get("/").await.unwrap();
    let set_cookie = first.header("set-cookie").expect("the first response issues an identifier");
    assert!(set_cookie.starts_with("bunsan_session="), "{set_cookie}");
    assert!(set_cookie.ends_with("; Path=/; HttpOnly; SameSite=Lax"), "{set_cookie}");
    let cookie = issued_cookie(&first).unwrap();
    let home = first.header("x-backend").unwrap().to_owned();
    for _ in 0..99 {
        let reply = get_with(&mut client, ("cookie", &format!("theme=dark; {cookie}"))).await;
        assert_eq!(reply.header("x-backend"), Some(home.as_str()));
        assert_eq!(reply.header("set-cookie"), None, "a valid identifier is not reissued");
    }
    let server = b.iter().find(|s| s.name == home).unwrap();
    assert_eq!(server.hits(), 100);
    assert_eq!(server.connections(), 1, "the session's requests should share its upstream connection");
    let last = server.seen().pop().unwrap();
    assert_eq!(last.headers["cookie"], "theme=dark", "bunsan's identifier must not reach the server");
    let metrics = get(node.admin(), "/metrics").await.unwrap().text();
    assert!(metrics.contains("bunsan_session_requests_total{pool=\"app\"} 99"), "{metrics}");
    assert!(metrics.contains("bunsan_session_connection_reuses_total{pool=\"app\"} 99"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_new_clients_are_spread_by_the_pools_balancer() {
    let b = backends(&["host1", "host2", "host3"]).await;
    let node =
        Bunsan::start(bin(), &sticky_config(&[&b[0], &b[1], &b[2]], "mode = \"cookie\"")).await.unwrap();
    let mut sessions: HashMap<String, usize> = HashMap::new();
    for _ in 0..50 {
        let reply = get(node.listener("web"), "/").await.unwrap();
        assert!(issued_cookie(&reply).is_some());
        *sessions.entry(reply.header("x-backend").unwrap().to_owned()).or_default() += 1;
    }
    let mut counts: Vec<usize> = sessions.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(counts, [16, 17, 17], "round-robin spreads 50 sessions evenly: {sessions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_clock_runs_from_the_clients_disconnect() {
    let b = backends(&["host1", "host2", "host3"]).await;
    let affinity = "mode = \"cookie\", idle_timeout = \"2s\"";
    let node = Bunsan::start(bin(), &sticky_config(&[&b[0], &b[1], &b[2]], affinity)).await.unwrap();
    let addr = node.listener("web");

    // Back after 1 s: same server, same identifier.
    let mut client = Client::http1(addr).await.unwrap();
    let first = client.get("/").await.unwrap();
    let cookie = issued_cookie(&first).unwrap();
    drop(client);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut client = Client::http1(addr).await.unwrap();
    let back = get_with(&mut client, ("cookie", &cookie)).await;
    assert_eq!(back.header("set-cookie"), None);
    assert_eq!(back.header("x-backend"), first.header("x-backend"));

    // A connection that stays open keeps the session alive, however long it is quiet.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = get_with(&mut client, ("cookie", &cookie)).await;
    assert_eq!(still.header("set-cookie"), None, "an open connection must stop the idle clock");
    drop(client);

    // Back after 3 s without a connection: a new session and identifier, never an error.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut client = Client::http1(addr).await.unwrap();
    let later = get_with(&mut client, ("cookie", &cookie)).await;
    assert_eq!(later.status, 200);
    let renewed = issued_cookie(&later).expect("an expired identifier gets a new one");
    assert_ne!(renewed, cookie);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tampered_or_truncated_identifiers_get_a_normal_response_and_a_fresh_one() {
    let b = backends(&["host1", "host2"]).await;
    let node = Bunsan::start(bin(), &sticky_config(&[&b[0], &b[1]], "mode = \"cookie\"")).await.unwrap();
    let first = get(node.listener("web"), "/").await.unwrap();
    let cookie = issued_cookie(&first).unwrap();
    let (name, token) = cookie.split_once('=').unwrap();
    let mut flipped = token.as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let forged = [
        String::from_utf8(flipped).unwrap(),
        token[..token.len() - 1].to_owned(),
        token[..20].to_owned(),
        "garbage".to_owned(),
        String::new(),
    ];
    for bad in &forged {
        let mut client = Client::http1(node.listener("web")).await.unwrap();
        let reply = get_with(&mut client, ("cookie", &format!("{name}={bad}"))).await;
        assert_eq!(reply.status, 200, "{bad}");
        let fresh = issued_cookie(&reply).expect("a bad identifier is replaced");
        assert_ne!(fresh, cookie);
    }
    let metrics = get(node.admin(), "/metrics").await.unwrap().text();
    assert!(metrics.contains("bunsan_session_identifiers_invalid_total{pool=\"app\"} 5"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_the_key_honour_each_others_identifiers() {
    let b = backends(&["host1", "host2", "host3"]).await;
    let config = sticky_config(&[&b[0], &b[1], &b[2]], "mode = \"cookie\"");
    let node_a = Bunsan::start(bin(), &config).await.unwrap();
    let node_b = Bunsan::start(bin(), &config).await.unwrap();
    let other_key = config.replace(KEY, "a-different-key-for-the-third-node-0123456");
    let node_c = Bunsan::start(bin(), &other_key).await.unwrap();
    for _ in 0..5 {
        let first = get(node_a.listener("web"), "/").await.unwrap();
        let cookie = issued_cookie(&first).unwrap();
        let mut at_b = Client::http1(node_b.listener("web")).await.unwrap();
        for _ in 0..3 {
            let reply = get_with(&mut at_b, ("cookie", &cookie)).await;
            assert_eq!(reply.header("x-backend"), first.header("x-backend"), "node B moved the session");
            assert_eq!(reply.header("set-cookie"), None);
        }
        let at_c =
            get_with(&mut Client::http1(node_c.listener("web")).await.unwrap(), ("cookie", &cookie)).await;
        assert!(issued_cookie(&at_c).is_some(), "a node with another key must not honour the identifier");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_keeps_sessions_and_maint_moves_them_with_a_new_identifier() {
    let b = backends(&["host1", "host2"]).await;
    let node = Bunsan::start(bin(), &sticky_config(&[&b[0], &b[1]], "mode = \"cookie\"")).await.unwrap();
    let first = get(node.listener("web"), "/").await.unwrap();
    let cookie = issued_cookie(&first).unwrap();
    let home = first.header("x-backend").unwrap().to_owned();
    let url = node.admin_url();

    assert!(run(&["ctl", "--admin", &url, "server", &format!("app/{home}"), "drain"]).await.status.success());
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    for _ in 0..5 {
        let reply = get_with(&mut client, ("cookie", &cookie)).await;
        assert_eq!(reply.header("x-backend"), Some(home.as_str()), "drain must keep existing sessions");
    }
    let newcomer = get(node.listener("web"), "/").await.unwrap();
    assert_ne!(newcomer.header("x-backend"), Some(home.as_str()), "drain takes no new sessions");

    assert!(run(&["ctl", "--admin", &url, "server", &format!("app/{home}"), "maint"]).await.status.success());
    let moved = get_with(&mut client, ("cookie", &cookie)).await;
    assert_eq!(moved.status, 200);
    assert_ne!(moved.header("x-backend"), Some(home.as_str()));
    let renewed = issued_cookie(&moved).expect("a moved session gets a new identifier in the same response");
    let after = get_with(&mut client, ("cookie", &renewed)).await;
    assert_eq!(after.header("x-backend"), moved.header("x-backend"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_mode_and_secure_cookies_on_tls() {
    let b = backends(&["host1", "host2"]).await;
    let node = Bunsan::start(bin(), &sticky_config(&[&b[0], &b[1]], "mode = \"header\"")).await.unwrap();
    let first = get(node.listener("web"), "/").await.unwrap();
    let token = first.header("x-bunsan-session").expect("header mode answers with the identifier").to_owned();
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    for _ in 0..10 {
        let reply = get_with(&mut client, ("x-bunsan-session", &token)).await;
        assert_eq!(reply.header("x-backend"), first.header("x-backend"));
    }
    assert!(b.iter().flat_map(|s| s.seen()).all(|seen| !seen.headers.contains_key("x-bunsan-session")));

    let cert = SelfSigned::generate();
    let dir = tempfile::tempdir().unwrap();
    cert.write_to(dir.path());
    let tls = sticky_config(&[&b[0], &b[1]], "mode = \"cookie\"").replace(
        "pool = \"app\"\n\n[[pool]]",
        "pool = \"app\"\ntls = { cert = \"cert.pem\", key = \"key.pem\" }\n\n[[pool]]",
    );
    let node = Bunsan::start_in(bin(), dir, &tls).await.unwrap();
    let mut client = Client::tls(node.listener("web"), &cert.cert_der, &["h2"]).await.unwrap();
    let reply = client.get("/").await.unwrap();
    assert!(reply.header("set-cookie").unwrap().ends_with("; Secure"), "{:?}", reply.header("set-cookie"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_keeps_tcp_connections_on_one_server() {
    let b = backends(&["host1", "host2", "host3"]).await;
    let mut config = String::from(
        "[[listener]]\nname = \"raw\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"app\"\n\n\
         [[pool]]\nname = \"app\"\nalgorithm = \"round-robin\"\naffinity = { mode = \"client-ip\" }\n",
    );
    for s in &b {
        config.push_str(&format!("\n[[pool.server]]\nname = \"{}\"\naddr = \"{}\"\n", s.name, s.addr));
    }
    let node = Bunsan::start(bin(), &config).await.unwrap();
    let mut served = std::collections::HashSet::new();
    for _ in 0..10 {
        let mut stream = tokio::net::TcpStream::connect(node.listener("raw")).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let backend = response.lines().find_map(|l| l.strip_prefix("x-backend: ")).unwrap().to_owned();
        served.insert(backend);
    }
    assert_eq!(served.len(), 1, "one client address must keep one server: {served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_and_can_be_ended_through_the_admin_api() {
    let b = backends(&["host1", "host2"]).await;
    let node = Bunsan::start(bin(), &sticky_config(&[&b[0], &b[1]], "mode = \"cookie\"")).await.unwrap();
    let mut cookies = Vec::new();
    for _ in 0..4 {
        cookies.push(issued_cookie(&get(node.listener("web"), "/").await.unwrap()).unwrap());
    }
    let report: serde_json::Value =
        serde_json::from_str(&get(node.admin(), "/v1/sessions").await.unwrap().text()).unwrap();
    assert_eq!(report["pools"][0]["pool"], "app");
    assert_eq!(report["pools"][0]["mode"], "cookie");
    assert_eq!(report["pools"][0]["active"], 4);
    assert_eq!(report["pools"][0]["servers"].as_array().unwrap().len(), 2);
    let id = report["sample"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);

    let url = node.admin_url();
    let out = run(&["ctl", "--admin", &url, "sessions"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("app") && text.contains(&id[..8]), "{text}");

    let out = run(&["ctl", "--admin", &url, "sessions", "--end", &id]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&get(node.admin(), "/v1/sessions").await.unwrap().text()).unwrap();
    assert_eq!(report["pools"][0]["active"], 3);
    let out = run(&["ctl", "--admin", &url, "sessions", "--end", &id]).await;
    assert!(!out.status.success(), "ending a session twice is a 404");
}
