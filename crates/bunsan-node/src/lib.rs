//! bunsan's data plane: listeners, HTTP/TCP forwarding, upstream pools, admin API, metrics.
//!
//! A [`Node`] is started from a validated [`bunsan_config::Config`]; it binds every
//! socket first (so a conflict fails the start), then serves until
//! [`Node::shutdown`]:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = bunsan_config::load("bunsan.toml".as_ref())?;
//! let node = bunsan_node::Node::start(&config).await?;
//! for (name, addr) in node.listener_addrs() {
//!     println!("{name} on {addr}");
//! }
//! node.shutdown(config.node.shutdown_timeout).await;
//! # Ok(()) }
//! ```
//!
//! Request path, in brief: listener → connection task (hyper) → [`topology`] snapshot →
//! balancer pick ([`bunsan_core::Selector`]) → upstream lease (the server's idle pool or
//! a new connection) → forward, stream the response back, count. State changes go
//! through [`state::StateBoard`], the one place that decides effective server states.
// `deny`, not `forbid`: the exceptions are `handover::fds`, which takes ownership of
// file descriptors received over a Unix socket (SCM_RIGHTS), and `memory`'s call of
// glibc's `malloc_trim`.
#![deny(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod affinity;
pub mod clock;
pub mod conn_limits;
pub mod connections;
pub mod control;
mod error;
pub mod handover;
pub mod health;
pub mod http;
mod listener;
mod memory;
pub mod metrics;
mod node;
pub mod outlier;
pub mod proxy_protocol;
pub mod retry;
pub mod server;
pub mod session;
mod session_key;
mod splice;
pub mod state;
mod tcp;
mod tls;
pub mod topology;
mod upstream;

pub use error::NodeError;
pub use node::{preflight, Drained, Node, NodeHandle, StartOptions, ADMIN_SOCKET};
pub use upstream::ConnectError;
