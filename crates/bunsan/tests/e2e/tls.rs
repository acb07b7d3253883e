//! TLS: certificates chosen by SNI, certificates reloaded on SIGHUP without dropping
//! connections, and client certificates presented to servers (mutual TLS).

use std::time::Duration;

use bunsan_testkit::{Backend, Bunsan, Client, SelfSigned};
use nix::sys::signal::Signal;

use crate::{backends, bin, http_config};

/// `config` with listener `web` on TLS: `tls` is the inline table's contents.
fn with_tls(config: &str, tls: &str) -> String {
    config.replace("pool = \"app\"\n\n[[pool]]", &format!("pool = \"app\"\ntls = {{ {tls} }}\n\n[[pool]]"))
}

fn write_pair(dir: &std::path::Path, stem: &str, cert: &SelfSigned) {
    std::fs::write(dir.join(format!("{stem}.pem")), &cert.cert_pem).unwrap();
    std::fs::write(dir.join(format!("{stem}.key")), &cert.key_pem).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_chosen_by_the_name_the_client_asks_for() {
    let b = backends(&["sni"]).await;
    let (default, a, b_cert) = (
        SelfSigned::generate(),
        SelfSigned::for_names(&["a.example"]),
        SelfSigned::for_names(&["*.b.example"]),
    );
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), "default", &default);
    write_pair(dir.path(), "a", &a);
    write_pair(dir.path(), "b", &b_cert);
    let tls = "cert = \"default.pem\", key = \"default.key\", \
               sni = [{ cert = \"a.pem\", key = \"a.key\" }, { cert = \"b.pem\", key = \"b.key\" }]";
    let node = Bunsan::start_in(bin(), dir, &with_tls(&http_config(&[(&b[0], 1)], ""), tls)).await.unwrap();
    let addr = node.listener("web");
    // Each client trusts only the certificate it expects: the handshake succeeds only if
    // the node presented that one.
    for (name, cert) in [("a.example", &a), ("www.b.example", &b_cert), ("localhost", &default)] {
        let mut client = Client::tls_to(addr, &[], name, &cert.cert_der, &["http/1.1"]).await.unwrap();
        assert_eq!(client.get("/").await.unwrap().status.as_u16(), 200, "{name}");
    }
    // No SNI (an IP address) and an unknown name both get the default certificate.
    assert!(Client::tls_to(addr, &[], "127.0.0.1", &default.cert_der, &["h2"]).await.is_ok());
    assert!(Client::tls_to(addr, &[], "unknown.example", &a.cert_der, &["h2"]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_reloads_certificates_and_keeps_open_connections() {
    let b = backends(&["rotated"]).await;
    let (old, new) = (SelfSigned::generate(), SelfSigned::generate());
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), "web", &old);
    let tls = "cert = \"web.pem\", key = \"web.key\"";
    let node = Bunsan::start_in(bin(), dir, &with_tls(&http_config(&[(&b[0], 1)], ""), tls)).await.unwrap();
    let addr = node.listener("web");
    let mut open = Client::tls(addr, &old.cert_der, &["h2"]).await.unwrap();
    assert_eq!(open.get("/before").await.unwrap().status.as_u16(), 200);

    write_pair(&node.dir(), "web", &new);
    node.signal(Signal::SIGHUP);
    let reloaded =
        bunsan_testkit::eventually(Duration::from_secs(10), || node.stderr().contains("config reloaded"))
            .await;
    assert!(reloaded, "{}", node.stderr());

    assert_eq!(open.get("/after").await.unwrap().status.as_u16(), 200, "the open connection was dropped");
    let mut fresh = Client::tls(addr, &new.cert_der, &["h2"]).await.unwrap();
    assert_eq!(fresh.get("/").await.unwrap().status.as_u16(), 200);
    assert!(Client::tls(addr, &old.cert_der, &["h2"]).await.is_err(), "the old certificate is still served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_presents_its_client_certificate_to_servers_that_require_one() {
    let (server, client) = (SelfSigned::generate(), SelfSigned::for_names(&["bunsan-node"]));
    let backend = Backend::start_mtls("mtls", &server, &client).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &server.cert_pem).unwrap();
    write_pair(dir.path(), "client", &client);
    let with_cert = "upstream_tls = { ca = \"ca.pem\", server_name = \"localhost\", \
                     cert = \"client.pem\", key = \"client.key\" }\nretry = { attempts = 1 }";
    let node = Bunsan::start_in(bin(), dir, &http_config(&[(&backend, 1)], with_cert)).await.unwrap();
    let reply = bunsan_testkit::get(node.listener("web"), "/").await.unwrap();
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "mtls"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &server.cert_pem).unwrap();
    let without = "upstream_tls = { ca = \"ca.pem\", server_name = \"localhost\" }\nretry = { attempts = 1 }";
    let node = Bunsan::start_in(bin(), dir, &http_config(&[(&backend, 1)], without)).await.unwrap();
    let reply = bunsan_testkit::get(node.listener("web"), "/").await.unwrap();
    assert_eq!(reply.status.as_u16(), 502, "a server requiring a client certificate answered without one");
    assert_eq!(backend.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_http1_connection_over_tls_is_parked_and_keeps_its_session() {
    use crate::parking::{parked, QUIET};
    let b = backends(&["parked"]).await;
    let cert = SelfSigned::generate();
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), "web", &cert);
    let tls = "cert = \"web.pem\", key = \"web.key\"";
    let node = Bunsan::start_in(bin(), dir, &with_tls(&http_config(&[(&b[0], 1)], ""), tls)).await.unwrap();
    let mut client = Client::tls(node.listener("web"), &cert.cert_der, &["http/1.1"]).await.unwrap();
    assert_eq!(client.get("/before").await.unwrap().status.as_u16(), 200);
    tokio::time::sleep(QUIET).await;
    assert_eq!(parked(&node).await, 1, "the quiet TLS connection was not parked");
    // The same TLS session carries on: no new handshake, no new connection.
    assert_eq!(client.get("/after").await.unwrap().status.as_u16(), 200);
    assert_eq!(client.get("/again").await.unwrap().status.as_u16(), 200);
}
