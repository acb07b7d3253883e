//! The TCP listener: byte-exact relay, half-close, and moving on from dead servers.

use std::net::SocketAddr;

use bunsan_testkit::{pattern_byte, Backend, Bunsan, TcpEcho};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bin;

fn tcp_config(servers: &[(&str, SocketAddr)]) -> String {
    let mut text = String::from(
        "[[listener]]\nname = \"raw\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"echo\"\n\n\
         [[pool]]\nname = \"echo\"\nalgorithm = \"round-robin\"\nconnect_timeout = \"1s\"\n",
    );
    for (name, addr) in servers {
        text.push_str(&format!("\n[[pool.server]]\nname = \"{name}\"\naddr = \"{addr}\"\n"));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_stream_arrives_byte_exact_and_half_close_is_honoured() {
    let echo = TcpEcho::start().await;
    let node = Bunsan::start(bin(), &tcp_config(&[("echo1", echo.addr)])).await.unwrap();
    let stream = TcpStream::connect(node.listener("raw")).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    const SIZE: u64 = 100 << 20;
    let sender = tokio::spawn(async move {
        let mut sent = 0u64;
        let mut chunk = vec![0u8; 256 * 1024];
        while sent < SIZE {
            let n = chunk.len().min((SIZE - sent) as usize);
            for (i, byte) in chunk[..n].iter_mut().enumerate() {
                *byte = pattern_byte(sent + i as u64);
            }
            writer.write_all(&chunk[..n]).await.unwrap();
            sent += n as u64;
        }
        // Half-close: no more data from us, but the echo must still reach us in full.
        writer.shutdown().await.unwrap();
    });
    let mut received = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        for (i, &byte) in buf[..n].iter().enumerate() {
            assert_eq!(byte, pattern_byte(received + i as u64), "byte {} differs", received + i as u64);
        }
        received += n as u64;
    }
    sender.await.unwrap();
    assert_eq!(received, SIZE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connect_moves_on_to_the_next_server() {
    let echo = TcpEcho::start().await;
    let dead = Backend::start("dead").await;
    dead.stop();
    let node = Bunsan::start(bin(), &tcp_config(&[("dead", dead.addr), ("echo1", echo.addr)])).await.unwrap();
    for i in 0..10u8 {
        let mut stream = TcpStream::connect(node.listener("raw")).await.unwrap();
        stream.write_all(&[i; 100]).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut back = Vec::new();
        stream.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, vec![i; 100]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_server_reachable_the_client_connection_is_closed() {
    let dead = Backend::start("dead").await;
    dead.stop();
    let node = Bunsan::start(bin(), &tcp_config(&[("dead", dead.addr)])).await.unwrap();
    let mut stream = TcpStream::connect(node.listener("raw")).await.unwrap();
    let mut back = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut back)).await;
    assert!(read.is_ok(), "the node kept a connection it could not relay");
    assert!(back.is_empty());
}
