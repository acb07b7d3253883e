//! Forwards one HTTP request: choose a server (a session's own, or the balancer's pick),
//! send it there ([`super::attempt`]), stream the response back — and when a server
//! fails, move the request to a second server (seed 002) if that is safe.
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
use std::time::{Instant, SystemTime};

use bunsan_config::UpstreamProtocol;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tokio::sync::oneshot;

use super::attempt::{Attempt, Outcome};
use super::body::{ClientBody, ConnHome, ForwardBody, ResponseBody};
use super::headers::{add_forwarding, strip_hop_by_hop, ClientSide};
use super::key::request_key;
use super::local::{respond, LocalError};
use super::log::Note;
use super::replay::{self, BodyRules, Replay};
use super::request_id::{self, X_REQUEST_ID};
use super::strict::{self, Refusal};
use super::{upgrade, ClientConn, HttpContext};
use crate::affinity::{Affinity, Decision};
use crate::outlier::{self, Verdict};
use crate::server::InFlight;
use crate::topology::Pool;
use crate::upstream::Sender;

/// Handles one client request end to end; every response carries the request's id, and
/// is written to the access log when it ends.
pub async fn forward(
    ctx: &HttpContext,
    client: &ClientConn,
    mut req: Request<Incoming>,
) -> Response<ResponseBody> {
    let (started, arrival) = (Instant::now(), SystemTime::now());
    let id = request_id::ensure(req.headers_mut());
    let mut note = Note::default();
    let draft = ctx.access_log.enabled().then(|| super::log::Draft::new(&req, client.addr, &id, arrival));
    let mut response = route(ctx, client, req, &mut note).await;
    response.headers_mut().insert(X_REQUEST_ID, id);
    let tail = draft.map(|draft| draft.finish(note, &response, started, ctx.access_log.clone()));
    response.map(|body| body.logged(tail))
}

