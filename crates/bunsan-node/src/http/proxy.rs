//! Forwards one HTTP request: pick a server, lease a connection, send, stream back.
//!
//! Connect failures are safe to retry anywhere (nothing reached the server), so the
//! request moves on to another server of the pool until every server has been tried.
//! A pooled connection that turns out to be closed before the request was written is
//! replaced by another one to the same server. Anything that fails after the request
//! was sent is answered, not replayed.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use super::body::{ForwardBody, ResponseBody};
use super::headers::{add_forwarding, strip_hop_by_hop, ClientSide};
use super::key::request_key;
use super::local::{respond, LocalError};
use super::HttpContext;
use crate::server::{InFlight, Server};
use crate::topology::Pool;
use crate::upstream::{self, Sender};

/// Handles one client request end to end.
pub async fn forward(
    ctx: &HttpContext,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let Some(pool) = ctx.board.topology().pool_for_listener(ctx.listener).cloned() else {
        return respond(LocalError::NoServer, "?");
    };
    let key = pool.settings.hash_key.as_ref().and_then(|k| request_key(k, &req, client.ip()));
    let side = ClientSide { addr: client, proto: ctx.proto };
    let (req, body_sent) = match prepare(req, side) {
        Ok(prepared) => prepared,
        Err(why) => return local(&pool, LocalError::BadRequest(why)),
    };
    dispatch(&pool, key, req, body_sent).await
}

/// Tries servers until one answers or none is left.
async fn dispatch(
    pool: &Pool,
    key: Option<u64>,
    mut req: Request<ForwardBody>,
    mut body_sent: Option<oneshot::Receiver<()>>,
) -> Response<ResponseBody> {
    let mut tried: Vec<usize> = Vec::new();
    loop {
        let Some(index) = pool.pick(key, &tried) else {
            let error = if tried.is_empty() { LocalError::NoServer } else { LocalError::UpstreamFailed };
            return local(pool, error);
        };
        let in_flight = pool.servers[index].begin();
        let outcome = attempt(pool, in_flight.server(), req, &mut body_sent).await;
        if !matches!(outcome, Outcome::NotSent(_)) {
            in_flight.server().counters.requests_total.fetch_add(1, Relaxed);
        }
        match outcome {
            Outcome::Answered(response, sender) => return relay(response, sender, in_flight),
            Outcome::NotSent(back) => {
                tried.push(index);
                req = back;
            }
            Outcome::Failed => return local(pool, LocalError::UpstreamFailed),
            Outcome::TimedOut => return local(pool, LocalError::Timeout),
        }
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

/// Sends `req` to `server`, over pooled connections first; a pooled connection found
/// closed before the request was written is replaced, at most once per idle one.
async fn attempt(
    pool: &Pool,
    server: &Arc<Server>,
    mut req: Request<ForwardBody>,
    body_sent: &mut Option<oneshot::Receiver<()>>,
) -> Outcome {
    let counters = &server.counters;
    loop {
        let lease = match upstream::lease(&server.idle, server.addr, pool.settings.connect_timeout).await {
            Ok(lease) => lease,
            Err(error) => {
                counters.connect_errors.fetch_add(1, Relaxed);
                tracing::warn!(pool = %pool.name, server = %server.name, %error, "upstream connect failed");
                return Outcome::NotSent(req);
            }
        };
        let counter = if lease.reused { &counters.connections_reused } else { &counters.connections_opened };
        counter.fetch_add(1, Relaxed);
        let mut sender = lease.sender;
        let started = Instant::now();
        let response = sender.try_send_request(req);
        let deadline = response_deadline(pool.settings.response_timeout, body_sent);
        tokio::pin!(deadline);
        let result = tokio::select! {
            result = response => result,
            () = &mut deadline => {
                counters.timeouts.fetch_add(1, Relaxed);
                return Outcome::TimedOut;
            }
        };
        match result {
            Ok(response) => {
                counters.record_latency(started.elapsed());
                counters.record_status(response.status().as_u16());
                return Outcome::Answered(response, sender);
            }
            Err(mut error) => match error.take_message() {
                Some(back) if lease.reused => req = back,
                Some(back) => return Outcome::NotSent(back),
                None => {
                    counters.upstream_errors.fetch_add(1, Relaxed);
                    let error = error.into_error();
                    tracing::warn!(pool = %pool.name, server = %server.name, %error, "upstream request failed");
                    return Outcome::Failed;
                }
            },
        }
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
fn relay(response: Response<Incoming>, sender: Sender, in_flight: InFlight) -> Response<ResponseBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.version = Version::HTTP_11;
    Response::from_parts(parts, ResponseBody::upstream(body, sender, in_flight))
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
