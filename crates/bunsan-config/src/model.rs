//! The validated configuration: every value parsed, every reference resolved.
//!
//! Nothing in here can be wrong in a way the node would have to check again: pool
//! names referenced by listeners exist, names are unique, durations and addresses are
//! parsed, and defaults are filled in.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bunsan_core::{Algorithm, ServerState};

/// A whole node configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Process-wide settings (`[node]`).
    pub node: NodeSettings,
    /// The admin API (`[admin]`); `None` when the file has no `[admin]` table.
    pub admin: Option<AdminConfig>,
    /// `[[listener]]` entries, in file order.
    pub listeners: Vec<ListenerConfig>,
    /// `[[pool]]` entries, in file order.
    pub pools: Vec<PoolConfig>,
    /// `[control]`: the state manager this node subscribes to (seed 001), if any.
    pub control: Option<ControlConfig>,
}

impl Config {
    /// The pool called `name`.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }
}

/// `[node]`: settings of the process as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSettings {
    /// `workers`: worker threads; `None` = one per CPU.
    pub workers: Option<usize>,
    /// `shutdown_timeout`: how long in-flight work may take to finish after SIGTERM/SIGINT.
    /// Default 30 s.
    pub shutdown_timeout: Duration,
    /// Where the secret that signs session identifiers comes from: `session_key` (inline)
    /// or `session_key_file` (default `session.key` beside the config file, created with
    /// a random key on first start). Nodes sharing the key honour each other's identifiers.
    pub session_key: SessionKeySource,
    /// `max_sessions`: sessions (and remembered ended ones) a node keeps, over all pools.
    /// Default 1,000,000.
    pub max_sessions: usize,
    /// `access_log`: where to write one JSON line per request (`"stdout"` or a file path,
    /// relative to the config file); `None` (the default) writes none.
    pub access_log: Option<AccessLogTarget>,
    /// `max_connections`: client connections open at once over all listeners; beyond it
    /// no listener accepts. Default 100,000.
    pub max_connections: usize,
}

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// The process's standard output.
    Stdout,
    /// A file, appended to (reopened on reload, for log rotation).
    File(PathBuf),
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            workers: None,
            shutdown_timeout: Duration::from_secs(30),
            session_key: SessionKeySource::File(PathBuf::from(DEFAULT_SESSION_KEY_FILE)),
            max_sessions: 1_000_000,
            access_log: None,
            max_connections: 100_000,
        }
    }
}

/// The default `session_key_file`, relative to the config file's directory.
pub const DEFAULT_SESSION_KEY_FILE: &str = "session.key";

/// Where the session-signing secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SessionKeySource {
    /// `session_key = "…"` (at least 32 characters).
    Inline(Secret),
    /// `session_key_file = "…"`: read it, or create it with a random key if it is absent.
    File(PathBuf),
}

impl std::fmt::Debug for SessionKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("Inline(***)"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// `[admin]`: the admin API, metrics and status page.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// `listen`: where the admin API listens.
    pub listen: SocketAddr,
    /// `token`: the bearer token callers must present. Required (at least 16 characters)
    /// when `listen` is not a loopback address.
    pub token: Option<Secret>,
}

/// A secret string whose `Debug` output never shows the value, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is compared or sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What a listener speaks to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 and HTTP/2 (h2c with prior knowledge; with TLS, ALPN h2/http/1.1).
    Http,
    /// A layer-4 relay.
    Tcp,
}

impl Protocol {
    /// The name used in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Tcp => "tcp",
        }
    }
}

/// `[[listener]]`: one listening socket and the pool it feeds.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    /// `name`: unique among listeners.
    pub name: String,
    /// `listen`: the address to bind (port 0 picks a free port).
    pub listen: SocketAddr,
    /// `protocol`: `"http"` (default) or `"tcp"`.
    pub protocol: Protocol,
    /// `pool`: the name of an existing pool.
    pub pool: String,
    /// `tls = { cert, key }`: PEM files, relative paths resolved against the config
    /// file's directory. Only on `http` listeners.
    pub tls: Option<TlsFiles>,
    /// `accept_proxy`: every connection starts with a PROXY protocol header (v1 or v2)
    /// giving the real client address; connections without one are refused. Default false.
    pub accept_proxy: bool,
    /// `limits = { … }`: what one client connection may cost.
    pub limits: ListenerLimits,
}

