//! The agent's configuration: what to watch, how to measure it and where to report it.
//!
//! Settings come from flags, a TOML file, or both: each source is a [`PartialConfig`],
//! [`PartialConfig::overlay`] lets the flags win, and [`PartialConfig::finish`] applies the
//! defaults and validates everything into an [`AgentConfig`]. Every error names its key.
//!
//! ```toml
//! name = "web1"                        # default: the host name
//! control = ["http://10.0.0.5:7070"]   # one or more; on failure the next is tried
//! token = "secret"                     # sent as `Authorization: Bearer …`
//! method = "sockets"                   # sockets | packets | scrape
//! interval = "1s"                      # how often load is measured and reported
//! probe = "http:/healthz"              # tcp | http:/PATH | none
//! probe_interval = "1s"                # default: interval
//! fall = 2
//! rise = 2
//! scrape_url = "http://{addr}/metrics" # scrape only; {addr}, {host}, {port} are replaced
//! scrape_metric = "inflight_requests"  # scrape only; default: the body is one number
//!
//! [[server]]
//! pool = "app"
//! server = "host1"
//! addr = "127.0.0.1:9001"
//! # scrape_url = "http://127.0.0.1:9100/metrics"  # overrides the template for this server
//! ```

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bunsan_config::HealthKind;
use serde::{Deserialize, Deserializer};

/// The shortest and longest `interval` / `probe_interval` accepted.
const INTERVALS: std::ops::RangeInclusive<Duration> = Duration::from_millis(10)..=Duration::from_secs(3600);
/// The accepted `fall` / `rise` thresholds (as for the node's health checks).
const THRESHOLDS: std::ops::RangeInclusive<u32> = 1..=100;
/// Defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_THRESHOLD: u32 = 2;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for the agent (unknown key, wrong type, bad value);
    /// the message shows the line and the key.
    #[error("{}: {source}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: Box<toml::de::Error>,
    },
    /// A setting has a value the agent cannot use.
    #[error("{key}: {message}")]
    Invalid {
        /// The key (or flag without dashes), e.g. `interval` or `server`.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

/// How the agent measures load. See the crate docs for what `load` means for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// Established connections, from the kernel's socket tables (`/proc/net/tcp{,6}`).
    #[default]
    Sockets,
    /// Packets per second addressed to the server, from a raw `AF_PACKET` socket.
    Packets,
    /// A number the server publishes over HTTP.
    Scrape,
}

impl Method {
    /// The name used in flags, the file and the registration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sockets => "sockets",
            Self::Packets => "packets",
            Self::Scrape => "scrape",
        }
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "sockets" => Ok(Self::Sockets),
            "packets" => Ok(Self::Packets),
            "scrape" => Ok(Self::Scrape),
            _ => Err(format!("unknown method {text:?} (valid: sockets, packets, scrape)")),
        }
    }
}

/// How the agent decides whether a server is up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Probe {
    /// No probing: always up.
    None,
    /// A TCP connect succeeds.
    #[default]
    Tcp,
    /// `GET path` answers 200–399.
    Http {
        /// Starts with `/`.
        path: String,
    },
}

impl Probe {
    /// The node's health-check kind for this probe; `None` for [`Probe::None`].
    pub fn health_kind(&self) -> Option<HealthKind> {
        match self {
            Self::None => None,
            Self::Tcp => Some(HealthKind::Tcp),
            Self::Http { path } => {
                Some(HealthKind::Http { path: path.clone(), host: None, expect: 200..=399 })
            }
        }
    }
}

impl FromStr for Probe {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "none" => return Ok(Self::None),
            "tcp" => return Ok(Self::Tcp),
            _ => {}
        }
        let Some(path) = text.strip_prefix("http:") else {
            return Err(format!("unknown probe {text:?} (valid: tcp, http:/PATH, none)"));
        };
        // The same rule as the node's health checks: a request target without spaces.
        if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("the probe path {path:?} must start with / and be visible ASCII"));
        }
        Ok(Self::Http { path: path.to_owned() })
    }
}

/// One server to watch as written: `POOL/SERVER=IP:PORT` on the command line, a
/// `[[server]]` table in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    /// The pool.
    pub pool: String,
    /// The server's name in the pool.
    pub server: String,
    /// `IP:PORT`.
    pub addr: String,
    /// For `scrape`: this server's URL, instead of the `scrape_url` template.
    #[serde(default)]
    pub scrape_url: Option<String>,
}

impl FromStr for ServerEntry {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let syntax = || format!("{text:?} is not POOL/SERVER=IP:PORT");
        let (name, addr) = text.split_once('=').ok_or_else(syntax)?;
        let (pool, server) = name.split_once('/').ok_or_else(syntax)?;
        let entry = Self {
            pool: pool.to_owned(),
            server: server.to_owned(),
            addr: addr.to_owned(),
            scrape_url: None,
        };
        entry.resolve_addr()?;
        Ok(entry)
    }
}

