//! `bunsan serve`: run a node until SIGTERM or SIGINT, then drain and exit 0.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use bunsan_node::{Drained, Node};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Arguments of `bunsan serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Once every socket is bound, write the bound addresses here as JSON
    /// (`{"pid", "admin", "listeners": {name: addr}}`), for supervisors and tests.
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
}

/// Loads the config, builds the runtime it asks for, and serves.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match bunsan_config::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let runtime = runtime(config.node.workers)?;
    runtime.block_on(async {
        // Watch signals before anyone can learn that the node is up.
        let mut signals = StopSignals::install()?;
        let node = Node::start(&config).await?;
        if let Some(path) = &args.ready_file {
            write_ready_file(path, &node)?;
        }
        tracing::info!(config = %args.config.display(), "bunsan node started");
        signals.next().await;
        tracing::info!(deadline = ?config.node.shutdown_timeout, "stopping: finishing in-flight work");
        tokio::select! {
            drained = node.shutdown(config.node.shutdown_timeout) => report(drained),
            () = signals.next() => tracing::warn!("second signal: exiting without waiting"),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// A multi-threaded runtime with `workers` threads (default: one per CPU).
pub fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    builder.enable_all().build().context("cannot start the async runtime")
}

/// SIGTERM and SIGINT, both meaning "stop".
pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    /// Replaces the default actions (exit at once) with notifications.
    pub fn install() -> anyhow::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT.
    pub async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
            _ = self.int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

fn report(drained: Drained) {
    match drained {
        Drained::Completely => tracing::info!("all connections finished; exiting"),
        Drained::Abandoned(n) => {
            tracing::warn!(connections = n, "shutdown deadline passed; closing the rest")
        }
    }
}

/// Writes the ready file atomically (temp file + rename), so a reader never sees half.
fn write_ready_file(path: &Path, node: &Node) -> anyhow::Result<()> {
    let listeners: BTreeMap<&str, String> =
        node.listener_addrs().iter().map(|(name, addr)| (name.as_str(), addr.to_string())).collect();
    let ready = serde_json::json!({
        "pid": std::process::id(),
        "admin": node.admin_addr().map(|a| a.to_string()),
        "listeners": listeners,
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, ready.to_string()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
