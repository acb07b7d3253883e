//! Tests of the session table and client bookkeeping. Time is tokio's paused clock,
//! moved with `advance`: no test sleeps.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::advance;

use super::*;

/// A unix time for "now" (the table only uses differences).
const NOW: u64 = 1_700_000_000;

/// An upstream connection that counts its own closing.
#[derive(Debug)]
struct Conn(Arc<AtomicUsize>);

impl Drop for Conn {
    fn drop(&mut self) {
        self.0.fetch_add(1, Relaxed);
    }
}

type Table = SessionTable<u32, Conn>;

fn table(idle_ms: u64, lifetime_secs: u64, max_entries: usize) -> Table {
    SessionTable::new(SessionSettings {
        idle_timeout: Duration::from_millis(idle_ms),
        max_lifetime: Duration::from_secs(lifetime_secs),
        max_entries,
    })
}

fn key(n: u16) -> SessionKeyBytes {
    let mut key = [0u8; 16];
    key[..2].copy_from_slice(&n.to_be_bytes());
    key
}

fn create(t: &Table, k: SessionKeyBytes, server: u32) {
    assert!(t.insert(k, server, NOW, NOW, Origin::Created), "insert refused");
}

async fn sleep_ms(ms: u64) {
    advance(Duration::from_millis(ms)).await;
}

fn clients_of(t: &Table, k: SessionKeyBytes) -> Option<u32> {
    t.sample(usize::MAX).into_iter().find(|s| s.key == k).map(|s| s.clients)
}