impl ServerEntry {
    /// Checks the names and parses the address.
    fn resolve_addr(&self) -> Result<SocketAddr, String> {
        check_name(&self.pool).map_err(|e| format!("pool: {e}"))?;
        check_name(&self.server).map_err(|e| format!("server: {e}"))?;
        self.addr
            .parse()
            .map_err(|_| format!("{}/{}: {:?} is not IP:PORT", self.pool, self.server, self.addr))
    }
}

/// One watched server, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The pool.
    pub pool: String,
    /// The server's name in the pool.
    pub server: String,
    /// Where it listens (an unspecified IP means "any local address").
    pub addr: SocketAddr,
    /// For `scrape`: where its number is read.
    pub scrape_url: Option<http::Uri>,
}

/// A complete, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The agent's name in the registry.
    pub name: String,
    /// The state manager's base URLs (`http://HOST:PORT[/PREFIX]`), tried in order.
    pub control: Vec<http::Uri>,
    /// Bearer token for every request to control.
    pub token: Option<String>,
    /// How load is measured.
    pub method: Method,
    /// How often load is measured and reported.
    pub interval: Duration,
    /// How up/down is decided.
    pub probe: Probe,
    /// How often each server is probed.
    pub probe_interval: Duration,
    /// Consecutive failed probes that mark a server down.
    pub fall: u32,
    /// Consecutive passed probes that bring it back.
    pub rise: u32,
    /// For `scrape` with a metric name: the Prometheus metric to read.
    pub scrape_metric: Option<String>,
    /// What is watched.
    pub servers: Vec<Server>,
}

/// Settings from one source, every one optional; see the module docs for the file format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialConfig {
    /// `name`.
    pub name: Option<String>,
    /// `control`.
    pub control: Option<Vec<String>>,
    /// `token`.
    pub token: Option<String>,
    /// `method`.
    #[serde(default, deserialize_with = "parsed")]
    pub method: Option<Method>,
    /// `interval`.
    #[serde(default, deserialize_with = "duration")]
    pub interval: Option<Duration>,
    /// `probe`.
    #[serde(default, deserialize_with = "parsed")]
    pub probe: Option<Probe>,
    /// `probe_interval`.
    #[serde(default, deserialize_with = "duration")]
    pub probe_interval: Option<Duration>,
    /// `fall`.
    pub fall: Option<u32>,
    /// `rise`.
    pub rise: Option<u32>,
    /// `scrape_url`: a template (`{addr}`, `{host}`, `{port}`).
    pub scrape_url: Option<String>,
    /// `scrape_metric`.
    pub scrape_metric: Option<String>,
    /// `[[server]]`.
    #[serde(default, rename = "server")]
    pub servers: Vec<ServerEntry>,
}

/// Reads a string and parses it with `FromStr`, so a bad value's error points at it.
fn parsed<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    let text = String::deserialize(deserializer)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// Reads a duration such as `"1s"` or `"250ms"`.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    bunsan_config::duration::parse_duration(&text).map(Some).map_err(serde::de::Error::custom)
}

impl PartialConfig {
    /// Parses a TOML file's text; `path` names the file in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Toml { path: path.to_owned(), source: Box::new(e) })
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text, path)
    }

    /// These settings with `top`'s on top: every setting `top` has replaces this one's
    /// (lists as a whole).
    pub fn overlay(self, top: PartialConfig) -> PartialConfig {
        PartialConfig {
            name: top.name.or(self.name),
            control: top.control.or(self.control),
            token: top.token.or(self.token),
            method: top.method.or(self.method),
            interval: top.interval.or(self.interval),
            probe: top.probe.or(self.probe),
            probe_interval: top.probe_interval.or(self.probe_interval),
            fall: top.fall.or(self.fall),
            rise: top.rise.or(self.rise),
            scrape_url: top.scrape_url.or(self.scrape_url),
            scrape_metric: top.scrape_metric.or(self.scrape_metric),
            servers: if top.servers.is_empty() { self.servers } else { top.servers },
        }
    }

    /// Applies the defaults and validates.
    pub fn finish(self) -> Result<AgentConfig, ConfigError> {
        let method = self.method.unwrap_or_default();
        let interval = check_interval("interval", self.interval.unwrap_or(DEFAULT_INTERVAL))?;
        Ok(AgentConfig {
            name: agent_name(self.name)?,
            control: control_urls(self.control.unwrap_or_default())?,
            token: check_token(self.token)?,
            method,
            interval,
            probe: self.probe.unwrap_or_default(),
            probe_interval: check_interval("probe_interval", self.probe_interval.unwrap_or(interval))?,
            fall: check_threshold("fall", self.fall)?,
            rise: check_threshold("rise", self.rise)?,
            scrape_metric: scrape_metric(method, self.scrape_metric)?,
            servers: servers(method, self.servers, self.scrape_url.as_deref())?,
        })
    }
}

/// Names of agents, pools and servers: `[A-Za-z0-9._-]{1,64}`.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid name (1 to 64 of A-Z a-z 0-9 . _ -)"))
    }
}

