//! The `sockets` method: reads the kernel's TCP tables every interval and counts, per
//! server, the connections whose *local* end is the server (the agent runs on the
//! server's host, so the server's side of every connection is in the table).
//!
//! - `load` = connections in state ESTABLISHED at sampling time — the server's
//!   concurrency, the figure least-relative-load balancing wants.
//! - `new_per_sec` = connections (in any state but LISTEN) whose remote end was not in the
//!   previous sample, divided by the seconds between the two samples. Connections that
//!   open and close between two samples are not seen, so this undercounts very short
//!   connections; the first sample has no baseline and gives `None`.
//!
//! Reading the tables is a few file reads per interval and never touches the server.
//! The tables show the agent's network namespace: a server in a container is seen only
//! by an agent in the same namespace.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::proc_net::{self, SocketEntry, ESTABLISHED, LISTEN};
use super::{belongs_to, ObserveError, Sample};

/// The tables read; the IPv6 one may be missing (IPv6 disabled).
const TCP: &str = "/proc/net/tcp";
const TCP6: &str = "/proc/net/tcp6";

/// One server's sockets in one sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Connections in state ESTABLISHED.
    pub established: u64,
    /// The remote ends of all its connections (any state but LISTEN).
    pub remotes: HashSet<SocketAddr>,
}

/// Counts each server's connections among `entries`.
pub fn census(entries: impl Iterator<Item = SocketEntry>, servers: &[SocketAddr]) -> Vec<Census> {
    let mut counts = vec![Census::default(); servers.len()];
    for entry in entries.filter(|e| e.state != LISTEN) {
        for (server, count) in servers.iter().zip(counts.iter_mut()) {
            if belongs_to(*server, entry.local) {
                count.established += u64::from(entry.state == ESTABLISHED);
                count.remotes.insert(entry.remote);
            }
        }
    }
    counts
}

/// The `sockets` method, remembering the previous sample's connections.
#[derive(Debug)]
pub struct Sockets {
    servers: Vec<SocketAddr>,
    tables: [PathBuf; 2],
    previous: Option<(Instant, Vec<HashSet<SocketAddr>>)>,
}

impl Sockets {
    /// Watches `servers`; fails if the IPv4 table cannot be read.
    pub fn new(servers: Vec<SocketAddr>) -> Result<Self, ObserveError> {
        let sockets = Self { servers, tables: [TCP.into(), TCP6.into()], previous: None };
        read_tables(&sockets.tables)?;
        Ok(sockets)
    }

    /// One sample per server. Reading the tables happens off the async threads (they can
    /// be megabytes on a busy host).
    pub async fn sample(&mut self) -> Vec<Sample> {
        let tables = self.tables.clone();
        match tokio::task::spawn_blocking(move || read_tables(&tables)).await {
            Ok(Ok(text)) => self.sample_text(&text, Instant::now()),
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot read the socket tables; no load this interval");
                vec![Sample::default(); self.servers.len()]
            }
            Err(error) => {
                tracing::error!(%error, "the socket table reader failed");
                vec![Sample::default(); self.servers.len()]
            }
        }
    }

    /// One sample per server from the tables' text, read at `now`.
    pub fn sample_text(&mut self, text: &str, now: Instant) -> Vec<Sample> {
        let counts = census(proc_net::parse(text), &self.servers);
        let previous = self.previous.take();
        let samples = counts
            .iter()
            .enumerate()
            .map(|(i, count)| Sample {
                load: Some(count.established as f64),
                new_per_sec: previous.as_ref().map(|(then, remotes)| {
                    let fresh = count.remotes.iter().filter(|r| !remotes[i].contains(r)).count();
                    // A zero-length interval (two samples at once) has no rate to speak of.
                    fresh as f64 / now.duration_since(*then).as_secs_f64().max(1e-3)
                }),
            })
            .collect();
        self.previous = Some((now, counts.into_iter().map(|c| c.remotes).collect()));
        samples
    }
}

/// Both tables' text, concatenated (the parser skips the second header).
fn read_tables(tables: &[PathBuf; 2]) -> Result<String, ObserveError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|source| ObserveError::SocketTable { path: path.to_owned(), source })
    };
    let mut text = read(&tables[0])?;
    match read(&tables[1]) {
        Ok(v6) => text.push_str(&v6),
        Err(ObserveError::SocketTable { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        Err(other) => return Err(other),
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn line(slot: usize, local: &str, remote: &str, state: &str) -> String {
        format!("{slot}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000 0 0 1\n")
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn counts_established_by_local_end_and_new_connections_per_second() {
        let server: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let mut sockets =
            Sockets { servers: vec![server], tables: [TCP.into(), TCP6.into()], previous: None };
        let listen = line(0, "0100007F:1F90", "00000000:0000", "0A");
        let a = line(1, "0100007F:1F90", "0100007F:C350", "01");
        let a_client = line(2, "0100007F:C350", "0100007F:1F90", "01");
        let b = line(3, "0100007F:1F90", "0100007F:C351", "01");
        let c_closing = line(4, "0100007F:1F90", "0100007F:C352", "08");
        let start = Instant::now();
        let first = sockets.sample_text(&format!("{listen}{a}{a_client}"), start);
        assert_eq!(first, vec![Sample { load: Some(1.0), new_per_sec: None }]);
        let later = start + Duration::from_secs(2);
        let second = sockets.sample_text(&format!("{listen}{a}{a_client}{b}{c_closing}"), later);
        // b and c are new (c counts although it is closing); only a and b are established.
        assert_eq!(second, vec![Sample { load: Some(2.0), new_per_sec: Some(1.0) }]);
    }
}
