//! The HTTP side of the node: serves client connections (HTTP/1.1, h2c with prior
//! knowledge, and either over TLS with ALPN) and forwards each request to a pool.

mod attempt;
pub mod body;
pub mod headers;
pub mod idle;
pub mod key;
pub mod local;
mod log;
mod park;
pub mod private;
mod proxy;
pub mod replay;
pub mod request_id;
pub mod strict;
pub mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bunsan_config::ListenerLimits;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use self::idle::Activity;
use crate::access_log::AccessLog;
use crate::connections::{ConnectionTable, Link, Registration};
use crate::session::ClientSessions;
use crate::state::StateBoard;
use crate::upstream::Sender;

/// HTTP/2 streams a client may reset before the node accepted them (the "rapid reset"
/// attack, CVE-2023-44487): past this the connection gets GOAWAY.
const H2_MAX_PENDING_RESETS: usize = 20;
/// How long an idle connection being closed may take to acknowledge it.
const IDLE_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Everything a listener's connections share.
#[derive(Debug)]
pub struct HttpContext {
    /// The listener's stable id (selects its pool in the topology; see `ListenerRoute`).
    pub listener: usize,
    /// Topology and state.
    pub board: Arc<StateBoard>,
    /// `"https"` on TLS listeners, else `"http"`.
    pub proto: &'static str,
    /// Every open client connection.
    pub connections: Arc<ConnectionTable>,
    /// Where finished requests are recorded.
    pub access_log: Arc<AccessLog>,
    /// What one client connection may cost.
    pub limits: ListenerLimits,
    builder: auto::Builder<TokioExecutor>,
    /// Once cancelled, responses ask HTTP/1.1 clients to close (the node is handing over).
    draining: CancellationToken,
}

impl HttpContext {
    /// A context for listener `listener`.
    pub fn new(
        listener: usize,
        board: Arc<StateBoard>,
        connections: Arc<ConnectionTable>,
        access_log: Arc<AccessLog>,
        limits: &ListenerLimits,
        tls: bool,
    ) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let head_bytes = usize::try_from(limits.header_bytes).unwrap_or(usize::MAX);
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.head_timeout)
            .max_buf_size(head_bytes)
            .max_headers(limits.header_count);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_streams)
            .max_header_list_size(u32::try_from(limits.header_bytes).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS);
        let proto = if tls { "https" } else { "http" };
        let draining = CancellationToken::new();
        let limits = limits.clone();
        Self { listener, board, proto, connections, access_log, limits, builder, draining }
    }

    /// The same context, whose responses carry `Connection: close` once `draining` is
    /// cancelled.
    pub fn draining(mut self, draining: CancellationToken) -> Self {
        self.draining = draining;
        self
    }
}

/// One client connection: its address, its entry in the connection table, and the
/// sessions its requests carried (detached when the connection ends, which starts their
/// idle clocks; seed 000 claim 4).
#[derive(Debug)]
pub struct ClientConn {
    /// The client's address.
    pub addr: SocketAddr,
    /// The node's address the client connected to.
    pub local: SocketAddr,
    /// Its private upstream connection, for pools that send a PROXY header.
    pub private: Arc<private::PrivateConn>,
    /// Sessions this connection is attached to.
    pub sessions: ClientSessions<u32, Sender>,
    /// Keeps the connection in the table until it closes.
    _registration: Registration,
    /// Its association with a server, in the connection table.
    pub link: Arc<Link>,
}