/// A listener's `limits = { max_connections, max_connections_per_client, head_timeout,
/// idle_timeout, header_bytes, header_count, uri_bytes, h2_max_streams }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Client connections open at once; beyond it the listener stops accepting (new
    /// connections wait in the kernel's backlog). Default 25,000.
    pub max_connections: usize,
    /// Client connections open at once from one IP address; beyond it new ones are
    /// closed at once. 0 = no limit (the default: many clients may share an address
    /// behind NAT or another proxy).
    pub max_connections_per_client: usize,
    /// Time a client has to send a complete request head, from the connection's start or
    /// the end of the previous response (slowloris). Default 10 s.
    pub head_timeout: Duration,
    /// A client connection with no request in flight and no bytes moving for this long
    /// is closed. Default 60 s.
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers). Default 64 KiB.
    pub header_bytes: u64,
    /// Most header fields in a request. Default 100.
    pub header_count: usize,
    /// Longest request target; longer is answered `414`. Default 8 KiB.
    pub uri_bytes: u64,
    /// HTTP/2 streams a client may have open at once on one connection. Default 256.
    pub h2_max_streams: u32,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_connections: 25_000,
            max_connections_per_client: 0,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            header_bytes: 64 * 1024,
            header_count: 100,
            uri_bytes: 8 * 1024,
            h2_max_streams: 256,
        }
    }
}

/// A listener's `tls = { cert, key, sni = [{ cert, key }, …] }`: the default certificate
/// chain and key (PEM file paths), and more, chosen by the name a client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `cert`: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// `key`: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// `sni`: more certificates; a client's SNI name picks the first one valid for it,
    /// and any other client gets the default.
    pub sni: Vec<CertFiles>,
}

/// One more certificate chain and key of a listener (`tls.sni` entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// `cert`: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// `key`: its private key.
    pub key: PathBuf,
}

/// Where Maglev takes a request's key from (`hash_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// `header:NAME`: the value of a request header (name stored lowercase).
    Header(String),
    /// `cookie:NAME`: the value of a cookie.
    Cookie(String),
    /// `client-ip`: the client's IP address (the default, and the only key TCP has).
    ClientIp,
    /// `path`: the request path, without the query.
    Path,
}

/// `[[pool]]`: seed 001's representative name, a set of servers doing the same job.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// `name`: unique among pools.
    pub name: String,
    /// `algorithm`: default `least-load`.
    pub algorithm: Algorithm,
    /// `hash_key`: only with `algorithm = "maglev"`; default `client-ip` there.
    pub hash_key: Option<HashKey>,
    /// `connect_timeout`: how long a connection to a server may take. Default 3 s.
    pub connect_timeout: Duration,
    /// `response_timeout`: from the request being sent until the response head arrives.
    /// Default 60 s.
    pub response_timeout: Duration,
    /// `idle_timeout`: pooled upstream connections idle longer than this are closed.
    /// Default 60 s.
    pub idle_timeout: Duration,
    /// `max_idle_per_server`: idle upstream connections kept per server. Default 256.
    pub max_idle_per_server: usize,
    /// `affinity = { mode, name, idle_timeout, max_lifetime }`: seed 000's sessions;
    /// `None` for `mode = "none"` or no `affinity` key.
    pub affinity: Option<AffinityConfig>,
    /// `health = { kind, … }`: active health checks; `None` for `kind = "none"` or no key.
    pub health: Option<HealthConfig>,
    /// `outlier = { … }`: passive failure detection; `None` for `consecutive_failures = 0`.
    /// On, with [`OutlierConfig::default`], when the pool has no `outlier` key.
    pub outlier: Option<OutlierConfig>,
    /// `retry = { … }`: when and how often a failed request is tried on another server.
    pub retry: RetryConfig,
    /// `upstream`: the protocol spoken to the servers. Default `http1`.
    pub upstream: UpstreamProtocol,
    /// `upstream_tls = { ca, server_name }`: TLS to the servers (required by `upstream =
    /// "h2"`, optional for `http1`).
    pub upstream_tls: Option<UpstreamTls>,
    /// `send_proxy`: start every connection to a server with a PROXY protocol header
    /// carrying the client's address. Default none.
    pub send_proxy: Option<ProxyVersion>,
    /// `max_body`: largest request body forwarded; larger is answered `413`. Default:
    /// no limit (bodies stream, so they cost the node no memory).
    pub max_body: Option<u64>,
    /// `response_header_bytes`: largest response head a server may send; larger is a
    /// failed exchange (`502`). Default 64 KiB.
    pub response_header_bytes: u64,
    /// `[[pool.server]]` entries, in file order.
    pub servers: Vec<ServerConfig>,
}