#[tokio::test(start_paused = true)]
async fn the_idle_clock_starts_at_the_last_detach() {
    let t = table(2000, 1000, 100);
    let k = key(1);
    create(&t, k, 0);
    let a = t.attach(&k).unwrap();
    sleep_ms(50_000).await;
    assert_eq!(t.lookup(&k), Lookup::Live(0), "attached: no idle clock, however long");
    assert!(t.detach(&k, a));
    sleep_ms(1000).await;
    assert_eq!(t.lookup(&k), Lookup::Live(0), "1 s idle of 2");
    sleep_ms(2000).await;
    assert_eq!(t.lookup(&k), Lookup::Expired, "3 s idle of 2");
    assert_eq!(t.counters().expired_idle.load(Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn every_client_connection_must_close_before_the_clock_starts() {
    let t = table(2000, 100, 100);
    let k = key(1);
    create(&t, k, 0);
    let (first, second) = (t.attach(&k).unwrap(), t.attach(&k).unwrap());
    assert!(t.detach(&k, first));
    sleep_ms(10_000).await;
    assert_eq!(t.lookup(&k), Lookup::Live(0), "one client connection still open");
    assert!(t.detach(&k, second));
    sleep_ms(1999).await;
    assert_eq!(t.lookup(&k), Lookup::Live(0));
    sleep_ms(1).await;
    assert_eq!(t.lookup(&k), Lookup::Expired, "2 s after the last detach");
}

#[tokio::test(start_paused = true)]
async fn attaching_again_stops_the_clock() {
    let t = table(2000, 100, 100);
    let k = key(1);
    create(&t, k, 0);
    let a = t.attach(&k).unwrap();
    t.detach(&k, a);
    sleep_ms(1500).await;
    let a = t.attach(&k).expect("still live after 1.5 s");
    sleep_ms(10_000).await;
    assert_eq!(t.lookup(&k), Lookup::Live(0));
    t.detach(&k, a);
    sleep_ms(1900).await;
    assert_eq!(t.lookup(&k), Lookup::Live(0), "the clock restarted at the detach");
    sleep_ms(200).await;
    assert_eq!(t.lookup(&k), Lookup::Expired);
}

#[tokio::test(start_paused = true)]
async fn a_session_never_attached_idles_from_its_insert() {
    let t = table(2000, 100, 100);
    create(&t, key(1), 0);
    sleep_ms(1999).await;
    assert_eq!(t.lookup(&key(1)), Lookup::Live(0));
    sleep_ms(1).await;
    assert_eq!(t.lookup(&key(1)), Lookup::Expired);
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_ends_even_attached_sessions() {
    let t = table(2000, 10, 100);
    let k = key(1);
    create(&t, k, 0);
    let _a = t.attach(&k).unwrap();
    sleep_ms(9999).await;
    assert_eq!(t.lookup(&k), Lookup::Live(0));
    sleep_ms(1).await;
    assert_eq!(t.lookup(&k), Lookup::Expired);
    // Past its lifetime there is nothing to remember: any identifier for it is too old.
    assert_eq!(t.lookup(&k), Lookup::Unknown);
    assert_eq!(t.counters().expired_lifetime.load(Relaxed), 1);
    assert_eq!(t.entries(), 0);
}

#[tokio::test(start_paused = true)]
async fn adopted_sessions_end_at_issue_plus_lifetime() {
    let t = table(60_000, 10, 100);
    let (earlier, ahead, too_old) = (key(1), key(2), key(3));
    assert!(t.insert(earlier, 4, NOW - 7, NOW, Origin::Adopted));
    // Another node's clock 100 s ahead: never longer than max_lifetime from now.
    assert!(t.insert(ahead, 4, NOW + 100, NOW, Origin::Adopted));
    assert!(!t.insert(too_old, 4, NOW - 10, NOW, Origin::Adopted));
    assert_eq!(t.lookup(&too_old), Lookup::Unknown);
    sleep_ms(2999).await;
    assert_eq!(t.lookup(&earlier), Lookup::Live(4));
    sleep_ms(1).await;
    assert_eq!(t.lookup(&earlier), Lookup::Expired, "issued 7 s before, lifetime 10 s");
    sleep_ms(6999).await;
    assert_eq!(t.lookup(&ahead), Lookup::Live(4));
    sleep_ms(1).await;
    assert_eq!(t.lookup(&ahead), Lookup::Expired);
    assert_eq!(t.counters().adopted.load(Relaxed), 2);
    assert_eq!(t.counters().created.load(Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn tombstones_last_until_the_lifetime_deadline() {
    let t = table(2000, 10, 100);
    let k = key(1);
    create(&t, k, 0);
    assert_eq!(t.lookup(&key(9)), Lookup::Unknown, "never seen");
    sleep_ms(3000).await;
    assert_eq!(t.lookup(&k), Lookup::Expired, "idle");
    assert_eq!((t.len_live(), t.len_tombstones()), (0, 1));
    // Another node's identifier for it must not bring it back.
    assert!(!t.insert(k, 1, NOW, NOW + 3, Origin::Adopted));
    sleep_ms(6999).await;
    assert_eq!(t.lookup(&k), Lookup::Expired, "just before its deadline");
    sleep_ms(1).await;
    assert_eq!(t.lookup(&k), Lookup::Unknown, "tombstone gone at its deadline");
    assert_eq!(t.entries(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_new_session_may_take_a_tombstoned_key() {
    // Client-address affinity: the same client comes back after its session expired.
    let t = table(2000, 10, 100);
    let k = key(1);
    create(&t, k, 0);
    assert!(t.invalidate(&k));
    assert_eq!(t.lookup(&k), Lookup::Expired);
    assert!(t.insert(k, 1, NOW, NOW, Origin::Created));
    assert_eq!(t.lookup(&k), Lookup::Live(1));
    assert_eq!((t.entries(), t.len_tombstones()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn invalidate_ends_the_session_and_closes_its_connection() {
    let closed = Arc::new(AtomicUsize::new(0));
    let t = table(2000, 10, 100);
    let k = key(1);
    create(&t, k, 3);
    assert!(t.put_conn(&k, &3, Conn(closed.clone())).is_ok());
    assert!(t.invalidate(&k));
    assert_eq!(closed.load(Relaxed), 1);
    assert_eq!(t.lookup(&k), Lookup::Expired);
    assert!(!t.invalidate(&k), "already over");
    assert!(!t.invalidate(&key(2)), "never seen");
    assert_eq!(t.counters().invalidated.load(Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn inserting_a_live_key_keeps_the_first_binding() {
    let t = table(2000, 10, 100);
    let k = key(1);
    create(&t, k, 0);
    assert!(t.insert(k, 0, NOW, NOW, Origin::Adopted), "same server: the caller may continue it");
    assert!(!t.insert(k, 1, NOW, NOW, Origin::Created), "bound elsewhere");
    assert_eq!(t.lookup(&k), Lookup::Live(0));
    assert_eq!(t.counters().created.load(Relaxed), 1);
    assert_eq!(t.counters().adopted.load(Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn sweep_ends_sessions_and_closes_their_connections() {
    let closed = Arc::new(AtomicUsize::new(0));
    let t = table(2000, 10, 100);
    let (idle, busy, quiet) = (key(1), key(2), key(3));
    for k in [idle, busy, quiet] {
        create(&t, k, 0);
    }
    for k in [idle, busy] {
        assert!(t.put_conn(&k, &0, Conn(closed.clone())).is_ok());
    }
    let _busy_client = t.attach(&busy).unwrap();
    let _quiet_client = t.attach(&quiet).unwrap();
    sleep_ms(3000).await;
    let report = t.sweep();
    assert_eq!((report.expired_idle, report.expired_lifetime, report.conns_closed), (1, 0, 1));
    assert_eq!(closed.load(Relaxed), 1, "the idle session's connection was closed");
    assert_eq!((t.len_live(), t.len_tombstones()), (2, 1));
    sleep_ms(7000).await;
    let report = t.sweep();
    assert_eq!((report.expired_idle, report.expired_lifetime, report.conns_closed), (0, 2, 1));
    assert_eq!(report.tombstones_dropped, 1, "the idle session's tombstone reached its deadline");
    assert_eq!(closed.load(Relaxed), 2);
    assert_eq!((t.len_live(), t.len_tombstones(), t.entries()), (0, 0, 0));
    let report = t.sweep();
    assert_eq!((report.expired_idle, report.expired_lifetime, report.tombstones_dropped), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_expiries_is_spread_over_sweeps() {
    let t = table(2000, 100, 10_000);
    let wide = |n: u32| {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&n.to_be_bytes());
        k
    };
    let one_shard: Vec<_> =
        (0..).map(wide).filter(|k| t.shard_index(k) == 0).take(SWEEP_BUDGET + 5).collect();
    for k in &one_shard {
        create(&t, *k, 0);
    }
    sleep_ms(2000).await;
    let first = t.sweep();
    assert_eq!((first.expired_idle, first.deferred), (SWEEP_BUDGET, 5));
    let second = t.sweep();
    assert_eq!((second.expired_idle, second.deferred), (5, 0));
    assert_eq!(t.len_live(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_session_parks_one_connection_to_its_own_server() {
    let closed = Arc::new(AtomicUsize::new(0));
    let conn = || Conn(closed.clone());
    let t = table(2000, 10, 100);
    let k = key(1);
    create(&t, k, 0);
    assert!(t.take_conn(&k).is_none());
    assert!(t.put_conn(&k, &0, conn()).is_ok());
    assert!(t.put_conn(&k, &0, conn()).is_err(), "one slot");
    assert!(t.take_conn(&k).is_some());
    assert!(t.take_conn(&k).is_none());
    assert!(t.put_conn(&k, &1, conn()).is_err(), "a connection to another server");
    assert!(t.put_conn(&key(2), &0, conn()).is_err(), "no such session");
    assert_eq!(closed.load(Relaxed), 4, "the table kept none of them");
    assert!(t.put_conn(&k, &0, conn()).is_ok());
    assert!(t.rebind(&k, 1));
    assert_eq!(closed.load(Relaxed), 5, "rebinding closed the old server's connection");
    assert_eq!(t.lookup(&k), Lookup::Live(1));
    assert!(t.take_conn(&k).is_none());
    assert!(t.put_conn(&k, &0, conn()).is_err(), "a request still on the old server comes back late");
    assert!(t.put_conn(&k, &1, conn()).is_ok());
    assert!(!t.rebind(&key(2), 1));
}

#[tokio::test(start_paused = true)]
async fn an_expired_session_gives_back_nothing() {
    let closed = Arc::new(AtomicUsize::new(0));
    let t = table(2000, 10, 100);
    let k = key(1);
    create(&t, k, 0);
    assert!(t.put_conn(&k, &0, Conn(closed.clone())).is_ok());
    sleep_ms(2000).await;
    assert!(t.take_conn(&k).is_none());
    assert_eq!(closed.load(Relaxed), 1, "ended on the spot, connection closed");
    assert!(t.attach(&k).is_none());
    assert_eq!(t.lookup(&k), Lookup::Expired);
}

/// Two keys the table puts in the same shard.
fn same_shard(t: &Table) -> (SessionKeyBytes, SessionKeyBytes) {
    let first = key(0);
    let other = (1..=u16::MAX).map(key).find(|k| t.shard_index(k) == t.shard_index(&first));
    (first, other.expect("64 shards: some key shares the first one's"))
}

#[tokio::test(start_paused = true)]
async fn a_full_table_gives_up_tombstones_then_refuses() {
    let t = table(2000, 10, 3);
    let (a, b) = same_shard(&t);
    let elsewhere = (1..=u16::MAX).map(key).find(|k| t.shard_index(k) != t.shard_index(&a)).unwrap();
    create(&t, a, 0);
    create(&t, key(1000), 0);
    create(&t, key(1001), 0);
    assert!(!t.insert(b, 0, NOW, NOW, Origin::Created), "full");
    assert!(t.invalidate(&a));
    assert_eq!(t.entries(), 3, "a tombstone still takes room");
    assert!(!t.insert(elsewhere, 0, NOW, NOW, Origin::Created), "no tombstone in that shard");
    assert!(t.insert(b, 0, NOW, NOW, Origin::Created), "took the tombstone's room");
    assert_eq!(t.lookup(&a), Lookup::Unknown, "the evicted tombstone is forgotten");
    assert_eq!(t.entries(), 3);
    let c = t.counters();
    assert_eq!((c.refused_full.load(Relaxed), c.tombstones_evicted.load(Relaxed)), (2, 1));
    // Sessions ending make room again.
    sleep_ms(10_000).await;
    t.sweep();
    assert_eq!(t.entries(), 0);
    assert!(t.insert(elsewhere, 0, NOW + 10, NOW + 10, Origin::Created));
}

#[tokio::test(start_paused = true)]
async fn a_client_connection_counts_once_and_detaches_on_drop() {
    let t = Arc::new(table(2000, 100, 100));
    let k = key(1);
    create(&t, k, 0);
    let (first, second) = (ClientSessions::new(), ClientSessions::new());
    assert!(first.attach(&t, k));
    assert!(first.attach(&t, k), "a second request on the same connection");
    assert!(second.attach(&t, k));
    assert!(!first.attach(&t, key(2)), "no such session");
    assert_eq!((clients_of(&t, k), first.len()), (Some(2), 1));
    drop(first);
    assert_eq!(clients_of(&t, k), Some(1));
    drop(second);
    assert_eq!(clients_of(&t, k), Some(0));
    sleep_ms(2000).await;
    assert_eq!(t.lookup(&k), Lookup::Expired, "the idle clock started at the last drop");
}

#[tokio::test(start_paused = true)]
async fn a_successor_session_under_the_same_key_is_counted_apart() {
    let t = Arc::new(table(2000, 100, 100));
    let k = key(1);
    create(&t, k, 0);
    let conn = ClientSessions::new();
    assert!(conn.attach(&t, k));
    assert!(t.invalidate(&k));
    create(&t, k, 1);
    let stale = t.attach(&k).unwrap();
    assert!(conn.attach(&t, k), "the same connection carries the new session");
    assert_eq!(clients_of(&t, k), Some(2));
    drop(conn);
    assert_eq!(clients_of(&t, k), Some(1), "one detach, for the new session only");
    assert!(t.invalidate(&k));
    create(&t, k, 2);
    assert!(!t.detach(&k, stale), "an attachment to an ended session");
    assert_eq!(clients_of(&t, k), Some(0));
}

#[tokio::test(start_paused = true)]
async fn introspection_counts_and_describes_sessions() {
    let t = table(60_000, 100, 100);
    for (n, server) in [(1, 7), (2, 7), (3, 8), (4, 7), (5, 8)] {
        create(&t, key(n), server);
    }
    let _a = t.attach(&key(1)).unwrap();
    assert!(t.put_conn(&key(2), &7, Conn(Arc::default())).is_ok());
    sleep_ms(1500).await;
    let mut per_server = t.per_server();
    per_server.sort_unstable();
    assert_eq!(per_server, [(7, 3), (8, 2)]);
    assert_eq!(t.len_live(), 5);
    let mut sample = t.sample(10);
    sample.sort_by_key(|s| s.key);
    assert_eq!(sample.len(), 5);
    assert_eq!(t.sample(2).len(), 2);
    let (one, two) = (&sample[0], &sample[1]);
    assert_eq!((one.key, one.server, one.clients, one.idle_for), (key(1), 7, 1, None));
    assert_eq!(two.idle_for, Some(Duration::from_millis(1500)));
    assert_eq!((one.has_conn, two.has_conn), (false, true));
    assert_eq!(one.age, Duration::from_millis(1500));
}

/// Several threads on one table while another sweeps: nothing panics, no connection is
/// lost or closed twice, and the counts add up. Real clock, short timeouts, no sleeps.
#[test]
fn concurrent_use_keeps_the_counts_consistent() {
    let opened = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let t = Arc::new(SessionTable::<u32, Conn>::new(SessionSettings {
        idle_timeout: Duration::from_millis(1),
        max_lifetime: Duration::from_secs(1),
        max_entries: 300,
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let sweeper = {
        let (t, stop) = (t.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                t.sweep();
            }
        })
    };
    let workers: Vec<_> = (0..4u32)
        .map(|seed| {
            let (t, opened, closed) = (t.clone(), opened.clone(), closed.clone());
            std::thread::spawn(move || churn(&t, seed, &opened, &closed))
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker panicked");
    }
    stop.store(true, Relaxed);
    sweeper.join().expect("sweeper panicked");
    t.sweep();
    assert_eq!(t.entries(), t.len_live() + t.len_tombstones());
    assert!(t.entries() <= 300);
    let c = t.counters();
    let started = c.created.load(Relaxed) + c.adopted.load(Relaxed);
    let ended = c.expired_idle.load(Relaxed) + c.expired_lifetime.load(Relaxed) + c.invalidated.load(Relaxed);
    assert_eq!(started, t.len_live() as u64 + ended);
    assert!(started > 0 && ended > 0);
    assert!(t.sample(usize::MAX).iter().all(|s| s.clients == 0), "every attach was detached");
    drop(t);
    assert_eq!(opened.load(Relaxed), closed.load(Relaxed), "every connection closed exactly once");
}

/// One worker's random operations, with its own client connections.
fn churn(t: &Arc<SessionTable<u32, Conn>>, seed: u32, opened: &Arc<AtomicUsize>, closed: &Arc<AtomicUsize>) {
    let mut rng = fastrand::Rng::with_seed(u64::from(seed));
    let mut conn = ClientSessions::new();
    for i in 0..20_000 {
        let k = key(rng.u16(..512));
        let server = rng.u32(..4);
        match rng.u8(..8) {
            0 => _ = t.insert(k, server, NOW, NOW, Origin::Created),
            1 => _ = t.insert(k, server, NOW - 1, NOW, Origin::Adopted),
            2 => _ = conn.attach(t, k),
            3 => drop(t.take_conn(&k)),
            4 => {
                opened.fetch_add(1, Relaxed);
                _ = t.put_conn(&k, &server, Conn(closed.clone()));
            }
            5 if i % 16 == 0 => _ = t.invalidate(&k),
            6 => _ = t.rebind(&k, server),
            _ => _ = t.lookup(&k),
        }
        if i % 64 == 0 {
            conn = ClientSessions::new(); // the old client connection closes
        }
    }
}

#[test]
fn tables_and_client_bookkeeping_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SessionTable<u32, Conn>>();
    send_sync::<ClientSessions<u32, Conn>>();
}
