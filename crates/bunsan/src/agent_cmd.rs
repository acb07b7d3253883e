//! `bunsan agent`: the server state notifier (seed 001). Runs beside the servers it
//! watches and reports their load and up/down state to `bunsan control`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bunsan_agent::{AgentConfig, AgentError, CancellationToken, Method, PartialConfig, Probe, ServerEntry};
use tokio::task::JoinError;

use crate::serve::{runtime, StopSignals};

/// What `load` means, and an example, for `--help`.
const AFTER_HELP: &str = "What load means (relative load divides it by each server's capacity):
  sockets  TCP connections in state ESTABLISHED to the server's IP:PORT (from /proc/net/tcp{,6})
  packets  TCP packets per second addressed to the server (raw packet socket; needs CAP_NET_RAW)
  scrape   the number at the scrape URL (the body, or the first line of --scrape-metric)
Up/down: --probe every --probe-interval, with --fall/--rise; a change is reported at once.

Example:
  bunsan agent --control http://10.0.0.5:7070 --server app/host1=10.0.0.11:80 --probe http:/healthz

With --config FILE the settings come from TOML (same names, `[[server]]` tables with
pool, server, addr); flags given as well override the file. Logs go to stderr; stops on
SIGTERM or SIGINT.";

/// Arguments of `bunsan agent`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// A TOML file with these settings.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Control's base URL; repeat for several (after a failure the next is tried).
    #[arg(long = "control", value_name = "URL")]
    control: Vec<String>,
    /// A server to watch; repeatable.
    #[arg(long = "server", value_name = "POOL/SERVER=IP:PORT", value_parser = parse_server)]
    servers: Vec<ServerEntry>,
    /// How load is measured [default: sockets].
    #[arg(long, value_name = "sockets|packets|scrape", value_parser = parse_method)]
    method: Option<Method>,
    /// For scrape: the URL to read; {addr}, {host} and {port} are replaced per server.
    #[arg(long, value_name = "URL")]
    scrape_url: Option<String>,
    /// For scrape: read this Prometheus metric instead of a plain-number body.
    #[arg(long, value_name = "NAME")]
    scrape_metric: Option<String>,
    /// How up/down is decided [default: tcp].
    #[arg(long, value_name = "tcp|http:/PATH|none", value_parser = parse_probe)]
    probe: Option<Probe>,
    /// How often load is measured and reported [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    interval: Option<Duration>,
    /// How often each server is probed [default: the interval].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    probe_interval: Option<Duration>,
    /// Failed probes in a row that mark a server down [default: 2].
    #[arg(long, value_name = "N")]
    fall: Option<u32>,
    /// Passed probes in a row that bring it back [default: 2].
    #[arg(long, value_name = "N")]
    rise: Option<u32>,
    /// The agent's name at control [default: the host name].
    #[arg(long)]
    name: Option<String>,
    /// Bearer token for control.
    #[arg(long, env = "BUNSAN_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Runs the agent until SIGTERM or SIGINT, then exits 0.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = settings(args)?;
    // The agent is light: one worker for probes and reports (file reads use the
    // blocking pool, packet capture its own thread).
    runtime(Some(1))?.block_on(async {
        let mut signals = StopSignals::install()?;
        let shutdown = CancellationToken::new();
        let mut agent = tokio::spawn(bunsan_agent::run(config, shutdown.clone()));
        tokio::select! {
            ended = &mut agent => return finished(ended),
            () = signals.next() => shutdown.cancel(),
        }
        finished(agent.await)
    })
}

/// The file's settings (if any) with the flags on top, validated.
fn settings(args: Args) -> anyhow::Result<AgentConfig> {
    let file = match &args.config {
        Some(path) => PartialConfig::load(path)?,
        None => PartialConfig::default(),
    };
    let flags = PartialConfig {
        name: args.name,
        control: (!args.control.is_empty()).then_some(args.control),
        token: args.token,
        method: args.method,
        interval: args.interval,
        probe: args.probe,
        probe_interval: args.probe_interval,
        fall: args.fall,
        rise: args.rise,
        scrape_url: args.scrape_url,
        scrape_metric: args.scrape_metric,
        servers: args.servers,
    };
    Ok(file.overlay(flags).finish()?)
}

fn finished(joined: Result<Result<(), AgentError>, JoinError>) -> anyhow::Result<ExitCode> {
    joined.context("the agent failed")??;
    Ok(ExitCode::SUCCESS)
}

fn parse_server(text: &str) -> Result<ServerEntry, String> {
    text.parse()
}

fn parse_method(text: &str) -> Result<Method, String> {
    text.parse()
}

fn parse_probe(text: &str) -> Result<Probe, String> {
    text.parse()
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    bunsan_config::duration::parse_duration(text).map_err(|e| e.to_string())
}
