//! Observation methods: each turns what it sees of the watched servers into one [`Sample`]
//! per server per interval, without touching the servers themselves (seed 001 \[0044\]).
//!
//! - [`sockets`]: the kernel's socket tables; load = established connections.
//! - [`packets`]: a raw packet socket; load = packets per second addressed to the server.
//! - [`scrape`]: a number the server publishes over HTTP; load = that number.

pub mod frame;
pub mod packets;
pub mod proc_net;
pub mod scrape;
pub mod sockets;

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{AgentConfig, Method};

/// One server's figures for one interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    /// The load to report; `None` when the method has no usable figure (see the crate docs).
    pub load: Option<f64>,
    /// `sockets` only: connections that appeared since the previous sample, per second.
    pub new_per_sec: Option<f64>,
}

/// Why an observation method could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObserveError {
    /// The process may not open raw packet sockets.
    #[error(
        "packets mode needs CAP_NET_RAW: run as root or `setcap cap_net_raw+ep <bunsan>`; or use --method sockets"
    )]
    PacketsPermission,
    /// Opening or setting up the packet socket failed otherwise.
    #[error("cannot open a packet socket: {0}")]
    PacketSocket(#[source] std::io::Error),
    /// The capture thread could not be started.
    #[error("cannot start the packet capture thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A kernel socket table is unreadable (not Linux, or `/proc` not mounted).
    #[error("sockets mode cannot read {}: {source}", path.display())]
    SocketTable {
        /// The table.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The configured method, running.
#[derive(Debug)]
pub enum Observer {
    /// See [`sockets`].
    Sockets(sockets::Sockets),
    /// See [`packets`].
    Packets(packets::Packets),
    /// See [`scrape`] (boxed: it holds an HTTP client, far larger than the others).
    Scrape(Box<scrape::Scrape>),
}

impl Observer {
    /// Starts the configured method; fails at once when it cannot work here (no
    /// `/proc/net/tcp`, no `CAP_NET_RAW`), rather than reporting nothing forever.
    pub fn start(config: &AgentConfig) -> Result<Self, ObserveError> {
        let addrs: Vec<SocketAddr> = config.servers.iter().map(|s| s.addr).collect();
        Ok(match config.method {
            Method::Sockets => Self::Sockets(sockets::Sockets::new(addrs)?),
            Method::Packets => Self::Packets(packets::Packets::start(&addrs)?),
            Method::Scrape => {
                let urls = config.servers.iter().map(|s| s.scrape_url.clone()).collect();
                Self::Scrape(Box::new(scrape::Scrape::new(
                    urls,
                    config.scrape_metric.clone(),
                    config.interval,
                )))
            }
        })
    }

    /// One sample per server (in configuration order) since the previous call.
    pub async fn sample(&mut self) -> Vec<Sample> {
        match self {
            Self::Sockets(sockets) => sockets.sample().await,
            Self::Packets(packets) => packets.sample(),
            Self::Scrape(scrape) => scrape.sample().await,
        }
    }
}

/// The address as the kernel reports it: an IPv4-mapped IPv6 address is the IPv4 one.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// Whether `local` (a canonical address on this host) belongs to the server at `server`:
/// same port, and the same IP unless the server listens on a wildcard address.
pub fn belongs_to(server: SocketAddr, local: SocketAddr) -> bool {
    let server = canonical(server);
    local.port() == server.port() && (server.ip().is_unspecified() || server.ip() == local.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn wildcard_servers_match_any_local_ip_on_their_port() {
        assert!(belongs_to(addr("0.0.0.0:80"), addr("10.0.0.1:80")));
        assert!(belongs_to(addr("[::]:80"), addr("10.0.0.1:80")));
        assert!(belongs_to(addr("[::]:80"), addr("[fe80::1]:80")));
        assert!(!belongs_to(addr("0.0.0.0:80"), addr("10.0.0.1:81")));
    }

    #[test]
    fn specific_servers_match_only_their_ip_and_mapped_servers_are_ipv4() {
        assert!(belongs_to(addr("127.0.0.1:80"), addr("127.0.0.1:80")));
        assert!(!belongs_to(addr("127.0.0.1:80"), addr("127.0.0.2:80")));
        assert!(belongs_to(addr("[::ffff:127.0.0.1]:80"), addr("127.0.0.1:80")));
        assert_eq!(canonical(addr("[::ffff:10.1.2.3]:9")), addr("10.1.2.3:9"));
        assert_eq!(canonical(addr("[::1]:9")), addr("[::1]:9"));
    }
}
