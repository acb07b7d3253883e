//! `idle`: open many keep-alive connections, send one request on each, then hold them.
//!
//! Connections are opened one after another (so the proxy never has more than one request
//! in flight and needs only one upstream connection). Once all are open a JSON line
//! `{"opened", "errors"}` goes to stdout; the connections are held until stdin closes, so
//! the caller can measure the proxy's memory in between.

use std::io::{Read, Write};
use std::net::SocketAddr;

use serde::Serialize;

use crate::http1::{get_request, Conn};

/// Arguments of `idle`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to connect.
    #[arg(long)]
    addr: SocketAddr,
    /// How many connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    connections: u32,
    /// The path requested once on each connection.
    #[arg(long, default_value = "/")]
    path: String,
    /// The Host header.
    #[arg(long, default_value = "bench")]
    host: String,
}

/// The line printed once every connection is open.
#[derive(Debug, Serialize)]
struct Opened {
    opened: u32,
    errors: u32,
}

/// Opens the connections, reports, and holds them until stdin reaches its end.
pub fn run(args: Args) -> anyhow::Result<()> {
    let request = get_request(&args.path, &args.host);
    let mut held = Vec::with_capacity(args.connections as usize);
    let mut errors = 0;
    for _ in 0..args.connections {
        match open_one(args.addr, &request) {
            Ok(conn) => held.push(conn),
            Err(_) => errors += 1,
        }
    }
    let opened = Opened { opened: u32::try_from(held.len())?, errors };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string(&opened)?)?;
    stdout.flush()?;
    let mut rest = Vec::new();
    std::io::stdin().read_to_end(&mut rest)?;
    drop(held);
    Ok(())
}

/// One connection with one successful request done on it.
fn open_one(addr: SocketAddr, request: &[u8]) -> std::io::Result<Conn> {
    let mut conn = Conn::connect(addr)?;
    conn.send(request)?;
    let response = conn.read_response()?;
    if response.close || !(200..300).contains(&response.status) {
        return Err(std::io::Error::other(format!("status {}", response.status)));
    }
    Ok(conn)
}
