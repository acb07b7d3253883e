//! End-to-end tests: the real `bunsan` binary against real backends on loopback.

mod access_log;
mod admin;
mod affinity;
mod agent_cmd;
mod backend_cmd;
mod balancing;
mod config;
mod control_cmd;
mod control_etcd;
mod control_plane;
mod demo;
mod errors;
mod failover;
mod hostile;
mod limits;
mod parking;
mod protocols;
mod proxy_protocol;
mod reload;
mod shutdown;
mod tcp;
mod tls;
mod upstream;
mod zero_downtime;

use std::path::Path;
use std::process::Output;

use bunsan_testkit::Backend;

/// The binary under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bunsan"))
}

/// Runs `bunsan ARGS…` to completion.
pub async fn run(args: &[&str]) -> Output {
    tokio::process::Command::new(bin()).args(args).output().await.expect("bunsan runs")
}

/// Runs `bunsan ctl --admin URL ARGS…` against `node`: (success, stdout, stderr).
pub async fn ctl(node: &bunsan_testkit::Bunsan, args: &[&str]) -> (bool, String, String) {
    let url = node.admin_url();
    let mut full = vec!["ctl", "--admin", url.as_str()];
    full.extend_from_slice(args);
    let out = run(&full).await;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The backends (their `x-backend` names) that answer `requests` requests on listener
/// `web`, each expected to succeed.
pub async fn served_by(node: &bunsan_testkit::Bunsan, requests: usize) -> Vec<String> {
    let mut client = bunsan_testkit::Client::http1(node.listener("web")).await.expect("node accepts");
    let mut names = Vec::new();
    for _ in 0..requests {
        let reply = client.get("/").await.expect("a reply");
        assert_eq!(reply.status, 200);
        names.push(reply.header("x-backend").unwrap_or("?").to_owned());
    }
    names
}

/// Starts backends with these names.
pub async fn backends(names: &[&str]) -> Vec<Backend> {
    let mut started = Vec::new();
    for name in names {
        started.push(Backend::start(name).await);
    }
    started
}

/// A node config: an admin API, one HTTP listener `web` on pool `app`, and the given
/// `(backend, capacity)` servers; `pool_extra` goes into the `[[pool]]` table.
pub fn http_config(servers: &[(&Backend, u32)], pool_extra: &str) -> String {
    let mut text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\npool = \"app\"\n\n\
         [[pool]]\nname = \"app\"\n{pool_extra}\n"
    );
    for (backend, capacity) in servers {
        text.push_str(&format!(
            "[[pool.server]]\nname = \"{}\"\naddr = \"{}\"\ncapacity = {capacity}\n\n",
            backend.name, backend.addr
        ));
    }
    text
}
