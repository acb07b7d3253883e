//! The `sockets` method against real connections on loopback.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bunsan_agent::observe::sockets::Sockets;
use bunsan_agent::Sample;

/// A listener and `n` connections to it, with both ends kept open.
struct Connections {
    listener: TcpListener,
    clients: Vec<TcpStream>,
    accepted: Vec<TcpStream>,
}

impl Connections {
    fn open(listener: TcpListener, n: usize) -> Self {
        let mut connections = Self { listener, clients: Vec::new(), accepted: Vec::new() };
        connections.add(n);
        connections
    }

    fn add(&mut self, n: usize) {
        let addr = self.listener.local_addr().unwrap();
        for _ in 0..n {
            self.clients.push(TcpStream::connect(addr).unwrap());
            self.accepted.push(self.listener.accept().unwrap().0);
        }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }
}

async fn established(sockets: &mut Sockets) -> f64 {
    sockets.sample().await[0].load.unwrap()
}

/// Samples until the load is `expected` (a closed connection leaves ESTABLISHED once the
/// FIN is processed).
async fn until_established(sockets: &mut Sockets, expected: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let load = established(sockets).await;
        if load == expected || Instant::now() > deadline {
            return load;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn counts_established_connections_to_the_server() {
    let mut connections = Connections::open(TcpListener::bind("127.0.0.1:0").unwrap(), 5);
    let mut sockets = Sockets::new(vec![connections.addr()]).unwrap();
    assert_eq!(until_established(&mut sockets, 5.0).await, 5.0);

    // The clients' ends (local port = an ephemeral one) are never counted; closing two
    // clients takes their server ends out of ESTABLISHED.
    connections.clients.truncate(3);
    assert_eq!(until_established(&mut sockets, 3.0).await, 3.0);
    drop(connections);
}

#[tokio::test]
async fn a_wildcard_server_counts_connections_on_any_local_ip() {
    let connections = Connections::open(TcpListener::bind("0.0.0.0:0").unwrap(), 2);
    let mut sockets = Sockets::new(vec![connections.addr()]).unwrap();
    assert_eq!(until_established(&mut sockets, 2.0).await, 2.0);
    let other = Connections::open(TcpListener::bind("127.0.0.1:0").unwrap(), 1);
    let mut both = Sockets::new(vec![connections.addr(), other.addr()]).unwrap();
    let samples = both.sample().await;
    assert_eq!((samples[0].load, samples[1].load), (Some(2.0), Some(1.0)));
}

#[tokio::test]
async fn new_connections_per_second_counts_fresh_connections() {
    let mut connections = Connections::open(TcpListener::bind("127.0.0.1:0").unwrap(), 2);
    let mut sockets = Sockets::new(vec![connections.addr()]).unwrap();
    let before_first = Instant::now();
    let first = sockets.sample().await;
    let after_first = Instant::now();
    assert_eq!(first, vec![Sample { load: Some(2.0), new_per_sec: None }], "no baseline yet");

    connections.add(4);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before_second = Instant::now();
    let rate = sockets.sample().await[0].new_per_sec.unwrap();
    let after_second = Instant::now();
    // rate = 4 / (time between the two samples), and that time lies between these bounds.
    let longest = after_second.duration_since(before_first).as_secs_f64();
    let shortest = before_second.duration_since(after_first).as_secs_f64();
    assert!(rate * longest >= 4.0 - 1e-9 && rate * shortest <= 4.0 + 1e-9, "rate {rate}");

    let third = sockets.sample().await[0];
    assert_eq!((third.load, third.new_per_sec), (Some(6.0), Some(0.0)));
}