async fn route(
    ctx: &HttpContext,
    client: &ClientConn,
    mut req: Request<Incoming>,
    note: &mut Note,
) -> Response<ResponseBody> {
    let Some(pool) = ctx.board.topology().pool_for_listener(ctx.listener).cloned() else {
        return respond(LocalError::NoServer, "?");
    };
    note.pool = Some(pool.clone());
    if let Err(refusal) = strict::check(&req) {
        return local(&pool, refusal.into());
    }
    if let Err(error) = within_limits(&req, ctx.limits.uri_bytes, pool.settings.max_body) {
        return local(&pool, error);
    }
    let ip = client.addr.ip();
    let session = pool
        .affinity
        .as_ref()
        .map(|a| a.resolve(&pool.name, &pool.servers, req.headers(), ip, &client.sessions));
    let key = pool.settings.hash_key.as_ref().and_then(|k| request_key(k, &req, ip));
    // HTTP/2 servers cannot take an HTTP/1.1 upgrade: it goes as a plain request.
    let upgrade = (upgrade::requested(&req) && pool.settings.upstream == UpstreamProtocol::Http1)
        .then(|| (req.headers().get(header::UPGRADE).cloned(), hyper::upgrade::on(&mut req)));
    let side = ClientSide { addr: client.addr, proto: ctx.proto };
    let (mut parts, body) = req.into_parts();
    if let Err(why) = rewrite(&mut parts, side) {
        return local(&pool, LocalError::BadRequest(why));
    }
    let client_upgrade = upgrade.and_then(|(value, on)| {
        upgrade::restore(&mut parts.headers, value?);
        Some(on)
    });
    if let Some(affinity) = &pool.affinity {
        affinity.strip_identifier(&mut parts.headers);
    }
    let retry = &pool.settings.retry;
    let rules =
        BodyRules { buffer: retry.buffer, replayable: retry.attempts > 1, max_body: pool.settings.max_body };
    let prepared = match replay::prepare(parts, body, rules).await {
        Ok(prepared) => prepared,
        Err(error) => return local(&pool, error),
    };
    let exchange = Exchange {
        ctx,
        pool: &pool,
        client,
        key,
        session,
        replay: prepared.replay,
        client_body: prepared.client_body,
        client_upgrade,
        note,
    };
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
    /// Set if the client's side of a streamed body failed.
    client_body: Option<Arc<ClientBody>>,
    /// The client's side of an upgrade it asked for.
    client_upgrade: Option<OnUpgrade>,
    /// What the access log will say.
    note: &'a mut Note,
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
            let attempt = Attempt {
                pool: self.pool,
                server: in_flight.server(),
                client: self.client,
                session: self.bound_key(),
            };
            let outcome = attempt.run(req, &mut body_sent).await;
            if let Some(fault) = self.client_body.as_ref().and_then(|client| client.fault()) {
                // The client broke the exchange (malformed chunking, gone mid-upload, a
                // body over max_body): no verdict on the server, and no replay.
                return local(self.pool, fault);
            }
            self.count(index, &outcome, &in_flight);
            // An unsent request comes back: nothing reached the server, it may go anywhere.
            let (failure, unsent) = match outcome {
                Outcome::Answered { response, sender, connect } => {
                    self.note.connect = connect;
                    return self.answered(index, response, sender, in_flight);
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
            self.note.retries += 1;
            self.client.link.failovers.fetch_add(1, Relaxed);
        }
    }

    /// Counts an attempt's outcome for metrics and passive detection.
    fn count(&self, index: usize, outcome: &Outcome, in_flight: &InFlight) {
        let verdict = match outcome {
            Outcome::Answered { response, .. } if response.status().is_server_error() => Verdict::Failed,
            Outcome::Answered { .. } => Verdict::Healthy,
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

    /// Relays the response — over a tunnel after an upgrade, else streamed with the
    /// connection going home after the body — moving or starting a session first when
    /// needed.
    fn answered(
        &mut self,
        index: usize,
        response: Response<Incoming>,
        sender: Sender,
        in_flight: InFlight,
    ) -> Response<ResponseBody> {
        self.note.server = Some(in_flight.server().clone());
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The upgraded connection is the tunnel's now; it never goes back to a pool.
            drop(sender);
            return match self.client_upgrade.take() {
                Some(client) => upgrade::tunnel(response, client, in_flight),
                // A 101 nobody asked for would leave the client reading another protocol.
                None => local(self.pool, LocalError::UpstreamFailed),
            };
        }
        let private =
            self.pool.settings.send_proxy.is_some().then(|| ConnHome::Private(self.client.private.clone()));
        let (Some(affinity), Some(decision)) = (&self.pool.affinity, self.session) else {
            return relay(response, sender, in_flight, private.unwrap_or(ConnHome::Pool));
        };
        let server = &self.pool.servers[index];
        let secure = self.ctx.proto == "https";
        let (key, header) = match decision {
            Decision::Continue { key, .. } => (key, None),
            Decision::Move { key, issued } => {
                match affinity.moved(&self.pool.name, key, issued, index, &server.name, secure) {
                    Some(header) => {
                        self.note.session(key, "moved");
                        (key, header)
                    }
                    None => return self.start_session(affinity, index, response, sender, in_flight),
                }
            }
            Decision::Start => return self.start_session(affinity, index, response, sender, in_flight),
        };
        if matches!(decision, Decision::Continue { .. }) {
            self.note.session(key, "continued");
        }
        let home =
            private.unwrap_or(ConnHome::Session { table: affinity.table.clone(), key, server: index as u32 });
        with_header(relay(response, sender, in_flight, home), header)
    }

    fn start_session(
        &mut self,
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
        let private =
            self.pool.settings.send_proxy.is_some().then(|| ConnHome::Private(self.client.private.clone()));
        let Some(started) = started else {
            return relay(response, sender, in_flight, private.unwrap_or(ConnHome::Pool));
        };
        self.note.session(started.key, "new");
        let home = private.unwrap_or(ConnHome::Session {
            table: affinity.table.clone(),
            key: started.key,
            server: index as u32,
        });
        with_header(relay(response, sender, in_flight, home), started.header)
    }
}

/// The request target within `uri_bytes`, and a declared body within `max_body` (a
/// chunked body is counted as it streams).
fn within_limits<B>(req: &Request<B>, uri_bytes: u64, max_body: Option<u64>) -> Result<(), LocalError> {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if target as u64 > uri_bytes {
        return Err(LocalError::UriTooLong);
    }
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match (declared, max_body) {
        (Some(length), Some(max)) if length > max => Err(LocalError::BodyTooLarge),
        _ => Ok(()),
    }
}

impl From<Refusal> for LocalError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::BadRequest(why) => Self::BadRequest(why),
            Refusal::NotAllowed(why) => Self::NotAllowed(why),
        }
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
        LocalError::BadRequest(_)
        | LocalError::NotAllowed(_)
        | LocalError::UriTooLong
        | LocalError::BodyTooLarge => &counters.bad_requests,
    };
    counter.fetch_add(1, Relaxed);
    respond(error, &pool.name)
}

/// Rewrites a client request's head into the one sent upstream: origin-form target,
/// `Host` from the authority, HTTP/1.1, hop-by-hop headers out (but `TE: trailers`, which
/// gRPC needs, kept), forwarding headers in.
fn rewrite(parts: &mut http::request::Parts, client: ClientSide<'_>) -> Result<(), &'static str> {
    let trailers = super::headers::accepts_trailers(&parts.headers);
    strip_hop_by_hop(&mut parts.headers);
    if trailers {
        parts.headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
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
