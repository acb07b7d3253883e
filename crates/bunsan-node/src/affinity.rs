//! Session affinity (seed 000) on the request path: read and verify the identifier a
//! request carries, decide which server its session continues on, adopt sessions other
//! nodes issued, and issue identifiers for new sessions.
//!
//! A forged, tampered, truncated or expired identifier counts as absent: it starts a new
//! session and never routes anywhere the client chose. A session whose server went to
//! `maint` or `down` also starts anew (new server, new identifier in the same response);
//! a `drain` server keeps its sessions.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bunsan_config::{AffinityConfig, AffinityMode};
use bunsan_core::{ServerTag, SessionId, SessionKey, Token};
use http::header::{HeaderMap, HeaderName, HeaderValue, COOKIE, SET_COOKIE};
use ring::rand::{SecureRandom, SystemRandom};

use crate::server::Server;
use crate::session::{ClientSessions, Lookup, Origin, SessionSettings, SessionTable};
use crate::upstream::Sender;

/// The session table of one pool: sessions name their server by its index in the pool.
pub type Table = SessionTable<u32, Sender>;

/// A pool's affinity settings, key and session table.
#[derive(Debug)]
pub struct Affinity {
    /// Where the identifier travels.
    pub mode: AffinityMode,
    carrier: Carrier,
    key: Option<Arc<SessionKey>>,
    /// The pool's sessions.
    pub table: Arc<Table>,
    max_lifetime: Duration,
    /// Each server's tag (same order as the pool's servers), to adopt other nodes' sessions.
    tags: Vec<ServerTag>,
    /// Counters of the request path.
    pub counters: AffinityCounters,
}

#[derive(Debug)]
enum Carrier {
    Cookie(String),
    Header(HeaderName),
    ClientIp,
}

/// Request-path counters; the table counts creations and expiries itself.
#[derive(Debug, Default)]
pub struct AffinityCounters {
    /// Identifiers that failed verification (forged, tampered, truncated, expired).
    pub invalid_identifiers: AtomicU64,
    /// Requests that continued an existing session.
    pub session_requests: AtomicU64,
    /// Of those, requests sent over the session's own upstream connection.
    pub session_connection_reuses: AtomicU64,
    /// Sessions re-bound to another server (theirs failed or left).
    pub sessions_moved: AtomicU64,
}

/// A session just started.
#[derive(Debug)]
pub struct Started {
    /// Its key in the table.
    pub key: [u8; 16],
    /// The response header that tells the client its identifier (none for `client-ip`).
    pub header: Option<(HeaderName, HeaderValue)>,
}

/// What affinity decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Continue session `key` on server `server` (an index into the pool's servers);
    /// `issued` is the identifier's issue time (none for `client-ip`).
    Continue { key: [u8; 16], server: usize, issued: Option<u64> },
    /// Session `key` must move: its server takes no more work, or failed. It continues on
    /// the server the balancer picks, and the client gets a refreshed identifier.
    Move { key: [u8; 16], issued: Option<u64> },
    /// Start a new session on whichever server the balancer picks.
    Start,
}

impl Affinity {
    /// Affinity for `pool` with `servers` (names, in pool order).
    pub fn new(
        config: &AffinityConfig,
        pool: &str,
        servers: &[&str],
        key: Option<Arc<SessionKey>>,
        max_entries: usize,
    ) -> Self {
        let carrier = match config.mode {
            AffinityMode::Cookie => Carrier::Cookie(config.name.clone()),
            AffinityMode::Header => match HeaderName::from_bytes(config.name.as_bytes()) {
                Ok(name) => Carrier::Header(name),
                Err(_) => Carrier::ClientIp,
            },
            AffinityMode::ClientIp => Carrier::ClientIp,
        };
        let tags = match &key {
            Some(key) => servers.iter().map(|s| key.server_tag(pool, s)).collect(),
            None => Vec::new(),
        };
        let settings = SessionSettings {
            idle_timeout: config.idle_timeout,
            max_lifetime: config.max_lifetime,
            max_entries,
        };
        Self {
            mode: config.mode,
            carrier,
            key,
            table: Arc::new(SessionTable::new(settings)),
            max_lifetime: config.max_lifetime,
            tags,
            counters: AffinityCounters::default(),
        }
    }

    /// Decides where a request goes, attaching the client connection to a continued session.
    pub fn resolve(
        &self,
        pool: &str,
        servers: &[Arc<Server>],
        headers: &HeaderMap,
        client: IpAddr,
        conn: &ClientSessions<u32, Sender>,
    ) -> Decision {
        let now = unix_now();
        let (key, token) = match &self.carrier {
            Carrier::ClientIp => (ip_session(client), None),
            _ => match self.identifier(pool, headers, now) {
                Some(token) => (token.id.0, Some(token)),
                None => return Decision::Start,
            },
        };
        let server = match self.table.lookup(&key) {
            Lookup::Live(index) => Some(index as usize),
            Lookup::Expired => None,
            Lookup::Unknown => token.and_then(|token| self.adopt(&token, now, servers)),
        };
        let issued = token.map(|t| t.issued);
        let Some(server) = server else { return Decision::Start };
        conn.attach(&self.table, key);
        self.counters.session_requests.fetch_add(1, Relaxed);
        match servers.get(server).is_some_and(|s| s.state().takes_bound_work()) {
            true => Decision::Continue { key, server, issued },
            // Its server takes no more work (maint, down): the session moves to whichever
            // server the balancer picks.
            false => Decision::Move { key, issued },
        }
    }

