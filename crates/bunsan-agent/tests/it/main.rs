//! Integration tests of the agent on real sockets: the observation methods, and the
//! reporting loop against an in-process fake control.

mod fake;
mod packets;
mod reporting;
mod scrape;
mod sockets;

use std::net::SocketAddr;
use std::time::Duration;

use bunsan_agent::{AgentConfig, AgentError, CancellationToken, PartialConfig};
use tokio::task::JoinHandle;

/// An agent running in this process.
pub struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), AgentError>>,
}

impl Running {
    /// Starts `bunsan_agent::run` on its own task.
    pub fn start(config: AgentConfig) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(bunsan_agent::run(config, shutdown.clone()));
        Self { shutdown, task }
    }

    /// Cancels it and checks it returned `Ok(())` promptly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        ended.expect("the agent stops soon after shutdown").expect("no panic").expect("run returns Ok");
    }
}

/// A config reporting to `control` about `servers` (`pool/server` names), with `extra`
/// on top (probe, intervals, …).
pub fn config(control: &[String], servers: &[(&str, SocketAddr)], extra: PartialConfig) -> AgentConfig {
    let base = PartialConfig {
        name: Some("test-agent".into()),
        control: Some(control.to_vec()),
        token: Some("t0ken".into()),
        servers: servers.iter().map(|(name, addr)| format!("{name}={addr}").parse().unwrap()).collect(),
        ..PartialConfig::default()
    };
    base.overlay(extra).finish().unwrap()
}
