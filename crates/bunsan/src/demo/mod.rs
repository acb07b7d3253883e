//! `bunsan demo`: a complete local setup on loopback — a node, three demo backends of
//! different capacity, the admin API, optional built-in traffic — and a live view of
//! where requests go.

mod backend;
mod traffic;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bunsan_node::Node;
use bunsan_proto::admin::PoolDetail;

use crate::serve::{runtime, StopSignals};

/// The demo backends: name and capacity (seed 001's ratio).
const BACKENDS: [(&str, u32); 3] = [("alpha", 3), ("beta", 2), ("gamma", 1)];
/// Every demo backend answers after this long, so only capacity tells them apart.
const BACKEND_LATENCY: Duration = Duration::from_millis(20);

/// Arguments of `bunsan demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the node listens for HTTP.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the admin API listens.
    #[arg(long, default_value = "127.0.0.1:9900")]
    admin: SocketAddr,
    /// The balancing algorithm (least-load, round-robin, least-conn, p2c-ewma, maglev, random).
    #[arg(long, default_value = "least-load")]
    algorithm: String,
    /// Concurrent built-in clients sending requests (0 = none; send your own with curl).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Print the generated config and exit.
    #[arg(long)]
    print_config: bool,
}

/// Runs the demo until Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.print_config {
        let addrs = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"].map(|a| a.parse().ok());
        print!("{}", demo_config(&args, &addrs.map(|a| a.unwrap_or(args.listen))));
        return Ok(ExitCode::SUCCESS);
    }
    runtime(Some(2))?.block_on(demo(args))
}

async fn demo(args: Args) -> anyhow::Result<ExitCode> {
    let mut signals = StopSignals::install()?;
    let mut addrs = Vec::new();
    for (name, _) in BACKENDS {
        addrs.push(backend::start(name, BACKEND_LATENCY).await?);
    }
    let text = demo_config(&args, &addrs);
    let config = bunsan_config::parse(&text, "demo.toml".as_ref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let node = Node::start(&config).await.context("cannot start the demo node (try --listen / --admin)")?;
    let listen = node.listener_addrs().first().map_or(args.listen, |(_, addr)| *addr);
    let admin = node.admin_addr().unwrap_or(args.admin);
    print_intro(&args, listen, admin);
    if args.clients > 0 {
        traffic::start(listen, args.clients);
    }
    tokio::select! {
        () = watch(&node) => {}
        () = signals.next() => {}
    }
    node.shutdown(Duration::from_secs(2)).await;
    Ok(ExitCode::SUCCESS)
}

/// The embedded default config, with the demo backends' actual addresses.
fn demo_config(args: &Args, addrs: &[SocketAddr]) -> String {
    let mut text = format!(
        "# bunsan demo: one HTTP listener, one pool of three backends of capacity 3, 2 and 1.\n\
         [node]\nshutdown_timeout = \"2s\"\n\n\
         [admin]\nlisten = \"{}\"\n\n\
         [[listener]]\nname = \"web\"\nlisten = \"{}\"\nprotocol = \"http\"\npool = \"demo\"\n\n\
         [[pool]]\nname = \"demo\"\nalgorithm = \"{}\"\n",
        args.admin, args.listen, args.algorithm
    );
    for ((name, capacity), addr) in BACKENDS.iter().zip(addrs) {
        text.push_str(&format!(
            "\n[[pool.server]]\nname = \"{name}\"\naddr = \"{addr}\"\ncapacity = {capacity}\n"
        ));
    }
    text
}

fn print_intro(args: &Args, listen: SocketAddr, admin: SocketAddr) {
    let admin = format!("http://{admin}");
    println!("bunsan demo: node on http://{listen}, pool \"demo\" balanced by {}", args.algorithm);
    println!(
        "  backends: alpha (capacity 3), beta (capacity 2), gamma (capacity 1), each answering in 20 ms"
    );
    println!();
    println!("  try:       curl http://{listen}/");
    println!("  servers:   bunsan ctl --admin {admin} pool demo");
    println!(
        "  take out:  bunsan ctl --admin {admin} server demo/alpha maint   (and `ready` to bring it back)"
    );
    println!("  metrics:   curl {admin}/metrics");
    match args.clients {
        0 => println!("\n  no built-in traffic (--clients 0); requests you send show up below."),
        n => println!("\n  built-in traffic: {n} keep-alive clients (--clients 0 to turn off)."),
    }
    println!("  every second, where requests went (Ctrl-C stops):\n");
}

/// Prints, every second, how many requests each server took in that second.
async fn watch(node: &Node) {
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    for second in 1.. {
        tick.tick().await;
        for pool in node.pools() {
            println!("[{second:>4}s] {}", line(&pool, &mut last));
        }
    }
}

/// One line: per server, its share of the last second's requests as a bar.
fn line(pool: &PoolDetail, last: &mut HashMap<String, u64>) -> String {
    let deltas: Vec<u64> = pool
        .servers
        .iter()
        .map(|s| s.requests_total - last.insert(s.name.clone(), s.requests_total).unwrap_or(s.requests_total))
        .collect();
    let total: u64 = deltas.iter().sum();
    let mut text = format!("{total:>5} req/s ");
    for (server, delta) in pool.servers.iter().zip(&deltas) {
        let share = if total == 0 { 0.0 } else { *delta as f64 / total as f64 };
        let bar = "#".repeat((share * 20.0).round() as usize);
        text.push_str(&format!(" | {} [{}] {:<20} {:>3.0}%", server.name, server.state, bar, share * 100.0));
    }
    text
}
