//! Errors that stop a node from starting.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a node could not start, or a reload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A listening socket could not be bound.
    #[error("cannot listen on {addr} for {what}: {source}")]
    Bind {
        /// `listener NAME` or `admin API`.
        what: String,
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// A TLS certificate or key file could not be read or used.
    #[error("TLS setup for listener {listener} failed: {path}: {reason}")]
    Tls {
        /// The listener.
        listener: String,
        /// The file at fault (or the certificate when the pair does not match).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A pool's `upstream_tls` CA file could not be read or used.
    #[error("upstream TLS setup for pool {pool} failed: {path}: {reason}")]
    UpstreamTls {
        /// The pool.
        pool: String,
        /// The CA file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A listener names a pool that does not exist (a validated config never does).
    #[error("listener {listener} refers to unknown pool {pool}")]
    UnknownPool {
        /// The listener.
        listener: String,
        /// The missing pool.
        pool: String,
    },
    /// The session-signing key could not be loaded or created.
    #[error("session key from {source_name}: {reason}")]
    SessionKey {
        /// `[node] session_key` or the key file's path.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// The reloaded config file is invalid (every error, with its file, line and key).
    #[error("{0}")]
    Config(String),
    /// The node was started without a config file, so there is nothing to reload.
    #[error("this node was not started from a config file; nothing to reload")]
    NoConfigPath,
    /// The reload could not run at all.
    #[error("reload failed: {0}")]
    Reload(String),
}
