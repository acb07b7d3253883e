//! The bunsan binary: `serve`, `check`, `ctl` and `demo` over the library crates.
#![forbid(unsafe_code)]

mod agent_cmd;
mod backend_cmd;
mod check;
mod control_cmd;
mod ctl;
mod demo;
mod serve;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// bunsan (分散): a load balancer that sends work to the server with the least load
/// relative to its capacity.
#[derive(Debug, Parser)]
#[command(name = "bunsan", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node from a config file.
    Serve(serve::Args),
    /// Validate a config file; exits non-zero naming the key and line of every error.
    Check {
        /// The config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Talk to a running node's admin API.
    Ctl(ctl::Args),
    /// Start a complete local setup: a node, three demo backends, traffic, live output.
    Demo(demo::Args),
    /// Run a small HTTP backend to try bunsan with or test it against.
    Backend(backend_cmd::Args),
    /// Watch servers beside this host and report their load and up/down to control (seed 001).
    Agent(agent_cmd::Args),
    /// Run the state manager: agents report load, subscribers get the table (seed 001).
    Control(control_cmd::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Ctl(_) | Command::Check { .. }));
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Check { config } => check::run(&config),
        Command::Ctl(args) => ctl::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Backend(args) => backend_cmd::run(args),
        Command::Agent(args) => agent_cmd::run(args),
        Command::Control(args) => control_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bunsan: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`; `warn` for the quiet
/// one-shot commands).
fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}
