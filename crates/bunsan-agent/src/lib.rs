//! bunsan's server state notifier (seed 001 \[0044\]–\[0045\]).
//!
//! An agent runs beside the servers it watches. It measures each server's load *without
//! changing or even contacting the server's service*, probes whether the server is up,
//! and tells the state manager (`bunsan control`): the load as statistics every interval,
//! and an up/down change the moment it is seen, so reporting adds little traffic.
//!
//! # What `load` means
//!
//! Control compares loads within a pool after dividing by each server's capacity, so
//! every agent of a pool should use the same method. Per method:
//!
//! - **`sockets`** (default): the number of TCP connections in state ESTABLISHED whose
//!   local end is the server's `IP:PORT` (any local IP when the server listens on a
//!   wildcard address), read from `/proc/net/tcp` and `/proc/net/tcp6` at the end of each
//!   interval — the server's current concurrency. New connections per second are measured
//!   too (logged at debug, see [`ServerStatus::new_per_sec`]) but not reported.
//! - **`packets`**: TCP packets addressed to the server's `IP:PORT` per second over the
//!   last interval, counted from a raw packet socket (seed 001's own method; needs
//!   `CAP_NET_RAW`).
//! - **`scrape`**: the number the server publishes at its scrape URL (the whole body, or
//!   one Prometheus metric), as of the last successful scrape; kept for at most
//!   [`observe::scrape::KEEP_FOR`] failed scrapes, then not reported.
//!
//! The agent's own probes are traffic to the server as well: a `tcp` probe adds about four
//! packets per probe to `packets` load (a constant floor, e.g. ~8/s at a 500 ms probe
//! interval) and may be caught as an established connection by `sockets`. Where that
//! matters, probe less often or use `--probe none`.
//!
//! A server whose load is unknown (before the first sample, or a stale scrape) is left out
//! of reports while up — a made-up number would attract or repel traffic — and reported
//! with load 0 while down, where the load does not matter.
//!
//! # Up and down
//!
//! Each server is probed (`tcp`, `http:/PATH` expecting 200–399, or `none` = always up)
//! with the node's health checker and its `fall`/`rise` thresholds (default 2/2).
//!
//! ```no_run
//! # async fn demo() -> Result<(), bunsan_agent::AgentError> {
//! use bunsan_agent::{CancellationToken, PartialConfig};
//! let text = r#"
//!     control = ["http://127.0.0.1:7070"]
//!     [[server]]
//!     pool = "app"
//!     server = "host1"
//!     addr = "127.0.0.1:9001"
//! "#;
//! let config = PartialConfig::from_toml(text, "agent.toml".as_ref())?.finish()?;
//! bunsan_agent::run(config, CancellationToken::new()).await
//! # }
//! ```
#![forbid(unsafe_code)]

mod agent;
pub mod board;
mod client;
pub mod config;
pub mod observe;
pub mod report;

pub use board::{Board, ServerStatus};
pub use config::{AgentConfig, ConfigError, Method, PartialConfig, Probe, Server, ServerEntry};
pub use observe::{ObserveError, Sample};
pub use tokio_util::sync::CancellationToken;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The observation method cannot work here (e.g. no `CAP_NET_RAW` for `packets`).
    #[error(transparent)]
    Observe(#[from] ObserveError),
}

/// Runs the agent until `shutdown` is cancelled, then returns `Ok(())`.
///
/// Registers with control, then reports every interval and on every up/down transition.
/// Control being unreachable is not an error: the agent keeps retrying with backoff. It
/// fails at once only when the observation method cannot start.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    agent::run(config, shutdown).await
}
