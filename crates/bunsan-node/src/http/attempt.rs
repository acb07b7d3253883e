//! One attempt to send a request to one server: find a connection (the session's own,
//! the client connection's private one, a pooled one, or a new one), send, and wait for
//! the response head within the pool's response timeout.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use super::body::ForwardBody;
use super::ClientConn;
use crate::server::Server;
use crate::topology::Pool;
use crate::upstream::{self, Dial, Lease, Sender};

/// How one attempt on one server ended.
pub(super) enum Outcome {
    /// The server sent a response head; `connect` is how long opening the connection
    /// took (zero for a reused one).
    Answered { response: Response<Incoming>, sender: Sender, connect: Duration },
    /// Nothing reached the server; the request comes back for another one.
    NotSent(Request<ForwardBody>),
    /// The request reached the server and the exchange broke.
    Failed,
    /// No response head within the pool's response timeout.
    TimedOut,
}

/// Where an attempt goes.
pub(super) struct Attempt<'a> {
    pub pool: &'a Pool,
    pub server: &'a Arc<Server>,
    pub client: &'a ClientConn,
    /// The session whose own connection this attempt may use.
    pub session: Option<[u8; 16]>,
}

impl Attempt<'_> {
    /// Sends `req`. A reused connection found closed before the request was written is
    /// replaced, at most once per reused one.
    pub async fn run(
        &self,
        mut req: Request<ForwardBody>,
        body_sent: &mut Option<oneshot::Receiver<()>>,
    ) -> Outcome {
        let counters = &self.server.counters;
        let mut existing = self.existing_connection().await;
        loop {
            let started = Instant::now();
            let lease = match existing.take() {
                Some(sender) => Lease { sender, reused: true },
                None => match self.lease().await {
                    Ok(lease) => lease,
                    Err(error) => {
                        counters.connect_errors.fetch_add(1, Relaxed);
                        let (pool, server) = (&self.pool.name, &self.server.name);
                        tracing::warn!(%pool, %server, %error, "upstream connect failed");
                        return Outcome::NotSent(req);
                    }
                },
            };
            let connect = if lease.reused { Duration::ZERO } else { started.elapsed() };
            let counter =
                if lease.reused { &counters.connections_reused } else { &counters.connections_opened };
            counter.fetch_add(1, Relaxed);
            match self.send(lease.sender, req, body_sent).await {
                Sent::Retry(back) if lease.reused => req = back,
                Sent::Retry(back) => return Outcome::NotSent(back),
                Sent::Answered(response, sender) => return Outcome::Answered { response, sender, connect },
                Sent::Done(outcome) => return outcome,
            }
        }
    }

    /// The pool's PROXY protocol header for this client, if it sends one.
    fn proxy_header(&self) -> Option<Vec<u8>> {
        let version = self.pool.settings.send_proxy?;
        Some(super::private::proxy_header(version, self.client.addr, self.client.local))
    }

    /// A connection already established for this request's client: the client
    /// connection's private one (PROXY pools), else the session's own (seed 000).
    async fn existing_connection(&self) -> Option<Sender> {
        if self.pool.settings.send_proxy.is_some() {
            return usable(self.client.private.take(self.server)?).await;
        }
        let affinity = self.pool.affinity.as_ref()?;
        let sender = usable(affinity.table.take_conn(&self.session?)?).await?;
        affinity.counters.session_connection_reuses.fetch_add(1, Relaxed);
        Some(sender)
    }

    /// A pooled or new connection; always a new one where connections are private.
    async fn lease(&self) -> Result<Lease, upstream::ConnectError> {
        let header = self.proxy_header();
        let dial = Dial {
            addr: self.server.addr,
            addr_text: &self.server.addr_text,
            settings: &self.pool.settings,
            proxy_header: header.as_deref(),
        };
        if header.is_some() {
            let sender = upstream::connect(dial).await?;
            return Ok(Lease { sender, reused: false });
        }
        upstream::lease(&self.server.idle, dial).await
    }

    async fn send(
        &self,
        mut sender: Sender,
        req: Request<ForwardBody>,
        body_sent: &mut Option<oneshot::Receiver<()>>,
    ) -> Sent {
        let counters = &self.server.counters;
        let started = Instant::now();
        let response = sender.try_send(req);
        let deadline = response_deadline(self.pool.settings.response_timeout, body_sent);
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
                Sent::Answered(response, sender)
            }
            Err(mut error) => match error.take_message() {
                Some(back) => Sent::Retry(back),
                None => {
                    counters.upstream_errors.fetch_add(1, Relaxed);
                    let error = error.into_error();
                    let (pool, server) = (&self.pool.name, &self.server.name);
                    tracing::warn!(%pool, %server, %error, "upstream request failed");
                    Sent::Done(Outcome::Failed)
                }
            },
        }
    }
}

/// `sender` once it can take a request; `None` if it never will.
async fn usable(mut sender: Sender) -> Option<Sender> {
    if sender.is_closed() || sender.ready().await.is_err() {
        return None;
    }
    Some(sender)
}

/// The result of sending over one connection.
enum Sent {
    /// The request was not written; it comes back.
    Retry(Request<ForwardBody>),
    /// The response head arrived.
    Answered(Response<Incoming>, Sender),
    /// Anything else.
    Done(Outcome),
}

/// Resolves `timeout` after the request body has been sent completely. Borrows the
/// signal, so a request that comes back unsent keeps it for its next attempt.
async fn response_deadline(timeout: Duration, body_sent: &mut Option<oneshot::Receiver<()>>) {
    if let Some(sent) = body_sent.as_mut() {
        // A dropped sender means the body is gone (sent or failed); either way the wait
        // for the server starts now.
        let _sent_or_dropped = sent.await;
        *body_sent = None;
    }
    tokio::time::sleep(timeout).await;
}
