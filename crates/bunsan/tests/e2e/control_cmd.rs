//! `bunsan control`: the state manager as its own process.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bunsan_testkit::{Client, Reply};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use crate::bin;

/// A running `bunsan control` and its stdout.
struct Running {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    addr: SocketAddr,
}

async fn start(store: &Path, extra: &[&str], env: &[(&str, &str)]) -> Running {
    let store = format!("file:{}", store.display());
    let mut child = tokio::process::Command::new(bin())
        .args(["control", "--listen", "127.0.0.1:0", "--store", &store, "--report-ttl", "30s"])
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap();
    let line = line.expect("one line on stdout");
    let addr: SocketAddr = line.strip_prefix("listening on ").expect(&line).parse().unwrap();
    assert_ne!(addr.port(), 0);
    Running { child, lines, addr }
}

impl Running {
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let body = Bytes::from(body.map(|b| b.to_string()).unwrap_or_default());
        Client::http1(self.addr).await.unwrap().send(req.body(Full::new(body)).unwrap()).await.unwrap()
    }

    async fn stop(mut self) {
        kill(Pid::from_raw(self.child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "{status}");
        assert_eq!(self.lines.next_line().await.unwrap(), None, "exactly one line on stdout");
    }
}

fn json_of(reply: &Reply) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    serde_json::from_slice(&reply.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_serves_the_table_keeps_pins_across_restarts_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("control.json");
    let control = start(&store, &[], &[]).await;
    let agent = json!({"agent": "a1", "method": "sockets", "servers": [
        {"pool": "app", "server": "h1", "addr": "10.0.0.1:80"},
        {"pool": "app", "server": "h2", "addr": "10.0.0.2:80"}]});
    json_of(&control.call(Method::POST, "/v1/agents", None, Some(agent)).await);
    let reports = json!([{"pool": "app", "server": "h1", "load": 20, "state": "up"},
                         {"pool": "app", "server": "h2", "load": 15, "state": "up"}]);
    assert_eq!(json_of(&control.call(Method::POST, "/v1/reports", None, Some(reports)).await)["accepted"], 2);
    let pin = json!({"state": "maint"});
    json_of(&control.call(Method::PUT, "/v1/pins/app/h2", None, Some(pin)).await);
    let table = json_of(&control.call(Method::GET, "/v1/state", None, None).await);
    assert_eq!(table["servers"][0]["state"], "ready");
    assert_eq!(table["servers"][1]["state"], "maint");
    let bad = control.call(Method::POST, "/v1/reports", None, Some(json!([{"pool": "app"}]))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    control.stop().await;

    let again = start(&store, &[], &[]).await;
    let table = json_of(&again.call(Method::GET, "/v1/state", None, None).await);
    assert_eq!(table["servers"][1]["pinned"], true, "{table}");
    assert_eq!(table["servers"][1]["state"], "maint");
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_takes_tokens_from_flags_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("BUNSAN_CONTROL_OPERATOR_TOKEN", "op-secret")];
    let control = start(&dir.path().join("c.json"), &["--subscriber-token", "sub-secret"], &env).await;
    assert_eq!(control.call(Method::GET, "/v1/registry", None, None).await.status, StatusCode::UNAUTHORIZED);
    json_of(&control.call(Method::GET, "/v1/registry", Some("op-secret"), None).await);
    assert_eq!(control.call(Method::GET, "/v1/state", None, None).await.status, StatusCode::UNAUTHORIZED);
    json_of(&control.call(Method::GET, "/v1/state", Some("sub-secret"), None).await);
    // No agent token was given: agents are open (loopback only).
    let agent = json!({"agent": "a1", "method": "scrape", "servers": []});
    json_of(&control.call(Method::POST, "/v1/agents", None, Some(agent)).await);
    control.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_refuses_a_public_address_without_tokens_and_a_corrupt_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("c.json");
    let store_arg = format!("file:{}", store.display());
    let output = crate::run(&["control", "--listen", "0.0.0.0:0", "--store", &store_arg]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0 without the agent token"), "{stderr}");

    std::fs::write(&store, "not json").unwrap();
    let output = crate::run(&["control", "--listen", "127.0.0.1:0", "--store", &store_arg]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("the store file {} is corrupt", store.display())), "{stderr}");

    let output = crate::run(&["control", "--listen", "127.0.0.1:0", "--store", "etcd:x"]).await;
    assert!(String::from_utf8_lossy(&output.stderr).contains("use file:PATH"));
}