/// `[[pool.server]]`: one real backend.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// `name`: unique within its pool.
    pub name: String,
    /// `addr`: `IP:PORT` or `HOST:PORT` (resolved when the config is loaded; the first
    /// address wins).
    pub addr: SocketAddr,
    /// `addr` as written, for display.
    pub addr_text: String,
    /// `capacity`: seed 001's ratio, 1..=10000. Default 1.
    pub capacity: u32,
    /// `state`: the state the server starts in, `ready` (default), `drain` or `maint`.
    pub state: ServerState,
}

/// How a pool keeps a client's requests on one server (seed 000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityConfig {
    /// `mode`: where the session identifier travels.
    pub mode: AffinityMode,
    /// `name`: the cookie (`bunsan_session` by default) or header (`x-bunsan-session`,
    /// stored lowercase) carrying the identifier; unused for `client-ip`.
    pub name: String,
    /// `idle_timeout`: a session ends this long after its last client connection closed.
    /// Default 30 min.
    pub idle_timeout: Duration,
    /// `max_lifetime`: a session ends this long after it was issued, however active.
    /// Default 24 h.
    pub max_lifetime: Duration,
}

/// Where a session identifier travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffinityMode {
    /// A signed identifier in a cookie (`Set-Cookie` on the first response).
    Cookie,
    /// A signed identifier in a request/response header.
    Header,
    /// The client's IP address is the session (the mode for TCP listeners).
    ClientIp,
}

impl AffinityMode {
    /// The name used in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cookie => "cookie",
            Self::Header => "header",
            Self::ClientIp => "client-ip",
        }
    }
}

/// `health = { kind, path, host, expect, interval, timeout, fall, rise }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// What a check does: `kind = "http"` or `"tcp"` (required; `"none"` means no checks,
    /// and then no other key may be set). `path`, `host` and `expect` are for `http` only.
    pub kind: HealthKind,
    /// Time between two checks of one server (each wait varies by ±10% so checks of many
    /// servers and nodes do not line up). Default 2 s.
    pub interval: Duration,
    /// How long one check may take. Default 1 s; must not exceed `interval`.
    pub timeout: Duration,
    /// Consecutive failed checks that mark a server down. Default 2 (1..=100).
    pub fall: u32,
    /// Consecutive passed checks that bring a down server back. Default 2 (1..=100).
    pub rise: u32,
}

/// The kind of active health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthKind {
    /// `kind = "tcp"`: a TCP connect succeeds.
    Tcp,
    /// `kind = "http"`: `GET path` answers with a status in `expect`.
    Http {
        /// `path`: default `/`; must start with `/` and be visible ASCII (no spaces; the
        /// query, if any, is part of it).
        path: String,
        /// `host`: the `Host` header (visible ASCII, no spaces); default the server's `addr`
        /// as written.
        host: Option<String>,
        /// `expect = "200-399"`: the accepted status range (a single code is allowed), within
        /// 100..=599.
        expect: std::ops::RangeInclusive<u16>,
    },
}

