//! `bunsan serve`: run a node until SIGTERM or SIGINT, then drain and exit 0; reload the
//! config on SIGHUP; with `--upgrade-socket`, take the sockets over from a running
//! process and hand them to the next one (zero-downtime binary upgrade).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bunsan_node::handover::{self, UpgradeSocket};
use bunsan_node::{Drained, Node, NodeHandle, StartOptions};
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
    /// Binary upgrade: take the listening sockets over from the process serving on this
    /// Unix socket (if any), then serve on it for the next upgrade. The old process
    /// stops accepting, drains and exits 0.
    #[arg(long, value_name = "PATH")]
    upgrade_socket: Option<PathBuf>,
}

/// How long the old process keeps answering its keep-alive clients (each response with
/// `Connection: close`) after a takeover, before it closes idle connections.
const HANDOVER_GRACE: Duration = Duration::from_secs(2);

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
        let mut hangups = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
        let node = start(&args, &config).await?;
        let mut upgrades = match &args.upgrade_socket {
            Some(path) => Some(UpgradeSocket::listen(path, node.handle())?),
            None => None,
        };
        if let Some(path) = &args.ready_file {
            write_ready_file(path, &node)?;
        }
        tracing::info!(config = %args.config.display(), "bunsan node started");
        let taken_over = loop {
            tokio::select! {
                () = signals.next() => break false,
                _ = hangups.recv() => reload(node.handle()),
                () = taken_over(&mut upgrades) => break true,
            }
        };
        let deadline = config.node.shutdown_timeout;
        tracing::info!(?deadline, "stopping: finishing in-flight work");
        let drained = async {
            if taken_over {
                node.hand_over(HANDOVER_GRACE, deadline).await
            } else {
                node.shutdown(deadline).await
            }
        };
        tokio::select! {
            drained = drained => report(drained),
            () = signals.next() => tracing::warn!("second signal: exiting without waiting"),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Starts the node: with `--upgrade-socket`, on the sockets of the process running there
/// (which stops accepting once this one serves), else on freshly bound ones.
async fn start(args: &Args, config: &bunsan_config::Config) -> anyhow::Result<Node> {
    let mut takeover = match &args.upgrade_socket {
        Some(path) => handover::take_over(path).await?,
        None => None,
    };
    let inherited = takeover.as_mut().map(|t| t.sockets()).unwrap_or_default();
    let options = StartOptions { config_path: Some(args.config.clone()), inherited };
    let node = Node::start_with(config, options).await?;
    if let Some(takeover) = takeover {
        takeover.confirm().await?;
    }
    Ok(node)
}

/// SIGHUP: reloads in the background (signals keep being watched meanwhile; reloads are
/// serialised by the node). A refused reload is logged and the running config stays.
fn reload(node: NodeHandle) {
    tracing::info!("SIGHUP received: reloading the config");
    tokio::spawn(async move {
        if let Err(error) = node.reload().await {
            tracing::error!("reload refused; the running config stays: {error}");
        }
    });
}

async fn taken_over(upgrades: &mut Option<UpgradeSocket>) {
    match upgrades {
        Some(upgrades) => upgrades.taken_over().await,
        None => std::future::pending().await,
    }
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
    let addrs = node.listener_addrs();
    let listeners: BTreeMap<&str, String> =
        addrs.iter().map(|(name, addr)| (name.as_str(), addr.to_string())).collect();
    let ready = serde_json::json!({
        "pid": std::process::id(),
        "admin": node.admin_addr().map(|a| a.to_string()),
        "listeners": listeners,
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, ready.to_string()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
