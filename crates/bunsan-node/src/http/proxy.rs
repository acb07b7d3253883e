//! Forwards one HTTP request: choose a server (a session's own, or the balancer's pick),
//! lease a connection, send, stream the response back.
//!
//! Connect failures are safe to retry anywhere (nothing reached the server), so the
//! request moves on to another server of the pool until every server has been tried; a
//! session whose server cannot be reached starts anew on the next one. A pooled
//! connection found closed before the request was written is replaced by another one to
//! the same server. Anything that fails after the request was sent is answered, not
//! replayed.

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
use super::{ClientConn, HttpContext};
use crate::affinity::{Affinity, Decision};
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
    let (mut req, body_sent) = match prepare(req, side) {
        Ok(prepared) => prepared,
        Err(why) => return local(&pool, LocalError::BadRequest(why)),
    };
    if let Some(affinity) = &pool.affinity {
        affinity.strip_identifier(req.headers_mut());
    }
    let bound = match session {
        Some(Decision::Continue { key, server }) => Some((key, server)),
        _ => None,
    };
    Exchange { pool: &pool, client, secure: ctx.proto == "https", key, bound }.run(req, body_sent).await
}

/// One request's way through the pool.
struct Exchange<'a> {
    pool: &'a Pool,
    client: &'a ClientConn,
    secure: bool,
    /// The balancing key (Maglev).
    key: Option<u64>,
    /// The session this request continues, and its server.
    bound: Option<([u8; 16], usize)>,
}

impl Exchange<'_> {
    /// Tries servers until one answers or none is left.
    async fn run(
        mut self,
        mut req: Request<ForwardBody>,
        mut body_sent: Option<oneshot::Receiver<()>>,
    ) -> Response<ResponseBody> {
        let mut tried: Vec<usize> = Vec::new();
        loop {
            let Some(index) = self.next_server(&tried) else {
                let error = if tried.is_empty() { LocalError::NoServer } else { LocalError::UpstreamFailed };
                return local(self.pool, error);
            };
            let in_flight = self.pool.servers[index].begin();
            let session = self.bound.map(|(key, _)| key);
            let outcome = attempt(self.pool, in_flight.server(), req, &mut body_sent, session).await;
            if !matches!(outcome, Outcome::NotSent(_)) {
                in_flight.server().counters.requests_total.fetch_add(1, Relaxed);
            }
            match outcome {
                Outcome::Answered(response, sender) => {
                    return self.answered(index, response, sender, in_flight)
                }
                Outcome::NotSent(back) => {
                    tried.push(index);
                    req = back;
                    self.abandon_session();
                }
                Outcome::Failed => return local(self.pool, LocalError::UpstreamFailed),
                Outcome::TimedOut => return local(self.pool, LocalError::Timeout),
            }
        }
    }

    /// The session's server, else the balancer's pick among servers not tried yet.
    fn next_server(&self, tried: &[usize]) -> Option<usize> {
        match self.bound {
            Some((_, server)) => Some(server),
            None => self.pool.pick(self.key, tried),
        }
    }

    /// The session's server could not be reached: the session ends, and the request
    /// starts a new one wherever it goes next (the client gets the new identifier).
    fn abandon_session(&mut self) {
        if let (Some((key, _)), Some(affinity)) = (self.bound.take(), &self.pool.affinity) {
            affinity.table.invalidate(&key);
        }
    }

    /// Relays the response, starting a session first if the pool has affinity and the
    /// request had none.
    fn answered(
        &self,
        index: usize,
        response: Response<Incoming>,
        sender: Sender,
        in_flight: InFlight,
    ) -> Response<ResponseBody> {
        let Some(affinity) = &self.pool.affinity else {
            return relay(response, sender, in_flight, ConnHome::Pool);
        };
        if let Some((key, server)) = self.bound {
            let home = ConnHome::Session { table: affinity.table.clone(), key, server: server as u32 };
            return relay(response, sender, in_flight, home);
        }
        self.start_session(affinity, index, response, sender, in_flight)
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
        let started =
            affinity.start(&self.pool.name, index, &server.name, ip, self.secure, &self.client.sessions);
        let Some(started) = started else {
            return relay(response, sender, in_flight, ConnHome::Pool);
        };
        let home =
            ConnHome::Session { table: affinity.table.clone(), key: started.key, server: index as u32 };
        let mut reply = relay(response, sender, in_flight, home);
        if let Some((name, value)) = started.header {
            reply.headers_mut().append(name, value);
        }
        reply
    }
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

/// Rewrites a client request into the request sent upstream: origin-form target,
/// `Host` from the authority, HTTP/1.1, hop-by-hop headers out, forwarding headers in.
fn prepare(
    req: Request<Incoming>,
    client: ClientSide<'_>,
) -> Result<(Request<ForwardBody>, Option<oneshot::Receiver<()>>), &'static str> {
    let (mut parts, body) = req.into_parts();
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
    let (body, sent) = ForwardBody::new(body);
    Ok((Request::from_parts(parts, body), sent))
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
