//! The library's errors: why a control instance cannot start, and why a request is refused.

use std::net::SocketAddr;

use crate::store::StoreError;

/// Why [`crate::Control::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A non-loopback address needs every token, so that no role is open to the network.
    #[error(
        "refusing to listen on {addr} without {missing}: every token (agent, subscriber, operator) \
         is required when the address is not loopback"
    )]
    MissingTokens {
        /// The address asked for.
        addr: SocketAddr,
        /// The options that are missing, e.g. `the agent token and the operator token`.
        missing: String,
    },
    /// A token was given but is empty, which would make its check meaningless.
    #[error("the {role} token is empty")]
    EmptyToken {
        /// `agent`, `subscriber` or `operator`.
        role: &'static str,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The system's reason.
        source: std::io::Error,
    },
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a request was refused; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Malformed, or naming an unknown pool, server or subscriber: 400.
    #[error("{0}")]
    Invalid(String),
    /// The thing asked for does not exist: 404.
    #[error("{0}")]
    NotFound(String),
    /// The change could not be made durable, so it was not made: 500.
    #[error("the change was not made: {0}")]
    Store(#[from] StoreError),
}

impl RequestError {
    /// A 400 with this message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}
