//! bunsan's state manager (seed 001, claims 1–5): agents beside the servers report load
//! at intervals and up/down changes at once; the state manager keeps the load table and
//! hands it to every registered subscriber — pushed on change, answered when asked, or
//! pushed periodically, as each subscriber chose — and an operator can pin a server's
//! state until released. It can also choose, per subscriber, which server of a pool to
//! use ([0051]'s second mode).
//!
//! The wire contract is [`bunsan_proto::control`]. Pins and registrations persist in a
//! [`Store`]: a JSON file, or etcd shared by several instances (which then also share
//! the latest reports); assignments live in memory.
//!
//! ```no_run
//! use bunsan_control::{Control, Settings, StoreLocation};
//!
//! # async fn run() -> Result<(), bunsan_control::ControlError> {
//! let store = StoreLocation::File("bunsan-control.json".into());
//! let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 7070));
//! let control = Control::start(Settings::new(listen, store)).await?;
//! println!("listening on {}", control.addr());
//! // curl -N http://127.0.0.1:7070/v1/watch   — the table, then every change
//! control.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod assign;
mod error;
mod http;
mod manager;
pub mod names;
pub mod reports;
mod settings;
pub mod store;
pub mod table;
pub mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bunsan_proto::control::Table as TableView;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::{ControlError, RequestError};
pub use settings::{Role, Settings, Token, Tokens, DEFAULT_HEARTBEAT, DEFAULT_REPORT_TTL};
pub use store::{EtcdLocation, Store, StoreError, StoreLocation};

use crate::manager::Manager;

/// How often reports are checked for staleness: well under any sensible report TTL, so a
/// row goes empty within this much of its report expiring.
const EXPIRY_CHECK: Duration = Duration::from_millis(200);

/// A running control instance. Dropping it does not stop it; call [`Control::shutdown`].
#[derive(Debug)]
pub struct Control {
    addr: SocketAddr,
    manager: Arc<Manager>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Control {
    /// Checks the tokens, loads the store, binds `settings.listen` and starts serving.
    /// Must run inside a tokio runtime. Serves nothing if any step fails.
    pub async fn start(settings: Settings) -> Result<Self, ControlError> {
        settings.tokens.check(settings.listen)?;
        let store = Store::open(&settings.store, settings.report_ttl).await?;
        let persisted = store.load().await?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| ControlError::Bind { addr: settings.listen, source })?;
        let addr =
            listener.local_addr().map_err(|source| ControlError::Bind { addr: settings.listen, source })?;
        tracing::info!(%addr, store = %store.describe(), "control listening");
        let manager = Arc::new(Manager::new(persisted, store, settings.report_ttl));
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let ctx = http::Context {
            manager: manager.clone(),
            tokens: settings.tokens,
            heartbeat: settings.heartbeat,
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
        };
        tracker.spawn(http::serve(listener, Arc::new(ctx)));
        tracker.spawn(maintain(manager.clone(), shutdown.clone()));
        Ok(Self { addr, manager, tracker, shutdown })
    }

    /// The bound address (port 0 resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The load table as `GET /v1/state` would show it now.
    pub fn table(&self) -> TableView {
        self.manager.table()
    }

    /// Stops accepting, ends every watch stream, and waits for open requests to finish.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Lets reports go stale on time, and applies what other control instances changed.
async fn maintain(manager: Arc<Manager>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EXPIRY_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => manager.expire(),
            change = manager.store().next_remote() => manager.apply_remote(change).await,
        }
    }
}