    /// Re-binds session `key` to server `index` after its own server failed or left;
    /// returns the refreshed identifier header (none for `client-ip`), or `None` if the
    /// session has ended meanwhile (the caller then starts a new one).
    pub fn moved(
        &self,
        pool: &str,
        key: [u8; 16],
        issued: Option<u64>,
        index: usize,
        server_name: &str,
        secure: bool,
    ) -> Option<Option<(HeaderName, HeaderValue)>> {
        if !self.table.rebind(&key, index as u32) {
            return None;
        }
        self.counters.sessions_moved.fetch_add(1, Relaxed);
        let Some(signer) = &self.key else { return Some(None) };
        let issued = issued.unwrap_or_else(unix_now);
        let token = Token { id: SessionId(key), server: signer.server_tag(pool, server_name), issued };
        Some(self.issue_header(&signer.encode(pool, &token), secure))
    }

    /// The verified token the request carries, if any; a bad one is counted and ignored.
    fn identifier(&self, pool: &str, headers: &HeaderMap, now: u64) -> Option<Token> {
        let key = self.key.as_ref()?;
        let text = match &self.carrier {
            Carrier::Cookie(name) => crate::http::key::cookie(headers, name)?,
            Carrier::Header(name) => headers.get(name)?.as_bytes(),
            Carrier::ClientIp => return None,
        };
        match key.decode(pool, text, now, self.max_lifetime.as_secs()) {
            Ok(token) => Some(token),
            Err(error) => {
                self.counters.invalid_identifiers.fetch_add(1, Relaxed);
                tracing::debug!(pool, %error, "ignoring an invalid session identifier");
                None
            }
        }
    }

    /// Adopts a session another node issued (valid token, no entry here) if it names a
    /// server of this pool; several nodes sharing the key thus keep stickiness with no
    /// shared state.
    fn adopt(&self, token: &Token, now: u64, servers: &[Arc<Server>]) -> Option<usize> {
        let index = self.tags.iter().position(|t| *t == token.server)?;
        if !servers.get(index)?.state().takes_bound_work() {
            return None;
        }
        let inserted = self.table.insert(token.id.0, index as u32, token.issued, now, Origin::Adopted);
        inserted.then_some(index)
    }

    /// Starts a session on `server` after it answered; `None` when the table is full (the
    /// request is then served without affinity).
    pub fn start(
        &self,
        pool: &str,
        server: usize,
        server_name: &str,
        client: IpAddr,
        secure: bool,
        conn: &ClientSessions<u32, Sender>,
    ) -> Option<Started> {
        let now = unix_now();
        let (key, issued) = match &self.carrier {
            Carrier::ClientIp => (ip_session(client), None),
            _ => {
                let id = random_id()?;
                let signer = self.key.as_ref()?;
                let server = signer.server_tag(pool, server_name);
                (id.0, Some((signer, Token { id, server, issued: now })))
            }
        };
        if !self.table.insert(key, server as u32, now, now, Origin::Created) {
            return None;
        }
        conn.attach(&self.table, key);
        let header =
            issued.and_then(|(signer, token)| self.issue_header(&signer.encode(pool, &token), secure));
        Some(Started { key, header })
    }

    fn issue_header(&self, token: &str, secure: bool) -> Option<(HeaderName, HeaderValue)> {
        match &self.carrier {
            Carrier::Cookie(name) => {
                let secure = if secure { "; Secure" } else { "" };
                let cookie = format!("{name}={token}; Path=/; HttpOnly; SameSite=Lax{secure}");
                Some((SET_COOKIE, HeaderValue::from_str(&cookie).ok()?))
            }
            Carrier::Header(name) => Some((name.clone(), HeaderValue::from_str(token).ok()?)),
            Carrier::ClientIp => None,
        }
    }

    /// Removes the identifier from a request before it goes to a server: it is bunsan's,
    /// and the server has no use for it.
    pub fn strip_identifier(&self, headers: &mut HeaderMap) {
        match &self.carrier {
            Carrier::Cookie(name) => strip_cookie(headers, name),
            Carrier::Header(name) => {
                headers.remove(name);
            }
            Carrier::ClientIp => {}
        }
    }
}

/// The session key of a client address (IPv4 as IPv4-mapped IPv6).
fn ip_session(ip: IpAddr) -> [u8; 16] {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// A new random session id; `None` only if the system has no randomness to give.
fn random_id() -> Option<SessionId> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(SessionId(bytes))
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Removes cookie `name` from every `Cookie` header, dropping headers left empty.
fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            let pairs = v.split(';').map(str::trim).filter(|pair| pair.split('=').next() != Some(name));
            pairs.collect::<Vec<_>>().join("; ")
        })
        .filter(|v| !v.is_empty())
        .collect();
    headers.remove(COOKIE);
    for value in kept {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(COOKIE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_cookie_keeps_the_others() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; bunsan_session=xyz; b=2"));
        h.append(COOKIE, HeaderValue::from_static("bunsan_session=zzz"));
        strip_cookie(&mut h, "bunsan_session");
        let all: Vec<_> = h.get_all(COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2"]);
    }

    #[test]
    fn ip_sessions_map_ipv4_into_ipv6() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(ip_session(v4), ip_session(mapped));
    }
}
