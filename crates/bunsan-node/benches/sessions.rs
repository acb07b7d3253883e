//! The session table at a million sessions: memory per session, lookup cost, and how long
//! a sweep holds each shard's lock (the longest a lookup can wait on it).
//!
//! A plain program (`harness = false`); run it with
//! `cargo bench -p bunsan-node --bench sessions` and read what it prints.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bunsan_node::session::{Lookup, Origin, SessionKeyBytes, SessionSettings, SessionTable, SweepReport};

const SESSIONS: usize = 1_000_000;
const LOOKUPS: usize = 1_000_000;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_LIFETIME: Duration = Duration::from_secs(3600);
const NOW_UNIX: u64 = 1_700_000_000;

/// Stands in for an upstream connection: 16 bytes with no spare bit pattern, so
/// `Option<Conn>` is 24 bytes (the worst case for the entry's connection slot).
struct Conn(#[expect(dead_code, reason = "only its size matters")] [u64; 2]);

type Table = SessionTable<Arc<u64>, Conn>;

fn main() {
    let keys = random_keys(SESSIONS, 7);
    let page = page_size();
    let before = resident(page);
    let table = Table::new(SessionSettings {
        idle_timeout: IDLE_TIMEOUT,
        max_lifetime: MAX_LIFETIME,
        max_entries: 2 * SESSIONS,
    });
    let insert_ns = fill(&table, &keys);
    let grown = resident(page).saturating_sub(before);
    println!("sessions:            {SESSIONS} (S = Arc<u64> shared, C = 16 bytes, each with a parked conn)");
    println!("insert+attach+detach+put_conn: {insert_ns:.0} ns per session");
    println!("RSS growth:          {:.1} MiB", mib(grown));
    println!("bytes per session:   {:.1}", grown as f64 / SESSIONS as f64);
    println!("lookup (live key):   {:.1} ns mean over {LOOKUPS}", lookups(&table, &keys));
    println!("lookup (unknown):    {:.1} ns mean over {LOOKUPS}", lookups(&table, &random_keys(LOOKUPS, 8)));
    print_sweep("sweep, nothing due", &table);
    expire_all(&table);
    println!(
        "RSS after the mass expiry: {:.1} MiB above the start (freed memory the allocator kept)",
        mib(resident(page).saturating_sub(before))
    );
    // A reference, last so that its memory is not counted above.
    println!("for scale: {:.1} ns per lookup in a 1000-session table (cache-resident)", small_table());
}

/// `n` random 16-byte keys (random session ids); another `seed`, other keys.
fn random_keys(n: usize, seed: u64) -> Vec<SessionKeyBytes> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n).map(|_| rng.u128(..).to_le_bytes()).collect()
}

/// Inserts a session per key as a real one looks after its first request: a client
/// connection attached and gone (the idle clock running) and its upstream connection
/// parked. Returns the mean time per session in ns.
fn fill(table: &Table, keys: &[SessionKeyBytes]) -> f64 {
    let server = Arc::new(1u64);
    let started = Instant::now();
    for (i, key) in keys.iter().enumerate() {
        assert!(table.insert(*key, server.clone(), NOW_UNIX, NOW_UNIX, Origin::Created), "insert refused");
        let attachment = table.attach(key).expect("just inserted");
        table.detach(key, attachment);
        let conn = Conn([i as u64, !(i as u64)]);
        assert!(table.put_conn(key, &server, conn).is_ok(), "slot taken");
    }
    started.elapsed().as_nanos() as f64 / keys.len() as f64
}

/// Mean ns per lookup of keys drawn at random from `keys`.
fn lookups(table: &Table, keys: &[SessionKeyBytes]) -> f64 {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut live = 0usize;
    let started = Instant::now();
    for _ in 0..LOOKUPS {
        let key = &keys[rng.usize(..keys.len())];
        if let Lookup::Live(_) = black_box(table.lookup(key)) {
            live += 1;
        }
    }
    let elapsed = started.elapsed();
    black_box(live);
    elapsed.as_nanos() as f64 / LOOKUPS as f64
}

/// Mean ns per lookup in a table small enough to stay in cache: the cost of the work
/// itself (clock, hashing, lock), without the memory stalls of a big table.
fn small_table() -> f64 {
    let table = Table::new(SessionSettings {
        idle_timeout: IDLE_TIMEOUT,
        max_lifetime: MAX_LIFETIME,
        max_entries: 1000,
    });
    let keys = random_keys(1000, 9);
    let server = Arc::new(1u64);
    for key in &keys {
        table.insert(*key, server.clone(), NOW_UNIX, NOW_UNIX, Origin::Created);
    }
    lookups(&table, &keys)
}

/// Moves tokio's (paused) clock past the idle timeout and sweeps: every session ends,
/// its connection is closed and a tombstone stays.
fn expire_all(table: &Table) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build();
    let Ok(runtime) = runtime else {
        println!("(no paused tokio runtime: mass-expiry sweep skipped)");
        return;
    };
    runtime.block_on(async {
        tokio::time::advance(IDLE_TIMEOUT + Duration::from_secs(1)).await;
        print_sweep("sweep, all expire", table);
        tokio::time::advance(MAX_LIFETIME).await;
        print_sweep("sweep, tombstones due", table);
    });
}

/// Sweeps until nothing is left for the next sweep (the node sweeps once a second) and
/// prints what it cost.
fn print_sweep(what: &str, table: &Table) {
    let (mut sweeps, mut total, mut longest, mut wall) =
        (0, SweepReport::default(), Duration::ZERO, Duration::ZERO);
    loop {
        let started = Instant::now();
        let report = table.sweep();
        wall += started.elapsed();
        sweeps += 1;
        longest = longest.max(report.longest_hold);
        total.total_hold += report.total_hold;
        total.expired_idle += report.expired_idle;
        total.expired_lifetime += report.expired_lifetime;
        total.conns_closed += report.conns_closed;
        total.tombstones_dropped += report.tombstones_dropped;
        if report.deferred == 0 {
            break;
        }
    }
    println!(
        "{what}: {sweeps} sweep(s), {:.2} ms ({:.2} ms locked), longest shard hold {:.3} ms; \
         ended {} idle + {} lifetime, closed {} conns, dropped {} tombstones",
        ms(wall),
        ms(total.total_hold),
        ms(longest),
        total.expired_idle,
        total.expired_lifetime,
        total.conns_closed,
        total.tombstones_dropped,
    );
}

/// Resident memory in bytes: `/proc/self/statm`'s resident pages × the page size.
fn resident(page: usize) -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * page
}

/// The kernel's page size, from the first mapping in `/proc/self/smaps` (4 KiB if unreadable).
fn page_size() -> usize {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let kib = smaps
        .lines()
        .find_map(|line| line.strip_prefix("KernelPageSize:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<usize>().ok());
    kib.map_or(4096, |k| k * 1024)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
