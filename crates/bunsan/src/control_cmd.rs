//! `bunsan control`: run the state manager (seed 001) until SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bunsan_control::{Control, Settings, StoreLocation, Token, Tokens};

use crate::serve::{runtime, StopSignals};

/// How long open requests may take to finish once a stop was asked for.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// What the API offers, for `--help`.
const ABOUT_API: &str = "Agents: POST /v1/agents, POST /v1/reports. Subscribers: POST /v1/subscribers,
GET /v1/state, GET /v1/watch[?subscriber=ID] (JSON lines, or SSE with Accept: text/event-stream),
GET /v1/assign/POOL?subscriber=ID. Operators: PUT|DELETE /v1/pins/POOL/SERVER, GET /v1/registry.
Tokens go in `Authorization: Bearer TOKEN`; the operator token works everywhere. Once bound,
prints `listening on ADDR` on stdout; stops on SIGTERM or SIGINT.";

/// Arguments of `bunsan control`.
#[derive(Debug, clap::Args)]
#[command(after_help = ABOUT_API)]
pub struct Args {
    /// Where to listen (port 0 picks a free port). A non-loopback address needs all three tokens.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Where pins and registrations are kept across restarts: `file:PATH`, or
    /// `etcd://HOST:PORT[,HOST:PORT…][/PREFIX]` to share them, and the latest reports, with
    /// every control instance on the same etcd.
    #[arg(long, value_name = "STORE", default_value = "file:bunsan-control.json", value_parser = parse_store)]
    store: StoreLocation,
    /// How long a report counts; older ones leave their row empty (`source: none`).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_ttl)]
    report_ttl: Duration,
    /// The token agents present.
    #[arg(long, value_name = "T", env = "BUNSAN_CONTROL_AGENT_TOKEN", hide_env_values = true)]
    agent_token: Option<String>,
    /// The token subscribers (nodes, local proxies) present.
    #[arg(long, value_name = "T", env = "BUNSAN_CONTROL_SUBSCRIBER_TOKEN", hide_env_values = true)]
    subscriber_token: Option<String>,
    /// The token operators present (accepted wherever the others are).
    #[arg(long, value_name = "T", env = "BUNSAN_CONTROL_OPERATOR_TOKEN", hide_env_values = true)]
    operator_token: Option<String>,
}

/// Serves until SIGTERM or SIGINT, then exits 0.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let settings = settings(args);
    runtime(None)?.block_on(async {
        // Watch signals before anyone can learn the address, so a quick SIGTERM still exits 0.
        let mut signals = StopSignals::install()?;
        let control = Control::start(settings).await?;
        announce(control.addr())?;
        signals.next().await;
        tracing::info!("stopping: ending watch streams and open requests");
        tokio::select! {
            () = control.shutdown() => {}
            () = tokio::time::sleep(SHUTDOWN_DEADLINE) => tracing::warn!("open requests did not finish in time"),
            () = signals.next() => tracing::warn!("second signal: exiting without waiting"),
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn settings(args: Args) -> Settings {
    let mut settings = Settings::new(args.listen, args.store);
    settings.report_ttl = args.report_ttl;
    settings.tokens = Tokens {
        agent: args.agent_token.map(Token::new),
        subscriber: args.subscriber_token.map(Token::new),
        operator: args.operator_token.map(Token::new),
    };
    settings
}

/// The one line on stdout that scripts and tests wait for.
fn announce(addr: SocketAddr) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}").and_then(|()| stdout.flush()).context("cannot write to stdout")
}

fn parse_store(text: &str) -> Result<StoreLocation, String> {
    text.parse()
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    match bunsan_config::duration::parse_duration(text) {
        Ok(ttl) if ttl.is_zero() => Err("must be longer than 0".to_owned()),
        Ok(ttl) => Ok(ttl),
        Err(e) => Err(e.to_string()),
    }
}
