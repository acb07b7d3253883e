//! `bunsan backend`: a small real HTTP/1.1 server to put behind bunsan, shared with the demo.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::serve::{runtime, StopSignals};

/// The routes, for `--help`.
const ROUTES: &str = "Routes:
  /healthz       200 `ok`, without the latency
  /sleep/MS      answers after MS more milliseconds
  /status/CODE   answers with that status (200-599)
  /echo          streams the request body back
  anything else  `hello from NAME (you asked for PATH)`
Every response carries `x-backend: NAME`. Once bound, prints `listening on ADDR` on stdout;
stops on SIGTERM or SIGINT.";

/// Arguments of `bunsan backend`.
#[derive(Debug, clap::Args)]
#[command(after_help = ROUTES)]
pub struct Args {
    /// Where to listen (port 0 picks a free port; the bound address is printed on stdout).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// The name sent back in `x-backend` and in every greeting.
    #[arg(long, value_parser = parse_name)]
    name: HeaderValue,
    /// Added before every answer except /healthz, e.g. `20ms`.
    #[arg(long, default_value = "0ms", value_name = "DURATION", value_parser = parse_latency)]
    latency: Duration,
}

/// The backend's identity and behaviour, shared by every connection.
#[derive(Debug, Clone)]
pub struct Backend {
    name: HeaderValue,
    latency: Duration,
}

type Body = BoxBody<Bytes, hyper::Error>;

/// Serves until SIGTERM or SIGINT, then exits 0.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // One worker is plenty for a test backend, and keeps several of them cheap on a laptop.
    runtime(Some(1))?.block_on(async {
        // Watch signals before anyone can learn the address, so a quick SIGTERM still exits 0.
        let mut signals = StopSignals::install()?;
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr().context("cannot read the bound address")?;
        announce(addr)?;
        tracing::info!(%addr, name = ?args.name, latency = ?args.latency, "bunsan backend started");
        let backend = Backend { name: args.name, latency: args.latency };
        tokio::select! {
            () = backend.serve(listener) => {}
            () = signals.next() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The one line on stdout that scripts and tests wait for.
fn announce(addr: SocketAddr) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}").and_then(|()| stdout.flush()).context("cannot write to stdout")
}

fn parse_name(text: &str) -> Result<HeaderValue, String> {
    match HeaderValue::from_str(text) {
        Ok(value) if !text.is_empty() => Ok(value),
        _ => Err("must be non-empty printable text (it is sent as a header)".to_owned()),
    }
}

fn parse_latency(text: &str) -> Result<Duration, String> {
    bunsan_config::duration::parse_duration(text).map_err(|e| e.to_string())
}

impl Backend {
    /// A backend that answers as `name` after `latency` (except on /healthz).
    pub fn new(name: &'static str, latency: Duration) -> Self {
        Self { name: HeaderValue::from_static(name), latency }
    }

    /// Accepts connections forever, each served on its own task.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(self.clone().connection(stream));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(error) => {
                    tracing::warn!(%error, "backend cannot accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn connection(self, stream: TcpStream) {
        let name = self.name.clone();
        let service = service_fn(move |req| {
            let backend = self.clone();
            async move { Ok::<_, Infallible>(backend.answer(req).await) }
        });
        if let Err(error) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
            tracing::debug!(backend = ?name, %error, "backend connection ended with an error");
        }
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        if req.uri().path() != "/healthz" {
            tokio::time::sleep(self.latency).await;
        }
        let mut response = self.route(req).await;
        response.headers_mut().insert("x-backend", self.name.clone());
        response
    }

    async fn route(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        if path == "/healthz" {
            return text(StatusCode::OK, "ok\n".to_owned());
        }
        if path == "/echo" {
            return Response::new(req.into_body().boxed());
        }
        if let Some(ms) = path.strip_prefix("/sleep/") {
            let Ok(ms) = ms.parse::<u64>() else {
                return text(StatusCode::BAD_REQUEST, format!("not a number of milliseconds: {ms}\n"));
            };
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if let Some(code) = path.strip_prefix("/status/") {
            return self.status(code);
        }
        text(StatusCode::OK, format!("hello from {} (you asked for {path})\n", self.display_name()))
    }

    fn status(&self, code: &str) -> Response<Body> {
        // 1xx are not final answers; hyper cannot send one as the response.
        match code
            .parse::<u16>()
            .ok()
            .filter(|c| (200..600).contains(c))
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(status) => {
                text(status, format!("status {} from {}\n", status.as_u16(), self.display_name()))
            }
            None => text(StatusCode::BAD_REQUEST, format!("not a final status code (200-599): {code}\n")),
        }
    }

    fn display_name(&self) -> String {
        String::from_utf8_lossy(self.name.as_bytes()).into_owned()
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response
}
