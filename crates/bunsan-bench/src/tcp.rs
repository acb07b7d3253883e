//! `tcpsrc` and `tcpget`: a TCP source that sends N bytes to every connection, and a
//! client that reads them and reports throughput (the layer-4 scenario).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

/// The size of each write and read.
const BLOCK: usize = 256 * 1024;

/// Arguments of `tcpsrc`.
#[derive(Debug, clap::Args)]
pub struct SrcArgs {
    /// Where to listen (port 0 picks one; `listening on ADDR` is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Bytes sent to every connection before closing it.
    #[arg(long)]
    bytes: u64,
}

/// Arguments of `tcpget`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// Where to connect.
    #[arg(long)]
    addr: SocketAddr,
    /// Bytes expected before the end of stream.
    #[arg(long)]
    bytes: u64,
}

/// What `tcpget` measured.
#[derive(Debug, Serialize)]
struct Transfer {
    bytes: u64,
    seconds: f64,
    bytes_per_s: f64,
}

/// Accepts forever; each connection gets `bytes` zero bytes on its own thread.
pub fn serve(args: SrcArgs) -> anyhow::Result<()> {
    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);
    for stream in listener.incoming() {
        let stream = stream.context("accept failed")?;
        let bytes = args.bytes;
        thread::spawn(move || {
            if let Err(error) = send(stream, bytes) {
                eprintln!("tcpsrc: {error}");
            }
        });
    }
    Ok(())
}

fn send(mut stream: TcpStream, bytes: u64) -> std::io::Result<()> {
    let block = vec![0u8; BLOCK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(BLOCK as u64) as usize;
        stream.write_all(&block[..n])?;
        left -= n as u64;
    }
    stream.shutdown(Shutdown::Write)
}

/// Reads one whole transfer and prints its throughput; a short transfer is an error.
pub fn get(args: GetArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut stream =
        TcpStream::connect(args.addr).with_context(|| format!("cannot connect to {}", args.addr))?;
    let mut block = vec![0u8; BLOCK];
    let mut total = 0u64;
    loop {
        match stream.read(&mut block).context("read failed")? {
            0 => break,
            n => total += n as u64,
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    anyhow::ensure!(total == args.bytes, "got {total} bytes, expected {}", args.bytes);
    let transfer = Transfer { bytes: total, seconds, bytes_per_s: total as f64 / seconds };
    println!("{}", serde_json::to_string(&transfer)?);
    Ok(())
}
