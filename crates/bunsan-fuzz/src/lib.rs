//! bunsan's fuzz targets as plain functions over `&[u8]`: each runs one parser of untrusted
//! input on its real code path and asserts the properties it promises (never a panic;
//! round trips where an encoder exists).
//!
//! libFuzzer drives them from `fuzz/` (a cargo-fuzz project outside the workspace), and
//! `tests/replay.rs` feeds them every committed corpus and regression file on stable Rust,
//! so `cargo test --workspace` keeps every input a fuzzer ever found interesting passing.
//!
//! ```
//! bunsan_fuzz::proxy_header(b"PROXY TCP4 192.0.2.1 198.51.100.2 4242 443\r\nGET / HTTP/1.1\r\n");
//! bunsan_fuzz::config(b"[[pool]]\nname = \"app\"\n");
//! ```
#![forbid(unsafe_code)]

mod admin;
mod config;
mod control;
mod proxy;
mod session;
mod strict;

pub use admin::admin_bodies;
pub use config::config;
pub use control::control_bodies;
pub use proxy::proxy_header;
pub use session::{seed_tokens, session_token};
pub use strict::strict_head;

/// A fuzz target: takes any bytes, panics only when a property is broken.
pub type Target = fn(&[u8]);

/// Every target by the name its `fuzz/fuzz_targets/<name>.rs` and corpus directory carry.
pub const TARGETS: &[(&str, Target)] = &[
    ("admin_bodies", admin_bodies),
    ("config", config),
    ("control_bodies", control_bodies),
    ("proxy_header", proxy_header),
    ("session_token", session_token),
    ("strict_head", strict_head),
];