/// `outlier = { consecutive_failures, base_ejection, max_ejection, max_ejected_percent }`:
/// passive detection from real traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Consecutive failures (connect refused or timed out, connection reset, response
    /// timeout, 5xx) that eject a server. Default 5 (0..=1000); 0 turns passive detection
    /// off (the other keys are still checked).
    pub consecutive_failures: u32,
    /// How long the first ejection lasts; each further ejection in a row doubles it.
    /// Default 10 s.
    pub base_ejection: Duration,
    /// The longest an ejection lasts. Default 5 min; must not be less than `base_ejection`.
    pub max_ejection: Duration,
    /// At most this share of a pool's servers is ejected at once (at least one server
    /// always may be). Default 50 (1..=100).
    pub max_ejected_percent: u32,
}

/// `retry = { attempts, buffer, budget_percent, min_retries_per_second }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Attempts at most, the first included, for requests that reached a server and
    /// failed before any response byte (connect failures always move on to the next
    /// server and do not count). Default 3 (1..=10; 1 = never replay).
    pub attempts: u32,
    /// Request bodies up to this size are buffered so that idempotent requests can be
    /// replayed; larger ones stream and are never replayed. Default 64 KiB, at most 64 MiB;
    /// 0 = only requests without a body are replayable. Written as bytes (`buffer = 65536`)
    /// or a size string (`"64KiB"`, see [`crate::size`]).
    pub buffer: u64,
    /// Retries may add at most this percentage to the pool's requests… Default 20 (0..=100).
    pub budget_percent: u32,
    /// …plus this many retries per second regardless. Default 10 (0..=100000).
    pub min_retries_per_second: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { attempts: 3, buffer: 64 * 1024, budget_percent: 20, min_retries_per_second: 10 }
    }
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
        }
    }
}

/// `[control]`: where the node gets the load table from (seed 001's state manager).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// `url`: one `http://HOST:PORT`, or a list of them; the node uses the first that
    /// answers and moves to the next when it fails.
    pub urls: Vec<String>,
    /// `token`: the subscriber token, if the state manager requires one.
    pub token: Option<Secret>,
    /// `delivery`: how the table arrives — `change` (pushed on every change, default),
    /// `periodic` (pushed every `interval`) or `pull` (fetched when traffic needs it, at
    /// most every `interval`).
    pub delivery: ControlDelivery,
    /// `interval`: the period of `periodic` and `pull`. Default 1 s.
    pub interval: Duration,
    /// `stale_after`: with no word from the state manager for this long, reported loads
    /// and states are dropped and the node falls back to its own observation (pins stay).
    /// Default 10 s.
    pub stale_after: Duration,
    /// `assign`: let the state manager choose, per pool, the server this node sends new
    /// work to ([0051]'s second mode). Default false.
    pub assign: bool,
    /// `name`: how this node appears in the state manager's registry. Default: the host name.
    pub name: Option<String>,
}

/// How the load table reaches a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlDelivery {
    /// Pushed whenever something changes (seed 001 claim 2).
    Change,
    /// Pushed every `interval` (claim 4).
    Periodic,
    /// Asked for when traffic needs it (claim 3).
    Pull,
}

/// The protocol a pool speaks to its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (over TLS with `upstream_tls`).
    Http1,
    /// HTTP/2 over cleartext TCP, with prior knowledge.
    H2c,
    /// HTTP/2 over TLS (ALPN `h2`); needs `upstream_tls`.
    H2,
}

impl UpstreamProtocol {
    /// The name used in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::H2c => "h2c",
            Self::H2 => "h2",
        }
    }
}

/// `upstream_tls = { ca, server_name }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// `ca`: PEM file of the certificates that may sign the servers' certificates.
    pub ca: PathBuf,
    /// `server_name`: the name to ask for (SNI) and to verify the certificate against;
    /// default: each server's address as written, without its port.
    pub server_name: Option<String>,
    /// `cert`, `key`: a client certificate to present to the servers (mutual TLS).
    pub client_cert: Option<CertFiles>,
}

/// A PROXY protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    /// The text header (`PROXY TCP4 …\r\n`).
    V1,
    /// The binary header.
    V2,
}
