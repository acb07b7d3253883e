//! In-process HTTP servers that record every request: a generic [`Recorder`], and a fake
//! control that speaks just enough of `bunsan_proto::control` to test the agent against.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bunsan_proto::control::{AgentRegistration, Report};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinSet};

/// One request as received, with the status it was answered with.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When it arrived.
    pub at: Instant,
    /// Its path.
    pub path: String,
    /// Its `Authorization` header.
    pub authorization: Option<String>,
    /// Its body.
    pub body: Bytes,
    /// The answer's status.
    pub status: u16,
}

impl Seen {
    /// The body as a report, if it is one.
    pub fn report(&self) -> Option<Vec<Report>> {
        (self.path == "/v1/reports").then(|| serde_json::from_slice(&self.body).ok()).flatten()
    }
}

type Handler = Arc<dyn Fn(&str, &[u8]) -> (u16, String) + Send + Sync>;

/// A server answering every request through a handler and remembering it.
pub struct Recorder {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: AbortHandle,
}

impl Recorder {
    /// Starts on `addr` (port 0 for any).
    pub async fn start_on(addr: SocketAddr, handler: Handler) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept(listener, handler, seen.clone())).abort_handle();
        Self { addr, seen, task }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Closes the listener and every connection.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, handler: Handler, seen: Arc<Mutex<Vec<Seen>>>) {
    // Connections live in this task's set, so aborting the task closes them all.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (handler, seen) = (handler.clone(), seen.clone());
        let service = service_fn(move |req| answer(req, handler.clone(), seen.clone()));
        connections.spawn(async move {
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn answer(
    req: Request<Incoming>,
    handler: Handler,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let path = req.uri().path().to_owned();
    let authorization =
        req.headers().get(http::header::AUTHORIZATION).map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let (status, text) = handler(&path, &body);
    seen.lock().unwrap().push(Seen { at, path, authorization, body, status });
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    Ok(response)
}

/// What the fake control is told to do.
#[derive(Debug, Default)]
struct Mood {
    /// Answer 503 to everything.
    down: AtomicBool,
    /// Whether an agent registered since the start or the last `forget`.
    registered: AtomicBool,
}

/// A fake state manager: registration, then reports; refuses reports for an unknown agent
/// with 400, like the real one.
pub struct FakeControl {
    recorder: Recorder,
    mood: Arc<Mood>,
}

impl FakeControl {
    /// Starts on a free port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts on `addr` with an empty registry (a restarted control).
    pub async fn start_on(addr: SocketAddr) -> Self {
        let mood = Arc::new(Mood::default());
        let handler_mood = mood.clone();
        let handler: Handler = Arc::new(move |path, body| control(&handler_mood, path, body));
        Self { recorder: Recorder::start_on(addr, handler).await, mood }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.recorder.addr)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.recorder.addr
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.recorder.seen()
    }

    /// Accepted reports so far.
    pub fn reports(&self) -> Vec<(Instant, Vec<Report>)> {
        self.seen()
            .into_iter()
            .filter(|s| s.status == 200)
            .filter_map(|s| Some((s.at, s.report()?)))
            .collect()
    }

    /// Answer 503 to everything (`true`) or work again.
    pub fn set_down(&self, down: bool) {
        self.mood.down.store(down, SeqCst);
    }

    /// Lose the registry, as after a restart without its store.
    pub fn forget(&self) {
        self.mood.registered.store(false, SeqCst);
    }

    /// Closes the listener and every connection.
    pub fn stop(&self) {
        self.recorder.stop();
    }
}

fn control(mood: &Mood, path: &str, body: &[u8]) -> (u16, String) {
    if mood.down.load(SeqCst) {
        return (503, r#"{"error":"restarting"}"#.into());
    }
    match path {
        "/v1/agents" => match serde_json::from_slice::<AgentRegistration>(body) {
            Ok(_) => {
                mood.registered.store(true, SeqCst);
                (200, "{}".into())
            }
            Err(e) => (400, format!(r#"{{"error":"{e}"}}"#)),
        },
        "/v1/reports" => match serde_json::from_slice::<Vec<Report>>(body) {
            Ok(_) if !mood.registered.load(SeqCst) => (400, r#"{"error":"unknown server app/b1"}"#.into()),
            Ok(rows) => (200, format!(r#"{{"accepted":{}}}"#, rows.len())),
            Err(e) => (400, format!(r#"{{"error":"{e}"}}"#)),
        },
        _ => (404, r#"{"error":"not found"}"#.into()),
    }
}
