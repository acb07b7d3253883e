//! Passive detection: real traffic's failures eject a server for a while.
//!
//! Each connect failure, reset, response timeout or 5xx adds to the server's run of
//! consecutive failures; any other response ends the run. When the run reaches
//! `consecutive_failures`, the server is ejected (state `down` through the state board)
//! for `base_ejection`, doubled for each ejection in a row, capped at `max_ejection`; the
//! node's housekeeping re-admits it when the time is up. No more than
//! `max_ejected_percent` of a pool (and always at least one server) is ejected at once,
//! so a pool-wide failure does not empty the pool by itself.

use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::time::Duration;

use bunsan_config::OutlierConfig;

use crate::clock;
use crate::server::Server;
use crate::state::{Command, StateBoard};
use crate::topology::Pool;

/// How one exchange with a server went, as passive detection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The server answered with a status below 500.
    Healthy,
    /// Connect failure, reset, timeout or 5xx.
    Failed,
}

/// Records `verdict` for server `index` of `pool`, ejecting it if this failure completes
/// a run.
pub fn record(board: &StateBoard, pool: &Pool, index: usize, verdict: Verdict) {
    let (Some(config), Some(server)) = (&pool.settings.outlier, pool.servers.get(index)) else { return };
    let counters = &server.counters;
    if verdict == Verdict::Healthy {
        if counters.consecutive_failures.load(Relaxed) != 0 {
            counters.consecutive_failures.store(0, Relaxed);
        }
        // Served well after a re-admission: the next ejection starts from the base again.
        if counters.ejected_until_ms.load(Relaxed) == 0 && counters.ejections_in_a_row.load(Relaxed) != 0 {
            counters.ejections_in_a_row.store(0, Relaxed);
        }
        return;
    }
    let run = counters.consecutive_failures.fetch_add(1, Relaxed) + 1;
    if run >= config.consecutive_failures && may_eject(pool, config) {
        eject(board, pool, index, server, config);
    }
}

/// Whether one more server of `pool` may be ejected.
fn may_eject(pool: &Pool, config: &OutlierConfig) -> bool {
    let ejected = pool.servers.iter().filter(|s| s.counters.ejected_until_ms.load(Relaxed) != 0).count();
    let allowed = (pool.servers.len() * config.max_ejected_percent as usize / 100).max(1);
    ejected < allowed
}

fn eject(board: &StateBoard, pool: &Pool, index: usize, server: &Server, config: &OutlierConfig) {
    let counters = &server.counters;
    let in_a_row = counters.ejections_in_a_row.load(Relaxed);
    let length = ejection_length(config, in_a_row);
    let until = clock::now_ms() + length.as_millis() as u64;
    // Only one of several requests failing at once performs the ejection.
    if counters.ejected_until_ms.compare_exchange(0, until, AcqRel, Relaxed).is_err() {
        return;
    }
    counters.ejections_in_a_row.store(in_a_row.saturating_add(1), Relaxed);
    counters.ejections.fetch_add(1, Relaxed);
    let failures = counters.consecutive_failures.load(Relaxed);
    tracing::warn!(pool = %pool.name, server = %server.name, failures, ?length, "ejecting server after consecutive failures");
    apply(board, pool, index, true);
}

/// `base × 2^in_a_row`, capped at `max_ejection`.
fn ejection_length(config: &OutlierConfig, in_a_row: u32) -> Duration {
    let factor = 1u32.checked_shl(in_a_row.min(31)).unwrap_or(u32::MAX);
    config.base_ejection.saturating_mul(factor).min(config.max_ejection)
}

/// Re-admits every server of `pool` whose ejection is over; run by housekeeping.
pub fn readmit_due(board: &StateBoard, pool: &Pool) {
    let now = clock::now_ms();
    for (index, server) in pool.servers.iter().enumerate() {
        let counters = &server.counters;
        let until = counters.ejected_until_ms.load(Relaxed);
        if until == 0 || until > now {
            continue;
        }
        if counters.ejected_until_ms.compare_exchange(until, 0, AcqRel, Relaxed).is_ok() {
            counters.consecutive_failures.store(0, Relaxed);
            tracing::info!(pool = %pool.name, server = %server.name, "re-admitting server after its ejection");
            apply(board, pool, index, false);
        }
    }
}

fn apply(board: &StateBoard, pool: &Pool, index: usize, ejected: bool) {
    let Some(server) = pool.servers.get(index) else { return };
    if let Err(error) = board.apply_to(&pool.name, server, Command::Eject(ejected)) {
        tracing::warn!(pool = %pool.name, %error, "cannot record an ejection");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Topology;
    use bunsan_core::ServerState;

    fn board(servers: usize) -> StateBoard {
        let mut text = String::from(
            "[[listener]]\nname = \"w\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n[[pool]]\nname = \"p\"\n\
             outlier = { consecutive_failures = 3, base_ejection = \"1s\", max_ejection = \"3s\" }\n",
        );
        for i in 0..servers {
            text.push_str(&format!("[[pool.server]]\nname = \"s{i}\"\naddr = \"127.0.0.1:{}\"\n", 1000 + i));
        }
        let config = bunsan_config::parse(&text, "t.toml".as_ref()).expect("valid config");
        StateBoard::new(Topology::from_config(&config, None).expect("topology"))
    }

    fn fail(board: &StateBoard, index: usize, times: usize) {
        for _ in 0..times {
            let pool = board.topology().pools[0].clone();
            record(board, &pool, index, Verdict::Failed);
        }
    }

    fn state(board: &StateBoard, index: usize) -> ServerState {
        board.topology().pools[0].servers[index].state()
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_eject_and_time_readmits_with_doubling_backoff() {
        let board = board(4);
        fail(&board, 0, 2);
        let pool = board.topology().pools[0].clone();
        record(&board, &pool, 0, Verdict::Healthy);
        fail(&board, 0, 2);
        assert_eq!(state(&board, 0), ServerState::Ready, "a success ends the run");
        fail(&board, 0, 1);
        assert_eq!(state(&board, 0), ServerState::Down);

        tokio::time::advance(Duration::from_millis(1100)).await;
        readmit_due(&board, &board.topology().pools[0].clone());
        assert_eq!(state(&board, 0), ServerState::Ready);
        fail(&board, 0, 3);
        assert_eq!(state(&board, 0), ServerState::Down, "ejected again");
        tokio::time::advance(Duration::from_millis(1100)).await;
        readmit_due(&board, &board.topology().pools[0].clone());
        assert_eq!(state(&board, 0), ServerState::Down, "the second ejection in a row lasts twice as long");
        tokio::time::advance(Duration::from_millis(1000)).await;
        readmit_due(&board, &board.topology().pools[0].clone());
        assert_eq!(state(&board, 0), ServerState::Ready);
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_half_the_pool_is_ejected() {
        let board = board(4);
        for index in 0..4 {
            fail(&board, index, 3);
        }
        let down = (0..4).filter(|&i| state(&board, i) == ServerState::Down).count();
        assert_eq!(down, 2);
    }

    #[test]
    fn ejection_length_doubles_up_to_the_cap() {
        let config = OutlierConfig {
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(60),
            ..OutlierConfig::default()
        };
        let lengths: Vec<u64> = (0..5).map(|n| ejection_length(&config, n).as_secs()).collect();
        assert_eq!(lengths, [10, 20, 40, 60, 60]);
        assert_eq!(ejection_length(&config, u32::MAX).as_secs(), 60);
    }
}
