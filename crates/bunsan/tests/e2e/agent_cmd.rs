//! `bunsan agent`: the real binary watching a real backend and reporting to a small
//! recording control.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bunsan_proto::control::{AgentRegistration, Health, Report};
use bunsan_testkit::{eventually, Backend};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::net::TcpListener;

use crate::bin;

/// One request the recording control received: path, `Authorization`, body.
type Seen = (String, Option<String>, Bytes);

/// A control that accepts everything and remembers it.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = shared.clone();
                let service = service_fn(move |req| record(req, seen.clone()));
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Self { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn reports(&self) -> Vec<Vec<Report>> {
        let seen = self.seen();
        seen.iter().filter(|s| s.0 == "/v1/reports").map(|s| serde_json::from_slice(&s.2).unwrap()).collect()
    }
}

async fn record(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let auth = req.headers().get("authorization").map(|v| v.to_str().unwrap().to_owned());
    let body = req.into_body().collect().await.unwrap().to_bytes();
    seen.lock().unwrap().push((path, auth, body));
    Ok(Response::new(Full::new(Bytes::from_static(b"{}"))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_registers_reports_and_exits_0_on_sigterm() {
    let control = Recorder::start().await;
    let backend = Backend::start("b1").await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = tokio::process::Command::new(bin())
        .args(["agent", "--control", &format!("http://{}", control.addr)])
        .args(["--server", &format!("app/b1={}", backend.addr), "--interval", "200ms", "--name", "e2e"])
        .env("BUNSAN_AGENT_TOKEN", "s3cret")
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = || std::fs::read_to_string(log.path()).unwrap();
    assert!(eventually(Duration::from_secs(20), || control.reports().len() >= 3).await, "{}", stderr());

    let seen = control.seen();
    assert_eq!(seen[0].0, "/v1/agents", "registration comes first");
    let registration: AgentRegistration = serde_json::from_slice(&seen[0].2).unwrap();
    assert_eq!((registration.agent.as_str(), registration.method.as_str()), ("e2e", "sockets"));
    assert_eq!(registration.servers[0].addr, backend.addr.to_string());
    assert!(seen.iter().all(|s| s.1.as_deref() == Some("Bearer s3cret")));
    for rows in control.reports() {
        assert_eq!((rows[0].server.as_str(), rows[0].state), ("b1", Health::Up));
    }

    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}: {}", stderr());
    assert!(stderr().contains("bunsan agent started"), "logs on stderr: {}", stderr());
}

#[tokio::test]
async fn agent_refuses_bad_settings_naming_them() {
    let output =
        crate::run(&["agent", "--control", "http://127.0.0.1:1", "--server", "b1=127.0.0.1:80"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("POOL/SERVER=IP:PORT"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "control = [\"http://127.0.0.1:1\"]\nintervall = \"1s\"\n").unwrap();
    let output = crate::run(&["agent", "--config", file.to_str().unwrap()]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("intervall"), "{stderr}");

    let output = crate::run(&["agent", "--control", "http://127.0.0.1:1"]).await;
    assert!(String::from_utf8_lossy(&output.stderr).contains("server: at least one"));
}
