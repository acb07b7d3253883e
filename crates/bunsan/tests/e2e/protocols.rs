//! HTTP/1.1, h2c, TLS with ALPN, header rewriting, and streaming of large bodies.

use bunsan_testkit::{pattern_byte, Bunsan, Client, SelfSigned};
use bytes::Bytes;
use http::{Request, Version};
use http_body_util::Full;

use crate::{backends, bin, http_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_with_prior_knowledge_is_forwarded_as_http1() {
    let b = backends(&["host1"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1)], "")).await.unwrap();
    let mut client = Client::h2c(node.listener("web")).await.unwrap();
    for _ in 0..3 {
        let reply = client.get("/over-h2?x=1").await.unwrap();
        assert_eq!((reply.status.as_u16(), reply.version), (200, Version::HTTP_2));
    }
    let seen = b[0].seen();
    assert_eq!(seen[0].version, Version::HTTP_11);
    assert_eq!(seen[0].uri, "/over-h2?x=1");
    assert_eq!(seen[0].headers["host"], node.listener("web").to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_negotiates_h2_or_http1_by_alpn_with_a_self_signed_certificate() {
    let b = backends(&["host1"]).await;
    let cert = SelfSigned::generate();
    let dir = tempfile::tempdir().unwrap();
    cert.write_to(dir.path());
    let config = http_config(&[(&b[0], 1)], "").replace(
        "pool = \"app\"\n\n[[pool]]",
        "pool = \"app\"\ntls = { cert = \"cert.pem\", key = \"key.pem\" }\n\n[[pool]]",
    );
    let node = Bunsan::start_in(bin(), dir, &config).await.unwrap();

    let mut h2 = Client::tls(node.listener("web"), &cert.cert_der, &["h2", "http/1.1"]).await.unwrap();
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    let reply = h2.get("/secure").await.unwrap();
    assert_eq!((reply.status.as_u16(), reply.version), (200, Version::HTTP_2));

    let mut h1 = Client::tls(node.listener("web"), &cert.cert_der, &["http/1.1"]).await.unwrap();
    assert_eq!(h1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let reply = h1.get("/secure").await.unwrap();
    assert_eq!((reply.status.as_u16(), reply.version), (200, Version::HTTP_11));

    let seen = b[0].seen();
    assert!(seen.iter().all(|s| s.headers["x-forwarded-proto"] == "https"));
    assert!(seen[0].headers["forwarded"].to_str().unwrap().contains("proto=https"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_added_and_hop_by_hop_headers_removed() {
    let b = backends(&["host1"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1)], "")).await.unwrap();
    let mut client = Client::http1(node.listener("web")).await.unwrap();
    let req = Request::get("/h")
        .header("host", "app.example")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("x-forwarded-for", "198.51.100.9")
        .header("x-keep-me", "yes")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = client.send(req).await.unwrap();
    assert_eq!(reply.status, 200);
    let headers = &b[0].seen()[0].headers;
    assert_eq!(headers["host"], "app.example");
    assert_eq!(headers["x-forwarded-for"], "198.51.100.9, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["forwarded"], "for=127.0.0.1;proto=http;host=\"app.example\"");
    assert_eq!(headers["x-keep-me"], "yes");
    for gone in ["x-drop-me", "keep-alive", "proxy-connection"] {
        assert!(!headers.contains_key(gone), "{gone} reached the backend");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_without_being_held_in_memory() {
    let b = backends(&["host1"]).await;
    let node = Bunsan::start(bin(), &http_config(&[(&b[0], 1)], "")).await.unwrap();
    let mut client = Client::http1(node.listener("web")).await.unwrap();

    let upload: Vec<u8> = (0..32u64 << 20).map(pattern_byte).collect();
    let reply =
        client.send(Request::post("/echo").body(Full::new(Bytes::from(upload.clone()))).unwrap()).await;
    let reply = reply.unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.body == upload, "the echoed upload differs");

    let size = 256u64 << 20;
    let reply = client.get(&format!("/bytes/{size}")).await.unwrap();
    assert_eq!(reply.body.len() as u64, size);
    assert!(reply.body.iter().enumerate().all(|(i, &byte)| byte == pattern_byte(i as u64)));

    // A node that buffered the 256 MiB download would have grown past it.
    let peak = peak_rss_kib(node.pid());
    assert!(peak < 64 * 1024, "node peak RSS {peak} KiB: bodies are being buffered");
}

/// The process's peak resident set size (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