/// The configured name, else the host name.
fn agent_name(name: Option<String>) -> Result<String, ConfigError> {
    let name = match name {
        Some(name) => name,
        None => nix::unistd::gethostname()
            .map_err(|e| invalid("name", format!("no name given and the host name is unreadable: {e}")))?
            .to_string_lossy()
            .into_owned(),
    };
    check_name(&name).map_err(|e| invalid("name", e))?;
    Ok(name)
}

fn control_urls(urls: Vec<String>) -> Result<Vec<http::Uri>, ConfigError> {
    if urls.is_empty() {
        return Err(invalid("control", "at least one control URL is needed"));
    }
    let base = |url: &String| match http_url(url)? {
        uri if uri.query().is_some() => Err(format!("{url:?}: give control's base URL, without a query")),
        uri => Ok(uri),
    };
    urls.iter().map(|url| base(url).map_err(|e| invalid("control", e))).collect()
}

/// An `http://HOST:PORT[/PATH]` URL. Only plain HTTP: the agent has no TLS
/// client (control and metrics endpoints are expected on a trusted network).
fn http_url(text: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = text.parse().map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(format!("{text:?} must be an http://HOST:PORT URL"));
    }
    Ok(uri)
}

fn check_token(token: Option<String>) -> Result<Option<String>, ConfigError> {
    match token {
        Some(t) if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) => {
            Err(invalid("token", "must be non-empty visible ASCII (it is sent in a header)"))
        }
        other => Ok(other),
    }
}

fn check_interval(key: &'static str, value: Duration) -> Result<Duration, ConfigError> {
    if INTERVALS.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(key, format!("{value:?} is outside 10ms..=1h")))
    }
}

fn check_threshold(key: &'static str, value: Option<u32>) -> Result<u32, ConfigError> {
    let value = value.unwrap_or(DEFAULT_THRESHOLD);
    if THRESHOLDS.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(key, format!("{value} is outside 1..=100")))
    }
}

fn scrape_metric(method: Method, metric: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(metric) = metric else { return Ok(None) };
    if method != Method::Scrape {
        return Err(invalid("scrape_metric", "is only for method scrape"));
    }
    let mut bytes = metric.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':') {
        return Err(invalid("scrape_metric", format!("{metric:?} is not a Prometheus metric name")));
    }
    Ok(Some(metric))
}

fn servers(
    method: Method,
    entries: Vec<ServerEntry>,
    template: Option<&str>,
) -> Result<Vec<Server>, ConfigError> {
    if entries.is_empty() {
        return Err(invalid("server", "at least one server to watch is needed"));
    }
    if method != Method::Scrape && (template.is_some() || entries.iter().any(|e| e.scrape_url.is_some())) {
        return Err(invalid("scrape_url", "is only for method scrape"));
    }
    let mut servers: Vec<Server> = Vec::with_capacity(entries.len());
    for entry in entries {
        let addr = entry.resolve_addr().map_err(|e| invalid("server", e))?;
        if servers.iter().any(|s| s.pool == entry.pool && s.server == entry.server) {
            return Err(invalid("server", format!("{}/{} is listed twice", entry.pool, entry.server)));
        }
        let scrape_url = scrape_url(method, &entry, addr, template)?;
        servers.push(Server { pool: entry.pool, server: entry.server, addr, scrape_url });
    }
    check_distinct_urls(&servers)?;
    Ok(servers)
}

/// The server's own `scrape_url`, else the template filled in with its address.
fn scrape_url(
    method: Method,
    entry: &ServerEntry,
    addr: SocketAddr,
    template: Option<&str>,
) -> Result<Option<http::Uri>, ConfigError> {
    if method != Method::Scrape {
        return Ok(None);
    }
    let text = match (&entry.scrape_url, template) {
        (Some(own), _) => own.clone(),
        (None, Some(template)) => fill_template(template, addr),
        (None, None) => return Err(invalid("scrape_url", "method scrape needs a URL to read")),
    };
    http_url(&text).map(Some).map_err(|e| invalid("scrape_url", e))
}

/// Replaces `{addr}` (`IP:PORT`, IPv6 in brackets), `{host}` (the IP, IPv6 in brackets)
/// and `{port}`.
pub fn fill_template(template: &str, addr: SocketAddr) -> String {
    let host = match addr {
        SocketAddr::V4(v4) => v4.ip().to_string(),
        SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
    };
    template
        .replace("{addr}", &addr.to_string())
        .replace("{host}", &host)
        .replace("{port}", &addr.port().to_string())
}

/// Two servers reading the same URL would report the same number: almost certainly a
/// template without a placeholder.
fn check_distinct_urls(servers: &[Server]) -> Result<(), ConfigError> {
    for (i, a) in servers.iter().enumerate() {
        let Some(url) = &a.scrape_url else { continue };
        if let Some(b) = servers[i + 1..].iter().find(|b| b.scrape_url.as_ref() == Some(url)) {
            let message = format!(
                "{}/{} and {}/{} would both read {url}; use {{addr}}, {{host}} or {{port}}",
                a.pool, a.server, b.pool, b.server
            );
            return Err(invalid("scrape_url", message));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
