//! The agent's view of its servers: the latest sample and up/down verdict of each, and
//! the report rows made from them.

use std::net::SocketAddr;

use bunsan_proto::control::{Health, Report};

use crate::config::Server;
use crate::observe::Sample;

/// One watched server as the agent currently sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerStatus {
    /// The pool.
    pub pool: String,
    /// The server.
    pub server: String,
    /// Its address.
    pub addr: SocketAddr,
    /// The latest load; `None` before the first sample or when the method has no usable
    /// figure.
    pub load: Option<f64>,
    /// `sockets` only: new connections per second over the last interval.
    pub new_per_sec: Option<f64>,
    /// The probe's verdict (always up with probe `none`).
    pub up: bool,
}

/// Every watched server, in configuration order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Board {
    /// The servers.
    pub servers: Vec<ServerStatus>,
}

impl Board {
    /// Every server up, nothing measured yet.
    pub fn new(servers: &[Server]) -> Self {
        let servers = servers
            .iter()
            .map(|s| ServerStatus {
                pool: s.pool.clone(),
                server: s.server.clone(),
                addr: s.addr,
                load: None,
                new_per_sec: None,
                up: true,
            })
            .collect();
        Self { servers }
    }

    /// Takes a new sample per server (in order).
    pub fn apply(&mut self, samples: &[Sample]) {
        for (status, sample) in self.servers.iter_mut().zip(samples) {
            status.load = sample.load;
            status.new_per_sec = sample.new_per_sec;
        }
    }

    /// Records a verdict.
    pub fn set_up(&mut self, index: usize, up: bool) {
        if let Some(status) = self.servers.get_mut(index) {
            status.up = up;
        }
    }

    /// The report: a row per server with a known load, and a row for every down server.
    ///
    /// The wire needs a number in every row. A down server's load does not matter (nobody
    /// sends it work), so an unknown one goes out as 0. An up server with an unknown load
    /// gets no row: any made-up number would steer traffic (see the crate docs).
    pub fn rows(&self) -> Vec<Report> {
        self.servers
            .iter()
            .filter_map(|s| {
                let (load, state) = match (s.load, s.up) {
                    (Some(load), true) => (load, Health::Up),
                    (load, false) => (load.unwrap_or(0.0), Health::Down),
                    (None, true) => return None,
                };
                Some(Report { pool: s.pool.clone(), server: s.server.clone(), load, state })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Board {
        let server = |name: &str, port| Server {
            pool: "app".into(),
            server: name.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            scrape_url: None,
        };
        Board::new(&[server("a", 1), server("b", 2), server("c", 3)])
    }

    #[test]
    fn rows_need_a_load_unless_the_server_is_down() {
        let mut board = board();
        assert!(board.rows().is_empty(), "nothing measured, everything up: nothing to say");
        board.set_up(2, false);
        board.apply(&[
            Sample { load: Some(4.0), new_per_sec: Some(1.0) },
            Sample::default(),
            Sample::default(),
        ]);
        let rows = board.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].server.as_str(), rows[0].load, rows[0].state), ("a", 4.0, Health::Up));
        assert_eq!((rows[1].server.as_str(), rows[1].load, rows[1].state), ("c", 0.0, Health::Down));
        board.set_up(9, false);
    }
}
