//! Wire formats shared by bunsan's parts: today the admin API's JSON types, used by the
//! node (server side) and `bunsan ctl` (client side).
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
