//! The `packets` method on loopback (needs CAP_NET_RAW; these tests run as root).

use std::time::Duration;

use bunsan_agent::observe::packets::Packets;
use bunsan_agent::ObserveError;
use bunsan_testkit::{eventually, get, Backend};

const N: u64 = 10;

/// Accumulates the per-server counts across several `take_counts` calls.
struct Totals {
    packets: Packets,
    totals: Vec<u64>,
}

impl Totals {
    fn update(&mut self) -> &[u64] {
        for (total, count) in self.totals.iter_mut().zip(self.packets.take_counts()) {
            *total += count;
        }
        &self.totals
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_packets_to_the_watched_server_and_not_to_others() {
    let (watched, other) = (Backend::start("watched").await, Backend::start("other").await);
    let packets = match Packets::start(&[watched.addr, other.addr]) {
        Ok(packets) => packets,
        Err(ObserveError::PacketsPermission) => {
            eprintln!("skipped: no CAP_NET_RAW");
            return;
        }
        Err(other) => panic!("{other}"),
    };
    let mut totals = Totals { packets, totals: vec![0, 0] };

    for _ in 0..N {
        get(other.addr, "/").await.unwrap();
    }
    // Once the other server's packets are all counted, none of them went to `watched`.
    assert!(eventually(Duration::from_secs(10), || totals.update()[1] >= N).await, "{:?}", totals.totals);
    assert_eq!(totals.update()[0], 0);

    for _ in 0..N {
        get(watched.addr, "/").await.unwrap();
    }
    assert!(eventually(Duration::from_secs(10), || totals.update()[0] >= N).await, "{:?}", totals.totals);
    assert_eq!(watched.hits(), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_sample_is_a_baseline_and_then_rates_follow() {
    let backend = Backend::start("b1").await;
    let Ok(mut packets) = Packets::start(&[backend.addr]) else {
        eprintln!("skipped: no packet socket");
        return;
    };
    assert_eq!(packets.sample()[0].load, None);
    get(backend.addr, "/").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let load = packets.sample()[0].load.unwrap();
    assert!(load > 0.0, "{load}");
}