/// Serves one client connection until it closes; on `shutdown` it finishes the requests
/// in flight and then closes (HTTP/2: GOAWAY; HTTP/1.1: no further keep-alive).
/// `client` is the client's address (from a PROXY header when the listener takes one),
/// `local` the node's end of the connection. A quiet HTTP/1.1 connection is parked
/// between requests (see [`park`]) and keeps its identity (table entry, sessions).
pub async fn serve_connection<I>(
    io: I,
    client: SocketAddr,
    local: SocketAddr,
    ctx: Arc<HttpContext>,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let registration = ctx.connections.register(Link::new(ctx.listener, client));
    let link = registration.link.clone();
    let (sessions, private) = (ClientSessions::new(), Arc::default());
    let conn =
        Arc::new(ClientConn { addr: client, local, private, sessions, _registration: registration, link });
    let activity = Arc::new(Activity::default());
    let signals = Arc::new(park::IoSignals::default());
    let watch = park::ParkWatch::new(signals.clone(), activity.clone());
    let slot = park::Slot::default();
    let (mut io, mut held) = (io, None);
    loop {
        let service = connection_service(&ctx, &conn, &activity, &signals);
        let wrapped = park::ParkableIo::new(io, held, signals.clone(), slot.clone());
        // Boxed so that a parked connection does not keep room for hyper's state.
        let served = Box::pin(ctx.builder.serve_connection_with_upgrades(TokioIo::new(wrapped), service));
        // Boxed too: its timers are only needed while hyper runs.
        let ended =
            Box::pin(drive(served, |c| c.graceful_shutdown(), client, &ctx, &activity, &watch, &shutdown))
                .await;
        if let Err(error) = ended {
            tracing::debug!(%client, %error, "client connection ended with an error");
        }
        let parked = slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        watch.set_parking(false);
        let Some(parked) = parked else { return };
        crate::memory::note_parked();
        io = parked;
        // hyper would have closed a keep-alive wait at `head_timeout`; so does the park.
        let left = ctx.limits.head_timeout.min(ctx.limits.idle_timeout).saturating_sub(park::PARK_AFTER);
        held = tokio::select! {
            byte = park::wait_for_byte(&mut io) => match byte {
                Some(byte) => Some(byte),
                None => return,
            },
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(left) => return,
        };
    }
}

/// The service for one hyper connection over `conn`.
fn connection_service(
    ctx: &Arc<HttpContext>,
    conn: &Arc<ClientConn>,
    activity: &Arc<Activity>,
    signals: &Arc<park::IoSignals>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<body::ResponseBody>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<http::Response<body::ResponseBody>, Infallible>>
                 + Send
                 + 'static,
> + Clone {
    let (ctx, conn, activity, signals) = (ctx.clone(), conn.clone(), activity.clone(), signals.clone());
    service_fn(move |req| {
        let (ctx, conn) = (ctx.clone(), conn.clone());
        let active = activity.begin();
        if req.version() == http::Version::HTTP_2 {
            signals.saw_http2();
        }
        async move {
            // Boxed: hyper keeps room for one request future per HTTP/1.1 connection for
            // the connection's whole life, and ours is ~13 KiB; boxed, an idle connection
            // holds a pointer instead.
            let response = Box::pin(proxy::forward(&ctx, &conn, req)).await;
            let mut response = response.map(|body| body.while_active(active));
            // A 101 must keep its `Connection: upgrade`; the tunnel ends on its own.
            if ctx.draining.is_cancelled() && response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                // hyper closes an HTTP/1.1 connection after a response that says so (and
                // drops the header on HTTP/2), so the client's next request goes elsewhere.
                let close = http::HeaderValue::from_static("close");
                response.headers_mut().insert(http::header::CONNECTION, close);
            }
            Ok::<_, Infallible>(response)
        }
    })
}

/// Runs one hyper connection until it ends: by itself, by `shutdown`, by the idle
/// timeout, or by being parked (which leaves the socket in the park slot).
async fn drive<C, E>(
    mut served: std::pin::Pin<Box<C>>,
    graceful: impl Fn(std::pin::Pin<&mut C>),
    client: SocketAddr,
    ctx: &HttpContext,
    activity: &Activity,
    watch: &park::ParkWatch,
    shutdown: &CancellationToken,
) -> Result<(), E>
where
    C: std::future::Future<Output = Result<(), E>>,
{
    tokio::select! {
        result = served.as_mut() => result,
        () = shutdown.cancelled() => {
            graceful(served.as_mut());
            served.await
        }
        () = idle::idle_past(activity, ctx.limits.idle_timeout) => {
            tracing::debug!(%client, "closing an idle client connection");
            graceful(served.as_mut());
            // HTTP/2's graceful close waits for the client to acknowledge a PING; a client
            // that stays silent does not get to keep the connection that way.
            tokio::time::timeout(IDLE_CLOSE_GRACE, served).await.unwrap_or(Ok(()))
        }
        () = watch.quiet() => {
            watch.set_parking(true);
            graceful(served.as_mut());
            // An idle HTTP/1.1 connection closes on the spot; one that does not was busy
            // after all, and finishes normally (without keep-alive).
            let now = std::future::poll_fn(|cx| std::task::Poll::Ready(served.as_mut().poll(cx))).await;
            match now {
                std::task::Poll::Ready(result) => result,
                std::task::Poll::Pending => {
                    watch.set_parking(false);
                    served.await
                }
            }
        }
    }
}
