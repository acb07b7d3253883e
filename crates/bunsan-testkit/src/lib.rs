//! Test helpers for bunsan: real backends on ephemeral ports, clients, certificates,
//! and control of real `bunsan` processes.
//!
//! Nothing here mocks the network: backends are real HTTP/TCP servers bound to
//! `127.0.0.1:0`, and nodes are the real binary started with a config file.
//!
//! ```no_run
//! # async fn t(bunsan_binary: &std::path::Path) {
//! use bunsan_testkit::{Backend, Bunsan};
//! let backend = Backend::start("host1").await;
//! let config = format!(r#"
//!     [[listener]]
//!     name = "web"
//!     listen = "127.0.0.1:0"
//!     pool = "app"
//!     [[pool]]
//!     name = "app"
//!     [[pool.server]]
//!     name = "host1"
//!     addr = "{}"
//! "#, backend.addr);
//! let node = Bunsan::start(bunsan_binary, &config).await.unwrap();
//! let reply = bunsan_testkit::get(node.listener("web"), "/").await.unwrap();
//! assert_eq!(reply.header("x-backend"), Some("host1"));
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod backend;
pub mod cert;
pub mod client;
pub mod etcd;
pub mod faulty;
pub mod process;
pub mod proxy_echo;
pub mod tcp;
pub mod wait;
pub mod websocket;

pub use backend::{pattern_byte, Backend, Seen};
pub use cert::SelfSigned;
pub use client::{get, Client, Reply};
pub use etcd::Etcd;
pub use faulty::{FaultyServer, Hanger, RawRequest, Resetter};
pub use process::Bunsan;
pub use process::{BackendProcess, Daemon};
pub use proxy_echo::{HeaderSeen, ProxyHeaderEcho};
pub use tcp::TcpEcho;
pub use wait::eventually;
