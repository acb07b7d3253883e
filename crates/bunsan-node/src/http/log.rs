//! Building one request's access log entry: what is known when it arrives ([`Draft`]),
//! what the exchange learns on the way ([`Note`]), and what only the end of the
//! response body can tell (bytes, total time, delivery; see [`super::body`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Request, Response, Version};

use super::body::{millis, LogTail, ResponseBody};
use crate::access_log::{rfc3339, AccessLog, Entry, SessionNote};
use crate::server::Server;
use crate::topology::Pool;

/// Longest request target written to the log; longer ones are cut (a log line per
/// request must stay bounded whatever a client sends).
const MAX_PATH: usize = 1024;

/// What the exchange learned: cheap to fill whether or not the log is on.
#[derive(Debug, Default)]
pub struct Note {
    /// The pool the listener fed.
    pub pool: Option<Arc<Pool>>,
    /// The server that answered.
    pub server: Option<Arc<Server>>,
    /// Time to open the connection the answer came over (zero when reused).
    pub connect: Duration,
    /// Attempts after the first.
    pub retries: u32,
    session: Option<([u8; 16], &'static str)>,
}

impl Note {
    /// Records the request's session and what happened to it.
    pub fn session(&mut self, key: [u8; 16], event: &'static str) {
        self.session = Some((key, event));
    }
}

/// The entry's first half, taken from the request as it arrived.
#[derive(Debug)]
pub struct Draft {
    time: String,
    client: SocketAddr,
    request_id: String,
    method: String,
    path: String,
    protocol: &'static str,
}

impl Draft {
    /// Starts an entry for `req`.
    pub fn new<B>(req: &Request<B>, client: SocketAddr, id: &HeaderValue, arrival: SystemTime) -> Self {
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let mut path = target.to_owned();
        if path.len() > MAX_PATH {
            let cut = (0..=MAX_PATH).rev().find(|&i| path.is_char_boundary(i)).unwrap_or(0);
            path.truncate(cut);
        }
        Self {
            time: rfc3339(arrival),
            client,
            request_id: id.to_str().unwrap_or_default().to_owned(),
            method: req.method().as_str().to_owned(),
            path,
            protocol: protocol(req.version()),
        }
    }

    /// Completes the entry with what the exchange learned; the body adds the rest.
    pub fn finish(
        self,
        note: Note,
        response: &Response<ResponseBody>,
        started: Instant,
        log: Arc<AccessLog>,
    ) -> Box<LogTail> {
        let session = note.session.map(|(key, event)| SessionNote {
            id: key[..8].iter().map(|b| format!("{b:02x}")).collect(),
            event,
        });
        let entry = Entry {
            time: self.time,
            client: self.client,
            request_id: self.request_id,
            method: self.method,
            path: self.path,
            protocol: self.protocol,
            pool: note.pool.map(|p| p.name.clone()).unwrap_or_default(),
            server: note.server.map(|s| s.name.clone()),
            status: response.status().as_u16(),
            bytes: 0,
            connect_ms: millis(note.connect),
            first_byte_ms: millis(started.elapsed()),
            total_ms: 0.0,
            retries: note.retries,
            session,
            delivered: false,
        };
        Box::new(LogTail { entry, started, log })
    }
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}
