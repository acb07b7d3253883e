//! bunsan's TOML config: file -> validated [`Config`], with errors that name the key and line.
//!
//! Parsing happens in two stages. The file is first read into a span-preserving TOML
//! tree; then [`decode`] walks it table by table, turning each key into a typed value,
//! collecting *every* error (unknown keys, wrong types, bad durations, sizes and addresses,
//! unknown names, dangling pool references, duplicates) with its line and column
//! instead of stopping at the first.
//!
//! ```
//! let cfg = bunsan_config::parse(r#"
//!     [[listener]]
//!     name = "web"
//!     listen = "127.0.0.1:0"
//!     pool = "app"
//!
//!     [[pool]]
//!     name = "app"
//!     [[pool.server]]
//!     name = "host1"
//!     addr = "127.0.0.1:9001"
//!     capacity = 2
//! "#, "inline.toml".as_ref()).unwrap();
//! assert_eq!(cfg.pools[0].servers[0].capacity, 2);
//!
//! let err = bunsan_config::parse("[[pool]]\nname = \"app\"\nalgorithm = \"fastest\"\n", "bad.toml".as_ref())
//!     .unwrap_err();
//! assert!(err.to_string().starts_with("bad.toml:3:"));
//! ```
#![forbid(unsafe_code)]

mod decode;
pub mod duration;
mod error;
mod model;
pub mod size;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors, ErrorKind, LoadError};
pub use model::*;

/// Parses and validates config text. `origin` is the file it came from: it names the file
/// in errors and is the base for relative paths (TLS files).
pub fn parse(source: &str, origin: &Path) -> Result<Config, ConfigErrors> {
    decode::decode(source, origin)
}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let source =
        std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
    Ok(parse(&source, path)?)
}
