//! Forwards one HTTP request: choose a server (a session's own, or the balancer's pick),
//! lease a connection, send, stream the response back — and when a server fails, move
//! the request to a second server (seed 002) if that is safe.
//!
//! Safety rules ([`super::replay`] has the details): a request that reached no server
//! (connect failure, a pooled connection found closed before the request was written)
//! always moves on, to each server at most once; one that reached a server and failed
//! before any response byte moves on only if it is idempotent and its body was buffered,
//! within `retry.attempts` and the pool's retry budget; once the response head is
//! relayed nothing is retried. The client's connection stays open throughout; its entry
//! in the connection table is re-pointed to the second server, and a session bound to
//! the failed server is re-bound there, with a refreshed identifier in the response.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use super::body::{ConnHome, ForwardBody, ResponseBody};
use super::headers::{add_forwarding, strip_hop_by_hop, ClientSide};
use super::key::request_key;
use super::local::{respond, LocalError};
use super::replay::{self, Replay};
use super::{ClientConn, HttpContext};
use crate::affinity::{Affinity, Decision};
use crate::outlier::{self, Verdict};
use crate::server::{InFlight, Server};
use crate::topology::Pool;
use crate::upstream::{self, Sender};

/// Handles one client request end to end.
pub async fn forward(
    ctx: &HttpContext,
    client: &ClientConn,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let Some(pool) = ctx.board.topology().pool_for_listener(ctx.listener).cloned() else {
        return respond(LocalError::NoServer, "?");
    };
    let ip = client.addr.ip();
    let session = pool
        .affinity
        .as_ref()
        .map(|a| a.resolve(&pool.name, &pool.servers, req.headers(), ip, &client.sessions));
    let key = pool.settings.hash_key.as_ref().and_then(|k| request_key(k, &req, ip));
    let side = ClientSide { addr: client.addr, proto: ctx.proto };
    let (mut parts, body) = req.into_parts();
    if let Err(why) = rewrite(&mut parts, side) {
        return local(&pool, LocalError::BadRequest(why));
    }
    if let Some(affinity) = &pool.affinity {
        affinity.strip_identifier(&mut parts.headers);
    }
    let retry = &pool.settings.retry;
    let Ok(prepared) = replay::prepare(parts, body, retry.buffer, retry.attempts > 1).await else {
        return local(&pool, LocalError::BadRequest("the request body broke off"));
    };
    let exchange = Exchange { ctx, pool: &pool, client, key, session, replay: prepared.replay };
    exchange.run(prepared.request, prepared.body_sent).await
}

/// One request's way through the pool.
struct Exchange<'a> {
    ctx: &'a HttpContext,
    pool: &'a Pool,
    client: &'a ClientConn,
    /// The balancing key (Maglev).
    key: Option<u64>,
    /// What affinity decided (`None`: the pool has no affinity).
    session: Option<Decision>,
    /// A copy for replays, if the request may be replayed.
    replay: Option<Replay>,
}

