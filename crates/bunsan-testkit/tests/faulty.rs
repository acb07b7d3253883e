//! The faulty servers fail the way tests rely on: a reset (not a clean close) after the
//! whole request arrived, and silence that lasts.

use std::io::ErrorKind;
use std::time::Duration;

use bunsan_testkit::{Hanger, Resetter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const POST: &[u8] = b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\n\r\nhello world";

#[tokio::test]
async fn resetter_reads_the_whole_post_then_resets_the_connection() {
    let resetter = Resetter::start().await;
    let mut stream = TcpStream::connect(resetter.addr).await.expect("connect");
    stream.write_all(POST).await.expect("send the request");
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("an answer");
    match read {
        Err(error) => assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}"),
        Ok(n) => panic!("expected a reset, got {n} bytes (0 = clean close)"),
    }
    assert_eq!(resetter.requests(), 1);
    let seen = resetter.seen();
    assert_eq!(seen[0].request_line(), "POST /upload HTTP/1.1");
    assert!(seen[0].head.contains("Content-Length: 11"), "{}", seen[0].head);
    assert_eq!(seen[0].body, b"hello world");
    assert_eq!(resetter.connections(), 1);
}

#[tokio::test]
async fn resetter_resets_even_when_the_body_never_comes() {
    let resetter = Resetter::start().await;
    let mut stream = TcpStream::connect(resetter.addr).await.expect("connect");
    stream.write_all(b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\npartial").await.expect("send");
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("an answer");
    assert_eq!(read.expect_err("a reset").kind(), ErrorKind::ConnectionReset);
    assert_eq!(resetter.seen()[0].body, b"partial");
}

#[tokio::test]
async fn hanger_reads_the_request_and_never_answers() {
    let hanger = Hanger::start().await;
    let mut stream = TcpStream::connect(hanger.addr).await.expect("connect");
    stream.write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n").await.expect("send the request");
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await;
    assert!(read.is_err(), "the hanger answered: {read:?}");
    assert_eq!(hanger.requests(), 1);
    assert_eq!(hanger.seen()[0].request_line(), "GET /slow HTTP/1.1");
}

#[tokio::test]
async fn dropping_the_hanger_closes_its_connections() {
    let hanger = Hanger::start().await;
    let mut stream = TcpStream::connect(hanger.addr).await.expect("connect");
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("send the request");
    assert!(bunsan_testkit::eventually(Duration::from_secs(5), || hanger.requests() == 1).await);
    drop(hanger);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("closed");
    assert_eq!(read.expect("a clean close"), 0);
}
