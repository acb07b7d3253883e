//! `bunsan-bench`: the load tools of bunsan's benchmark suite (`bench/run`).
//!
//! - `loadgen`: open-loop fixed-rate HTTP/1.1 generator, latency corrected for
//!   coordinated omission, JSON report with percentiles;
//! - `idle`: open N keep-alive connections, one request each, hold them;
//! - `tcpsrc` / `tcpget`: a TCP source of N bytes per connection and a client that times it.
//!
//! Every tool prints one JSON line (or `listening on ADDR` for `tcpsrc`) and is driven by
//! `bench/orchestrate.py`.

#![forbid(unsafe_code)]

mod http1;
mod idle;
mod loadgen;
mod tcp;

use clap::{Parser, Subcommand};

/// Load tools for bunsan's benchmark suite.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open-loop fixed-rate HTTP/1.1 keep-alive load; latency from intended send times.
    Loadgen(loadgen::Args),
    /// Open N keep-alive connections, one request each, hold them until stdin closes.
    Idle(idle::Args),
    /// Serve N bytes to every TCP connection, then close it.
    Tcpsrc(tcp::SrcArgs),
    /// Read one TCP transfer of N bytes and report its throughput.
    Tcpget(tcp::GetArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Loadgen(args) => loadgen::run(args),
        Command::Idle(args) => idle::run(args),
        Command::Tcpsrc(args) => tcp::serve(args),
        Command::Tcpget(args) => tcp::get(args),
    }
}