impl Exchange<'_> {
    /// Tries servers until one answers, or no server may be tried any more.
    async fn run(
        mut self,
        mut req: Request<ForwardBody>,
        mut body_sent: Option<oneshot::Receiver<()>>,
    ) -> Response<ResponseBody> {
        let mut tried: Vec<usize> = Vec::new();
        let mut attempts_left = self.pool.settings.retry.attempts;
        self.pool.budget.deposit();
        let mut next = self.next_server(&tried);
        loop {
            let Some(index) = next else { return local(self.pool, LocalError::NoServer) };
            self.client.link.associate(self.pool.index, index);
            let in_flight = self.pool.servers[index].begin();
            let outcome = attempt(self.pool, in_flight.server(), req, &mut body_sent, self.bound_key()).await;
            self.count(index, &outcome, &in_flight);
            // An unsent request comes back: nothing reached the server, it may go anywhere.
            let (failure, unsent) = match outcome {
                Outcome::Answered(response, sender) => {
                    return self.answered(index, response, sender, in_flight)
                }
                Outcome::NotSent(back) => (LocalError::UpstreamFailed, Some(back)),
                Outcome::Failed => (LocalError::UpstreamFailed, None),
                Outcome::TimedOut => (LocalError::Timeout, None),
            };
            if unsent.is_none() {
                attempts_left = attempts_left.saturating_sub(1);
                if self.replay.is_none() || attempts_left == 0 {
                    return local(self.pool, failure);
                }
            }
            tried.push(index);
            self.leave_server();
            next = self.next_server(&tried);
            if next.is_none() {
                return local(self.pool, failure);
            }
            req = match (unsent, &self.replay) {
                (Some(back), _) => back,
                (None, Some(replay)) if self.pool.budget.withdraw() => {
                    in_flight.server().counters.retried_elsewhere.fetch_add(1, Relaxed);
                    body_sent = None;
                    replay.request()
                }
                _ => return local(self.pool, failure),
            };
            self.client.link.failovers.fetch_add(1, Relaxed);
        }
    }

    /// Counts an attempt's outcome for metrics and passive detection.
    fn count(&self, index: usize, outcome: &Outcome, in_flight: &InFlight) {
        let verdict = match outcome {
            Outcome::Answered(response, _) if response.status().is_server_error() => Verdict::Failed,
            Outcome::Answered(..) => Verdict::Healthy,
            _ => Verdict::Failed,
        };
        outlier::record(&self.ctx.board, self.pool, index, verdict);
        if !matches!(outcome, Outcome::NotSent(_)) {
            in_flight.server().counters.requests_total.fetch_add(1, Relaxed);
            self.client.link.requests.fetch_add(1, Relaxed);
        }
    }

    /// The request leaves a failed server: a session bound to it moves with the request.
    fn leave_server(&mut self) {
        if let Some(Decision::Continue { key, issued, .. }) = self.session {
            self.session = Some(Decision::Move { key, issued });
        }
    }

    /// The session's server, else the balancer's pick among servers not tried yet.
    fn next_server(&self, tried: &[usize]) -> Option<usize> {
        match self.session {
            Some(Decision::Continue { server, .. }) => Some(server),
            _ => self.pool.choose(self.key, tried),
        }
    }

    /// The session whose own connection this attempt may use.
    fn bound_key(&self) -> Option<[u8; 16]> {
        match self.session {
            Some(Decision::Continue { key, .. }) => Some(key),
            _ => None,
        }
    }

    /// Relays the response: over the session's connection home if it has one, moving or
    /// starting a session first when needed.
    fn answered(
        &self,
        index: usize,
        response: Response<Incoming>,
        sender: Sender,
        in_flight: InFlight,
    ) -> Response<ResponseBody> {
        let (Some(affinity), Some(decision)) = (&self.pool.affinity, self.session) else {
            return relay(response, sender, in_flight, ConnHome::Pool);
        };
        let server = &self.pool.servers[index];
        let secure = self.ctx.proto == "https";
        let (key, header) = match decision {
            Decision::Continue { key, .. } => (key, None),
            Decision::Move { key, issued } => {
                match affinity.moved(&self.pool.name, key, issued, index, &server.name, secure) {
                    Some(header) => (key, header),
                    None => return self.start_session(affinity, index, response, sender, in_flight),
                }
            }
            Decision::Start => return self.start_session(affinity, index, response, sender, in_flight),
        };
        let home = ConnHome::Session { table: affinity.table.clone(), key, server: index as u32 };
        with_header(relay(response, sender, in_flight, home), header)
    }

    fn start_session(
        &self,
        affinity: &Arc<Affinity>,
        index: usize,
        response: Response<Incoming>,
        sender: Sender,
        in_flight: InFlight,
    ) -> Response<ResponseBody> {
        let server = &self.pool.servers[index];
        let ip = self.client.addr.ip();
        let secure = self.ctx.proto == "https";
        let started = affinity.start(&self.pool.name, index, &server.name, ip, secure, &self.client.sessions);
        let Some(started) = started else {
            return relay(response, sender, in_flight, ConnHome::Pool);
        };
        let home =
            ConnHome::Session { table: affinity.table.clone(), key: started.key, server: index as u32 };
        with_header(relay(response, sender, in_flight, home), started.header)
    }
}

/// Adds a session identifier header to a response, if there is one.
fn with_header(
    mut reply: Response<ResponseBody>,
    header: Option<(http::HeaderName, HeaderValue)>,
) -> Response<ResponseBody> {
    if let Some((name, value)) = header {
        reply.headers_mut().append(name, value);
    }
    reply
}

/// How one attempt on one server ended.
enum Outcome {
    /// The server sent a response head.
    Answered(Response<Incoming>, Sender),
    /// Nothing reached the server; the request comes back for another one.
    NotSent(Request<ForwardBody>),
    /// The request reached the server and the exchange broke.
    Failed,
    /// No response head within the pool's response timeout.
    TimedOut,
}

/// Sends `req` to `server`: over the session's own connection when it has an idle one,
/// else a pooled or new one. A reused connection found closed before the request was
/// written is replaced, at most once per idle one.
async fn attempt(
    pool: &Pool,
    server: &Arc<Server>,
    mut req: Request<ForwardBody>,
    body_sent: &mut Option<oneshot::Receiver<()>>,
    session: Option<[u8; 16]>,
) -> Outcome {
    let counters = &server.counters;
    let mut session_conn = session_connection(pool, session).await;
    loop {
        let lease = match session_conn.take() {
            Some(sender) => upstream::Lease { sender, reused: true },
            None => match upstream::lease(&server.idle, server.addr, pool.settings.connect_timeout).await {
                Ok(lease) => lease,
                Err(error) => {
                    counters.connect_errors.fetch_add(1, Relaxed);
                    tracing::warn!(pool = %pool.name, server = %server.name, %error, "upstream connect failed");
                    return Outcome::NotSent(req);
                }
            },
        };
        let counter = if lease.reused { &counters.connections_reused } else { &counters.connections_opened };
        counter.fetch_add(1, Relaxed);
        match send(pool, server, lease.sender, req, body_sent).await {
            Sent::Retry(back) if lease.reused => req = back,
            Sent::Retry(back) => return Outcome::NotSent(back),
            Sent::Done(outcome) => return outcome,
        }
    }
}

