//! Wire formats shared by bunsan's parts: the admin API's and the control plane's JSON
//! types, and the PROXY protocol header ([`proxy_header`]) the node reads and writes.
//!
//! Pure data: serde types and parsers, no I/O, so every message can be fuzzed.
//!
//! ```
//! use bunsan_proto::admin::StateChange;
//! let change: StateChange = serde_json::from_str(r#"{"state":"maint","pin":true}"#).unwrap();
//! assert_eq!(change.state, "maint");
//! assert!(change.pin);
//! ```
#![forbid(unsafe_code)]

pub mod admin;
pub mod control;
pub mod proxy_header;