/// The session's own idle upstream connection, if it has one that is still usable.
async fn session_connection(pool: &Pool, session: Option<[u8; 16]>) -> Option<Sender> {
    let affinity = pool.affinity.as_ref()?;
    let mut sender = affinity.table.take_conn(&session?)?;
    if sender.is_closed() || sender.ready().await.is_err() {
        return None;
    }
    affinity.counters.session_connection_reuses.fetch_add(1, Relaxed);
    Some(sender)
}

/// The result of sending over one connection.
enum Sent {
    /// The request was not written; it comes back.
    Retry(Request<ForwardBody>),
    /// Anything else.
    Done(Outcome),
}

async fn send(
    pool: &Pool,
    server: &Server,
    mut sender: Sender,
    req: Request<ForwardBody>,
    body_sent: &mut Option<oneshot::Receiver<()>>,
) -> Sent {
    let counters = &server.counters;
    let started = Instant::now();
    let response = sender.try_send_request(req);
    let deadline = response_deadline(pool.settings.response_timeout, body_sent);
    tokio::pin!(deadline);
    let result = tokio::select! {
        result = response => result,
        () = &mut deadline => {
            counters.timeouts.fetch_add(1, Relaxed);
            return Sent::Done(Outcome::TimedOut);
        }
    };
    match result {
        Ok(response) => {
            counters.record_latency(started.elapsed());
            counters.record_status(response.status().as_u16());
            Sent::Done(Outcome::Answered(response, sender))
        }
        Err(mut error) => match error.take_message() {
            Some(back) => Sent::Retry(back),
            None => {
                counters.upstream_errors.fetch_add(1, Relaxed);
                let error = error.into_error();
                tracing::warn!(pool = %pool.name, server = %server.name, %error, "upstream request failed");
                Sent::Done(Outcome::Failed)
            }
        },
    }
}

/// Resolves `timeout` after the request body has been sent completely. Borrows the
/// signal, so a request that comes back unsent keeps it for its next attempt.
async fn response_deadline(timeout: std::time::Duration, body_sent: &mut Option<oneshot::Receiver<()>>) {
    if let Some(sent) = body_sent.as_mut() {
        // A dropped sender means the body is gone (sent or failed); either way the wait
        // for the server starts now.
        let _sent_or_dropped = sent.await;
        *body_sent = None;
    }
    tokio::time::sleep(timeout).await;
}

/// Turns the server's response into the client's: hop-by-hop headers out, body streamed.
fn relay(
    response: Response<Incoming>,
    sender: Sender,
    in_flight: InFlight,
    home: ConnHome,
) -> Response<ResponseBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.version = Version::HTTP_11;
    Response::from_parts(parts, ResponseBody::upstream(body, sender, in_flight, home))
}

/// A local error response, counted against the pool.
fn local(pool: &Pool, error: LocalError) -> Response<ResponseBody> {
    let counters = &pool.counters;
    let counter = match error {
        LocalError::NoServer => &counters.no_server,
        LocalError::UpstreamFailed => &counters.upstream_failed,
        LocalError::Timeout => &counters.timeouts,
        LocalError::BadRequest(_) => &counters.bad_requests,
    };
    counter.fetch_add(1, Relaxed);
    respond(error, &pool.name)
}

/// Rewrites a client request's head into the one sent upstream: origin-form target,
/// `Host` from the authority, HTTP/1.1, hop-by-hop headers out, forwarding headers in.
fn rewrite(parts: &mut http::request::Parts, client: ClientSide<'_>) -> Result<(), &'static str> {
    strip_hop_by_hop(&mut parts.headers);
    // hyper already answered any `Expect: 100-continue` towards the client.
    parts.headers.remove(header::EXPECT);
    if let Some(authority) = parts.uri.authority() {
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| "invalid authority")?;
        parts.headers.insert(header::HOST, host);
    }
    let host = parts.headers.get(header::HOST).ok_or("missing Host header")?.clone();
    add_forwarding(&mut parts.headers, client, Some(&host));
    parts.uri = origin_form(&parts.uri);
    parts.version = Version::HTTP_11;
    Ok(())
}

/// The request target without scheme and authority (`*` stays `*`).
fn origin_form(uri: &Uri) -> Uri {
    let path = uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_form_drops_scheme_and_authority() {
        let uri: Uri = "http://example.com:8080/a/b?c=d".parse().unwrap();
        assert_eq!(origin_form(&uri), "/a/b?c=d");
        assert_eq!(origin_form(&"*".parse().unwrap()), "*");
        assert_eq!(origin_form(&"http://example.com".parse().unwrap()), "/");
    }
}
